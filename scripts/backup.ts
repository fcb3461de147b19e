#!/usr/bin/env -S npx tsx
// Off-site backups of C2: `backup` (default), `list`, `verify`, `prune`, and scheduling helpers.
// Thin entry point: flags → backups/ library → output + exit code (backups/exit-codes.ts).
import { minimist } from 'zx';
import { createLogger } from '../lib/log.ts';
import { BackupError, EXIT, exitCodeOf } from '../backups/exit-codes.ts';
import { runBackup, type DumpCompression } from '../backups/create-backup.ts';
import { listBackupSets, verifyBackupSet } from '../backups/backup-sets.ts';
import { pruneBackupSets, type RetentionPolicy } from '../backups/retention.ts';
import { acquireRunLock } from '../backups/run-lock.ts';
import { openTarget } from '../backups/targets.ts';
import { BACKUP_JOB, printedSchedule } from '../backups/schedule.ts';
import { backupOptionsFromJobConfig, readBackupJobConfig } from '../backups/job-config.ts';

const HELP = `Usage:
  backup.ts [backup] --database-url URL --target T [--target T2 ...] (--recipient AGE_PUBKEY ... | --recipients-file F)
            [--configs-dir DIR] [--rendered-configs-dir DIR] [--extra-file PATH ...] [--pulumi-stack-export FILE] [--passphrase-file F]
            [--keep-last N] [--keep-daily N] [--keep-weekly N] [--keep-monthly N]
            [--es-url URL --es-repository NAME [--es-repository-location PATH] [--es-indices PATTERN]]
            [--compression zstd|pg_dump] [--zstd-level N] [--metrics-file F] [--lock-file F] [--rclone-config F]
  backup.ts run --config /etc/e4ops/backup.json [BACKUP-FLAGS...]   (the stack's job file; flags win)
  backup.ts list   --target T [--target T2 ...] [--json]
  backup.ts verify --target T --backup latest|ID [--identity F] [--json]
  backup.ts prune  --target T --keep-last N ... [--dry-run] [--json]
  backup.ts --print-systemd-timer [--on-calendar SPEC] BACKUP-FLAGS...
  backup.ts --print-crontab [--cron "30 2 * * *"] BACKUP-FLAGS...

One backup run stores one set per target: pg_dump (custom format) | zstd | age → SHA-256 → target, then the
configs directories and optional Pulumi export the same way, then manifest.json last. Targets: a directory or
an rclone remote (remote:bucket/path). Encryption is to age PUBLIC keys only: this host cannot read its backups.
--passphrase-file is read only to record the DB passphrase's fingerprint; the passphrase is never stored.
Put the DB password in PGPASSWORD or ~/.pgpass rather than in the URL (argv is visible to other users).

Exit codes: 0 ok, 1 internal error, 2 config/usage, 3 source unreachable (DB, configs, Elasticsearch),
4 target error (read-only, full, rclone), 5 another run holds the lock, 6 integrity (damaged object or
manifest), 7 wrong identity file.`;

const STRING = ['config', 'extra-file', 'database-url', 'db-schema', 'configs-dir', 'rendered-configs-dir', 'pulumi-stack-export', 'target', 'recipient', 'recipients-file',
  'passphrase-file', 'backup', 'identity', 'compression', 'metrics-file', 'lock-file', 'rclone-config', 'es-url', 'es-repository',
  'es-repository-location', 'es-indices', 'on-calendar', 'cron', 'keep-last', 'keep-daily', 'keep-weekly', 'keep-monthly', 'zstd-level', 'user'];
const BOOL = ['help', 'dry-run', 'json', 'print-systemd-timer', 'print-crontab'];

const raw = process.argv.slice(2);
const argv = minimist(raw, { string: STRING, boolean: BOOL, alias: { h: 'help' } });
const log = createLogger({ component: 'backup' });
const list = (v: unknown): string[] => (v === undefined ? [] : Array.isArray(v) ? v.map(String) : [String(v)]);
const one = (name: string): string | undefined => {
  const v = list(argv[name]);
  if (v.length > 1) throw new BackupError('config', `--${name} given ${v.length} times; it takes one value`);
  return v[0];
};
const int = (name: string): number | undefined => {
  const v = one(name);
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new BackupError('config', `--${name} must be a whole number (got ${v})`);
  return Number(v);
};
const retention = (): RetentionPolicy => ({ keepLast: int('keep-last'), keepDaily: int('keep-daily'), keepWeekly: int('keep-weekly'), keepMonthly: int('keep-monthly') });
const out = (human: string, json: unknown) => process.stdout.write(argv.json ? JSON.stringify(json) + '\n' : human + '\n');
const human = (n: number) => (n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`);

function targets() {
  const t = list(argv.target);
  if (!t.length) throw new BackupError('config', '--target is required (a directory or remote:path), repeatable');
  return t.map((spec) => openTarget(spec, { rcloneConfig: one('rclone-config') }));
}

async function main(): Promise<number> {
  if (argv.help) { process.stdout.write(HELP + '\n'); return EXIT.ok; }
  const known = new Set([...STRING, ...BOOL, 'h', '_']);
  for (const k of Object.keys(argv)) if (!known.has(k)) throw new BackupError('config', `unknown flag --${k} (see --help)`);
  const [cmd = 'backup', ...rest] = argv._.map(String);
  if (rest.length) throw new BackupError('config', `unexpected arguments: ${rest.join(' ')} (see --help)`);

  const schedule = printedSchedule(BACKUP_JOB, raw);
  if (schedule !== undefined) { process.stdout.write(schedule); return EXIT.ok; }

  if (cmd === 'list') {
    const rows = [];
    let text = '';
    for (const t of targets()) {
      const sets = await listBackupSets(t);
      rows.push({ target: t.spec, sets: sets.map((s) => ({ setId: s.setId, status: s.status, bytes: s.bytes, startedAt: s.manifest?.startedAt, inventory: s.manifest?.c2.inventory, drillVerifiedAt: s.drillVerified?.verifiedAt, problem: s.problem })) });
      text += `${t.spec}: ${sets.filter((s) => s.status === 'complete').length} complete set(s)\n`;
      for (const s of sets) {
        const inv = s.manifest?.c2.inventory;
        text += `  ${s.setId}  ${s.status.padEnd(10)} ${human(s.bytes).padStart(10)}` +
          (inv ? `  clients=${inv.clients} topics=${inv.topics} links=${inv.topicLinks}` : '') +
          (s.drillVerified ? `  drill-verified ${s.drillVerified.verifiedAt}` : '') + (s.problem ? `  (${s.problem})` : '') + '\n';
      }
    }
    out(text.trimEnd(), rows);
    return EXIT.ok;
  }

  if (cmd === 'verify') {
    const ts = targets();
    const id = one('backup') ?? 'latest';
    const identity = one('identity');
    if (!identity) log.warn('verify_without_identity', { hint: 'only checksums are checked; give --identity to prove the set decrypts' });
    let worst: number = EXIT.ok;
    const results = [];
    for (const t of ts) {
      const r = await verifyBackupSet(t, id, { identityFile: identity });
      results.push(r);
      for (const o of r.objects) log[o.ok ? 'info' : 'error']('object_verified', { target: t.spec, setId: r.setId, object: o.name, ok: o.ok, error: o.error });
      if (!r.ok) worst = Math.max(worst, EXIT[r.errorKind ?? 'integrity']);
    }
    out(results.map((r) => `${r.target} ${r.setId}: ${r.ok ? 'OK' : 'FAILED'}\n` + r.objects.map((o) => `  ${o.name}: ${o.ok ? `ok (${human(o.storedBytes)}${o.plainBytes !== undefined ? `, ${human(o.plainBytes)} decrypted` : ''})` : o.error}`).join('\n')).join('\n'), results);
    return worst;
  }

  if (cmd === 'prune') {
    const ts = targets();
    const policy = retention();
    if (![policy.keepLast, policy.keepDaily, policy.keepWeekly, policy.keepMonthly].some((v) => v !== undefined)) {
      throw new BackupError('config', 'prune needs at least one of --keep-last/--keep-daily/--keep-weekly/--keep-monthly');
    }
    const lock = argv['dry-run'] ? undefined : acquireRunLock(one('lock-file'));
    try {
      const results = [];
      for (const t of ts) results.push(await pruneBackupSets(t, policy, { dryRun: argv['dry-run'] }));
      out(results.map((r) => `${r.target}${r.dryRun ? ' (dry run: nothing deleted)' : ''}\n` +
        r.decisions.map((d) => `  ${d.keep ? 'keep  ' : (r.dryRun ? 'would delete' : 'deleted')} ${d.setId}${d.keep ? `  (${d.reasons.join(', ')})` : ''}`).join('\n') +
        r.invalid.map((i) => `\n  damaged ${i.setId} left alone: ${i.problem}`).join('')).join('\n'), results);
      return EXIT.ok;
    } finally { lock?.release(); }
  }

  if (cmd !== 'backup' && cmd !== 'run') throw new BackupError('config', `unknown sub-command ${cmd}: backup (or run), list, verify or prune (see --help)`);
  const configFile = one('config');
  const job = configFile ? backupOptionsFromJobConfig(readBackupJobConfig(configFile)) : undefined;
  const databaseUrl = one('database-url') ?? job?.databaseUrl;
  if (!databaseUrl) throw new BackupError('config', '--database-url is required (postgres://USER@HOST:5432/DATABASE), or --config FILE');
  const policy = retention();
  const flagRetention = [policy.keepLast, policy.keepDaily, policy.keepWeekly, policy.keepMonthly].some((v) => v !== undefined);
  const either = <T>(flag: T[] , fromJob: T[] | undefined) => (flag.length ? flag : fromJob ?? []);
  const compression = (one('compression') ?? 'zstd') as DumpCompression;
  if (compression !== 'zstd' && compression !== 'pg_dump') throw new BackupError('config', `--compression must be zstd or pg_dump (got ${compression})`);
  const esUrl = one('es-url');
  const esRepo = one('es-repository');
  if (!!esUrl !== !!esRepo) throw new BackupError('config', '--es-url and --es-repository go together');
  const location = one('es-repository-location');
  let lastTick = 0;
  const tty = process.stderr.isTTY;
  const result = await runBackup({
    databaseUrl, dbSchema: one('db-schema'), configsDir: one('configs-dir') ?? job?.configsDir, renderedConfigsDir: one('rendered-configs-dir'),
    extraFiles: either(list(argv['extra-file']), job?.extraFiles),
    pulumiStackExport: one('pulumi-stack-export'), targets: either(list(argv.target), job?.targets), recipients: either(list(argv.recipient), job?.recipients),
    recipientsFile: one('recipients-file'), passphraseFile: one('passphrase-file') ?? job?.passphraseFile, compression, zstdLevel: int('zstd-level'),
    retention: flagRetention ? policy : job?.retention, lockFile: one('lock-file'), metricsFile: one('metrics-file') ?? job?.metricsFile, rcloneConfig: one('rclone-config'), log,
    elasticsearch: esUrl && esRepo ? { node: esUrl, repository: esRepo, indices: one('es-indices'), ...(location ? { registerRepository: { type: 'fs', settings: { location } } } : {}) } : undefined,
    onProgress: tty ? (p) => {
      const now = Date.now();
      if (now - lastTick < 500) return;
      lastTick = now;
      process.stderr.write(`\r${p.object}: ${human(p.bytes)} stored   `);
    } : undefined,
  });
  if (tty) process.stderr.write('\n');
  out(`set ${result.setId} stored on ${result.stored.join(', ')} (${human(result.manifest.objects.reduce((a, o) => a + o.size, 0))}, ${result.seconds.toFixed(1)} s)` +
    result.failed.map((f) => `\nFAILED on ${f.target}: ${f.error.message}`).join(''),
  { setId: result.setId, stored: result.stored, failed: result.failed.map((f) => ({ target: f.target, error: f.error.message })), seconds: result.seconds, pruned: result.pruned.map((p) => ({ target: p.target, removed: p.removed })) });
  return result.failed.length ? EXIT.target : EXIT.ok;
}

// A cron job must never hang on a leaked handle (it would hold the lock forever): once main is done,
// give pending output 5 s, then exit regardless. The timer is unref'd, so a clean run exits at once.
const finish = (code: number) => {
  process.exitCode = code;
  setTimeout(() => process.exit(code), 5000).unref();
};
main().then(finish, (e) => {
  const code = exitCodeOf(e);
  log.error('failed', { kind: e instanceof BackupError ? e.kind : 'internal', exitCode: code, error: (e as Error).message });
  process.stderr.write(`backup: ${(e as Error).message}\n`);
  finish(code);
});
