#!/usr/bin/env -S npx tsx
// `e4ops backup`: off-site backups of C2. `backup` (default; `run --config FILE` for the stack's job file),
// `list`, `verify`, `prune`, `init`, and the schedule printers. Thin entry point: flags → backups/ library
// → output + exit code (lib/cli/exit-codes.ts, the one table).
import fs from 'node:fs';
import { createLogger, type Logger } from '../lib/log.ts';
import { defineCommand, runIfMain, type CommandSpec } from '../lib/cli/command.ts';
import { EXIT, OpsError } from '../lib/cli/exit-codes.ts';
import { UsageError, type FlagSpecs, type ParsedArgs } from '../lib/cli/flags.ts';
import { humanBytes as human } from '../lib/progress.ts';
import { runBackup, type BackupOptions, type DumpCompression } from '../backups/create-backup.ts';
import { planBackup } from '../backups/backup-plan.ts';
import { listBackupSets, verifyBackupSet, verifyAllBackupSets, type SetVerification } from '../backups/backup-sets.ts';
import { pruneBackupSets, type RetentionPolicy } from '../backups/retention.ts';
import { acquireRunLock } from '../backups/run-lock.ts';
import { acquireTargetLease, DEFAULT_LEASE_STALE_SECONDS } from '../backups/target-lease.ts';
import { openTarget, type BackupTarget } from '../backups/targets.ts';
import { BACKUP_JOB, SCHEDULE_FLAGS, renderSchedule } from '../backups/schedule.ts';
import { DEFAULT_LOCK_WAIT_TIMEOUT_SECONDS } from '../backups/backup-snapshot.ts';
import { backupOptionsFromJobConfig, readBackupJobConfig } from '../backups/job-config.ts';

const SRC = 'Source';
const TGT = 'Targets';
const RET = 'Retention';
const RUN = 'Run';
const SCHED = 'Scheduling (print instead of running)';

const targetFlags = {
  target: { type: 'string', multiple: true, placeholder: 'T', group: TGT, help: 'a directory (/var/backups/c2) or an rclone remote (offsite:bucket/c2); repeatable' },
  'rclone-config': { type: 'string', placeholder: 'FILE', group: TGT, help: 'rclone config (0600) defining the remotes; credentials live there, never in --target' },
  json: { type: 'boolean', help: 'print JSON instead of text' },
} as const satisfies FlagSpecs;

const retentionFlags = {
  'keep-last': { type: 'integer', min: 0, placeholder: 'N', group: RET, help: 'keep the N newest sets' },
  'keep-daily': { type: 'integer', min: 0, placeholder: 'N', group: RET, help: 'keep the newest set of each of the last N days (UTC)' },
  'keep-weekly': { type: 'integer', min: 0, placeholder: 'N', group: RET, help: 'keep the newest set of each of the last N ISO weeks' },
  'keep-monthly': { type: 'integer', min: 0, placeholder: 'N', group: RET, help: 'keep the newest set of each of the last N months' },
} as const satisfies FlagSpecs;

const leaseFlags = {
  'lock-file': { type: 'string', placeholder: 'FILE', group: RUN, help: 'this host\'s run lock (default /run/lock/e4ops-backup.lock; 0600, no secrets)' },
  'lease-stale-after': { type: 'duration', min: 30, default: `${DEFAULT_LEASE_STALE_SECONDS}s`, group: RUN, help: 'a target lease without a heartbeat for this long is a dead run\'s and is taken over' },
} as const satisfies FlagSpecs;

const backupFlags = {
  'database-url': { type: 'string', placeholder: 'URL', group: SRC, help: 'C2\'s database, postgres://USER@HOST:5432/DB; the password in PGPASSFILE / ~/.pgpass or PGPASSWORD, not here' },
  'db-schema': { type: 'string', placeholder: 'NAME', group: SRC, help: 'PostgreSQL schema C2 uses (its db-schema), if not public' },
  'configs-dir': { type: 'string', placeholder: 'DIR', group: SRC, help: 'C2\'s configs directory (config.yaml, certificates, pubkey-mode key)' },
  'rendered-configs-dir': { type: 'string', placeholder: 'DIR', group: SRC, help: 'the rendered service configs to keep with the set' },
  'extra-file': { type: 'string', multiple: true, placeholder: 'PATH', group: SRC, help: 'an absolute file or folder to keep (restored to the same path); repeatable' },
  'pulumi-stack-export': { type: 'string', placeholder: 'FILE', group: SRC, help: 'output of pulumi stack export' },
  'passphrase-file': { type: 'string', placeholder: 'FILE', group: SRC, help: 'C2\'s db-encryption-passphrase: checked against sampled keys, then its fingerprint recorded; never stored' },
  'es-url': { type: 'string', placeholder: 'URL', group: SRC, help: 'Elasticsearch to snapshot (with --es-repository)' },
  'es-repository': { type: 'string', placeholder: 'NAME', group: SRC, help: 'snapshot repository' },
  'es-repository-location': { type: 'string', placeholder: 'PATH', group: SRC, help: 'register the repository as type fs at this path first' },
  'es-indices': { type: 'string', placeholder: 'PATTERN', group: SRC, help: 'indices to snapshot (default all)' },
  ...targetFlags,
  'create-target': { type: 'boolean', group: TGT, help: 'create a missing local target directory (and mark it); without it a missing or unmarked empty one is refused' },
  recipient: { type: 'string', multiple: true, placeholder: 'AGE_PUBKEY', group: 'Encryption', help: 'age public key (age1...) the set is encrypted to; repeatable' },
  'recipients-file': { type: 'string', placeholder: 'FILE', group: 'Encryption', help: 'one age public key per line' },
  ...retentionFlags,
  compression: { type: 'string', choices: ['zstd', 'pg_dump'], default: 'zstd', group: RUN, help: 'zstd: pg_dump -Z0 | zstd; pg_dump: its own zlib' },
  'zstd-level': { type: 'integer', min: 1, placeholder: 'N', group: RUN, help: 'zstd level 1..19 (default 1)' },
  ...leaseFlags,
  'lock-wait-timeout': { type: 'duration', min: 1, default: `${DEFAULT_LOCK_WAIT_TIMEOUT_SECONDS}s`, group: RUN, help: 'give up (exit 12) when a table lock is not granted within this (pg_dump --lock-wait-timeout)' },
  timeout: { type: 'duration', min: 1, placeholder: 'DURATION', group: RUN, help: 'stop the whole run after this long (exit 12, the log says what it was waiting for)' },
  'metrics-file': { type: 'string', placeholder: 'FILE', group: RUN, help: 'Prometheus textfile-collector output' },
  config: { type: 'string', placeholder: 'FILE', group: RUN, help: 'the job file the stacks render (/etc/e4ops/backup.json); flags win over it' },
  'dry-run': { type: 'boolean', group: RUN, help: 'show what would be dumped, where and for whom, and what stands in the way; write nothing' },
  'print-systemd-timer': { type: 'boolean', group: SCHED, help: 'print a systemd service + timer running this backup with the other flags' },
  'print-crontab': { type: 'boolean', group: SCHED, help: 'print an /etc/cron.d file running this backup with the other flags' },
  'on-calendar': { type: 'string', placeholder: 'SPEC', group: SCHED, help: 'systemd OnCalendar (default *-*-* 02:30:00; checked by systemd-analyze calendar)' },
  cron: { type: 'string', placeholder: '"M H DOM MON DOW"', group: SCHED, help: 'cron schedule (default "30 2 * * *"; checked by cron-parser)' },
  user: { type: 'string', placeholder: 'USER', group: SCHED, help: 'user the printed job runs as (default root)' },
  'environment-file': { type: 'string', placeholder: 'FILE', group: SCHED, help: `secrets file (0600) the printed unit / cron line reads (default ${BACKUP_JOB.environmentFile})` },
} as const satisfies FlagSpecs;

type BackupFlags = ParsedArgs<typeof backupFlags>;
const BACKUP_EXITS = ['sourceUnreachable', 'target', 'locked', 'timedOut', 'wrongPassphrase'] as const;

const out = (ctx: { stdout: (t: string) => void }, json: boolean, text: string, doc: unknown) => ctx.stdout(json ? JSON.stringify(doc) + '\n' : text.trimEnd() + '\n');
const needTargets = (t: string[]) => { if (!t.length) throw new UsageError('--target is required (a directory or remote:path), repeatable'); return t; };
const openAll = (specs: string[], rcloneConfig?: string) => needTargets(specs).map((s) => openTarget(s, { rcloneConfig }));
function retention(f: Partial<Record<keyof typeof retentionFlags, number | undefined>>): RetentionPolicy | undefined {
  const p = { keepLast: f['keep-last'], keepDaily: f['keep-daily'], keepWeekly: f['keep-weekly'], keepMonthly: f['keep-monthly'] };
  return Object.values(p).some((v) => v !== undefined) ? p : undefined;
}

/** The job's own flags as given (schedule flags removed), for the printed unit / cron line. */
function scheduledArgs(specs: FlagSpecs, args: BackupFlags): string[] {
  const out: string[] = [];
  for (const name of Object.keys(specs)) {
    if (!args.given.has(name) || SCHEDULE_FLAGS.includes(name)) continue;
    const v = (args.flags as Record<string, unknown>)[name];
    if (specs[name].type === 'boolean') out.push(`--${name}`);
    else for (const x of Array.isArray(v) ? v : [v]) out.push(`--${name}`, specs[name].type === 'duration' ? `${x}s` : String(x));
  }
  return out;
}

function backupOptions({ flags: f }: BackupFlags, log: Logger): BackupOptions {
  const job = f.config ? backupOptionsFromJobConfig(readBackupJobConfig(f.config)) : undefined;
  const databaseUrl = f['database-url'] ?? job?.databaseUrl;
  if (!databaseUrl) throw new UsageError('--database-url is required (postgres://USER@HOST:5432/DATABASE), or --config FILE');
  if (!!f['es-url'] !== !!f['es-repository']) throw new UsageError('--es-url and --es-repository go together');
  const either = <T>(flag: T[], fromJob: T[] | undefined) => (flag.length ? flag : fromJob ?? []);
  const location = f['es-repository-location'];
  return {
    databaseUrl, dbSchema: f['db-schema'], configsDir: f['configs-dir'] ?? job?.configsDir, renderedConfigsDir: f['rendered-configs-dir'],
    extraFiles: either(f['extra-file'], job?.extraFiles), pulumiStackExport: f['pulumi-stack-export'],
    targets: needTargets(either(f.target, job?.targets)), recipients: either(f.recipient, job?.recipients), recipientsFile: f['recipients-file'],
    passphraseFile: f['passphrase-file'] ?? job?.passphraseFile, compression: f.compression as DumpCompression, zstdLevel: f['zstd-level'],
    retention: retention(f) ?? job?.retention, lockFile: f['lock-file'], metricsFile: f['metrics-file'] ?? job?.metricsFile, rcloneConfig: f['rclone-config'],
    createTarget: f['create-target'] || !!job?.createTarget, lockWaitTimeoutSeconds: f['lock-wait-timeout'], timeoutSeconds: f.timeout,
    leaseStaleAfterSeconds: f['lease-stale-after'], log,
    elasticsearch: f['es-url'] && f['es-repository'] ? { node: f['es-url'], repository: f['es-repository'], indices: f['es-indices'], ...(location ? { registerRepository: { type: 'fs', settings: { location } } } : {}) } : undefined,
  };
}

async function runBackupCommand(args: BackupFlags, ctx: { stdout: (t: string) => void; signal: AbortSignal }): Promise<number> {
  const f = args.flags;
  const log = createLogger({ component: 'backup' });
  if (f['print-systemd-timer'] || f['print-crontab']) {
    if (!f.config && (!f['database-url'] || !f.target.length)) throw new UsageError('a scheduled backup needs --database-url and --target (or --config FILE): give the flags the job runs with');
    ctx.stdout(renderSchedule(BACKUP_JOB, scheduledArgs(backupFlags, args), {
      systemd: f['print-systemd-timer'], crontab: f['print-crontab'], onCalendar: f['on-calendar'], cron: f.cron, user: f.user, environmentFile: f['environment-file'],
    }));
    return EXIT.ok;
  }
  const opts = { ...backupOptions(args, log), signal: ctx.signal };
  if (f['dry-run']) {
    const plan = await planBackup(opts);
    out(ctx, f.json, [`dry run: nothing written`, `database ${plan.database} (PostgreSQL ${plan.serverVersion}): clients=${plan.inventory.clients} topics=${plan.inventory.topics} links=${plan.inventory.topicLinks}`,
      `objects: ${plan.objects.join(', ')}`, `recipients: ${plan.recipients.join(', ')}`,
      `passphrase: ${plan.passphrase ? `${plan.passphrase.file} opens ${plan.passphrase.opened}/${plan.passphrase.sampled} sampled keys` : 'none (no fingerprint would be recorded)'}`,
      ...plan.targets.map((t) => `target ${t.target}: ${t.readiness}${t.leasedBy ? `, leased by ${t.leasedBy}` : ''}${t.problem ? ` (${t.problem})` : ''}`),
      ...plan.problems.map((p) => `PROBLEM: ${p}`)].join('\n'), plan);
    return plan.problems.length ? EXIT.usage : EXIT.ok;
  }
  try {
    const r = await runBackup(opts);
    out(ctx, f.json, `set ${r.setId} stored on ${r.stored.join(', ')} (${human(r.manifest.objects.reduce((a, o) => a + o.size, 0))}, ${r.seconds.toFixed(1)} s)`
      + r.failed.map((x) => `\nFAILED on ${x.target}: ${x.error.message}`).join(''),
      { setId: r.setId, stored: r.stored, failed: r.failed.map((x) => ({ target: x.target, error: x.error.message })), seconds: r.seconds, pruned: r.pruned.map((p) => ({ target: p.target, removed: p.removed })) });
    return r.failed.length ? EXIT.target : EXIT.ok;
  } catch (e) {
    log.error('failed', { kind: e instanceof OpsError ? e.kind : 'internal', exitCode: e instanceof OpsError ? e.exitCode : 1, error: (e as Error).message });
    throw e;
  }
}

const listCommand = defineCommand({
  name: 'backup list', summary: 'list the sets on each target (exit 6 when a target holds no complete set)',
  flags: targetFlags, exitCodes: ['target', 'integrity'],
  async run({ flags: f }, ctx) {
    const rows = [];
    let text = '';
    let code: number = EXIT.ok;
    for (const t of openAll(f.target, f['rclone-config'])) {
      if (t.kind === 'local' && !fs.existsSync(t.spec)) throw new OpsError('target', `target ${t.spec} does not exist (not mounted?)`);
      const sets = await listBackupSets(t);
      const complete = sets.filter((s) => s.status === 'complete').length;
      if (!complete) code = EXIT.integrity;
      rows.push({ target: t.spec, complete, sets: sets.map((s) => ({ setId: s.setId, status: s.status, bytes: s.bytes, startedAt: s.manifest?.startedAt, inventory: s.manifest?.c2.inventory, drillVerifiedAt: s.drillVerified?.verifiedAt, problem: s.problem })) });
      text += `${t.spec}: ${complete} complete set(s)${complete ? '' : ' - NO usable backup here'}\n`;
      for (const s of sets) {
        const inv = s.manifest?.c2.inventory;
        text += `  ${s.setId}  ${s.status.padEnd(10)} ${human(s.bytes).padStart(10)}` + (inv ? `  clients=${inv.clients} topics=${inv.topics} links=${inv.topicLinks}` : '')
          + (s.drillVerified ? `  drill-verified ${s.drillVerified.verifiedAt}` : '') + (s.problem ? `  (${s.problem})` : '') + '\n';
      }
    }
    out(ctx, f.json, text, rows);
    return code;
  },
});

const describeVerification = (r: SetVerification) => `${r.target} ${r.setId}: ${r.ok ? 'OK' : 'FAILED'}\n`
  + r.objects.map((o) => `  ${o.name}: ${o.ok ? `ok (${human(o.storedBytes)}${o.plainBytes !== undefined ? `, ${human(o.plainBytes)} decrypted` : ''})` : o.error}`).join('\n');

const verifyCommand = defineCommand({
  name: 'backup verify', summary: 're-read a set (or --all of them): sizes and SHA-256 against the manifest, and with --identity that it decrypts',
  flags: {
    ...targetFlags,
    backup: { type: 'string', default: 'latest', placeholder: 'latest|ID', help: 'the set to verify' },
    all: { type: 'boolean', help: 'verify every complete set on each target (damaged manifests fail too)' },
    identity: { type: 'string', placeholder: 'FILE', help: 'age identity file: also decrypt every object to its end' },
  },
  exitCodes: ['target', 'integrity', 'wrongIdentity'],
  async run({ flags: f, given }, ctx) {
    if (f.all && given.has('backup')) throw new UsageError('--all and --backup exclude each other: give one');
    const log = createLogger({ component: 'backup' });
    if (!f.identity) log.warn('verify_without_identity', { hint: 'only checksums are checked; give --identity to prove the set decrypts' });
    const rank: Record<string, number> = { wrongIdentity: 3, integrity: 2, target: 1 };
    let worst: string | undefined;
    const note = (k?: string) => { if (k && (!worst || (rank[k] ?? 0) > (rank[worst] ?? 0))) worst = k; };
    const docs: unknown[] = [];
    let text = '';
    for (const t of openAll(f.target, f['rclone-config'])) {
      const results = f.all ? await verifyAllBackupSets(t, { identityFile: f.identity, log }) : undefined;
      const sets = results?.sets ?? [await verifyBackupSet(t, f.backup, { identityFile: f.identity, log })];
      for (const r of sets) {
        for (const o of r.objects) log[o.ok ? 'info' : 'error']('object_verified', { target: t.spec, setId: r.setId, object: o.name, ok: o.ok, error: o.error });
        note(r.errorKind);
        text += describeVerification(r) + '\n';
      }
      if (results) {
        note(results.errorKind);
        for (const s of results.skipped) text += `${t.spec} ${s.setId}: ${s.status}${s.problem ? ` (${s.problem})` : ''}\n`;
        if (!results.sets.length) text += `${t.spec}: no complete set to verify\n`;
      }
      docs.push(results ?? sets[0]);
    }
    out(ctx, f.json, text, docs);
    return worst ? (EXIT as Record<string, number>)[worst] ?? EXIT.integrity : EXIT.ok;
  },
});

/** Prune holds this host's lock and each target's lease (it deletes sets), except on a dry run. */
async function withLeases<T>(targets: BackupTarget[], f: { 'lock-file'?: string; 'lease-stale-after': number; 'dry-run': boolean }, log: Logger, fn: () => Promise<T>): Promise<T> {
  if (f['dry-run']) return fn();
  const lock = acquireRunLock(f['lock-file']);
  const leases = [];
  try {
    for (const t of targets) leases.push(await acquireTargetLease(t, { operation: 'prune', staleAfterSeconds: f['lease-stale-after'], log }));
    return await fn();
  } finally {
    for (const l of leases) await l.release();
    lock.release();
  }
}

const pruneCommand = defineCommand({
  name: 'backup prune', summary: 'delete sets by retention policy; never the newest complete set nor the newest drill-verified one',
  flags: { ...targetFlags, ...retentionFlags, ...leaseFlags, 'dry-run': { type: 'boolean', help: 'list what would be deleted (JSON: "wouldRemove"); delete nothing' } },
  exitCodes: ['target', 'locked'],
  async run({ flags: f }, ctx) {
    const policy = retention(f);
    if (!policy) throw new UsageError('prune needs at least one of --keep-last/--keep-daily/--keep-weekly/--keep-monthly');
    const targets = openAll(f.target, f['rclone-config']);
    const log = createLogger({ component: 'backup' });
    const results = await withLeases(targets, f, log, async () => {
      const rs = [];
      for (const t of targets) rs.push(await pruneBackupSets(t, policy, { dryRun: f['dry-run'] }));
      return rs;
    });
    out(ctx, f.json, results.map((r) => `${r.target}${r.dryRun ? ' (dry run: nothing deleted)' : ''}\n`
      + r.decisions.map((d) => `  ${d.keep ? 'keep  ' : (r.dryRun ? 'would delete' : 'deleted')} ${d.setId}${d.keep ? `  (${d.reasons.join(', ')})` : ''}`).join('\n')
      + r.invalid.map((i) => `\n  damaged ${i.setId} left alone: ${i.problem}`).join('')).join('\n'), results);
    return EXIT.ok;
  },
});

const initCommand = defineCommand({
  name: 'backup init', summary: 'create a target (directory or rclone folder) and write the e4ops marker that later runs look for',
  description: `A local target that is missing, or an empty directory without the marker, is refused by
every run: that is what an unmounted mount point looks like. Run init once per new target (idempotent).`,
  flags: targetFlags, exitCodes: ['target'],
  async run({ flags: f }, ctx) {
    const rows = [];
    for (const t of openAll(f.target, f['rclone-config'])) rows.push({ target: t.spec, result: await t.ensureReady({ create: true }) });
    out(ctx, f.json, rows.map((r) => `${r.target}: ${r.result === 'ready' ? 'already initialised' : r.result === 'created' ? 'created and marked' : 'marked'}`).join('\n'), rows);
    return EXIT.ok;
  },
});

const backupLike = (name: string, summary: string): CommandSpec<typeof backupFlags> => defineCommand({
  name, summary, flags: backupFlags, exitCodes: BACKUP_EXITS, handlesSignals: true, run: runBackupCommand,
});

export const command = defineCommand({
  ...backupLike('backup', 'encrypted off-site backup sets of C2 (database, configs, files), and their list, verify, prune and init'),
  description: `One run stores one set per target: pg_dump (custom format) | zstd | age → SHA-256 → target, then
the configs directories and files the same way, then manifest.json last. Targets: a directory or an
rclone remote. Encryption is to age PUBLIC keys only: this host cannot read its backups. Each target
is leased for the run (owner, host, heartbeat), so runs from different hosts or lock files never
touch one target at once. Secrets stay out of argv: the DB password in PGPASSFILE / ~/.pgpass or an
environment file, rclone credentials in the rclone config. See docs/operate/backup.md.`,
  subcommands: [
    backupLike('backup backup', 'run one backup (the default)'),
    backupLike('backup run', 'run one backup from the stack\'s job file (--config /etc/e4ops/backup.json)'),
    listCommand, verifyCommand, pruneCommand, initCommand,
  ],
  examples: [
    'e4ops backup init --target /mnt/offsite/c2',
    'PGPASSFILE=/etc/e4ops/pgpass e4ops backup --database-url postgres://c2@db:5432/e4 --target /mnt/offsite/c2 --recipient age1... --passphrase-file /etc/e4ops/c2-db-passphrase',
    'e4ops backup verify --all --target /mnt/offsite/c2 --identity drill.age',
    'e4ops backup --print-systemd-timer --database-url postgres://c2@db:5432/e4 --target offsite:c2 --rclone-config /etc/e4ops/rclone.conf --recipient age1...',
  ],
});

await runIfMain(import.meta.url, command);
// A cron job must never hang on a leaked handle (it would hold the lock forever): once the command is
// done, give pending output 5 s, then exit regardless. The timer is unref'd, so a clean run exits at once.
if (process.exitCode !== undefined) setTimeout(() => process.exit(process.exitCode as number), 5000).unref();
