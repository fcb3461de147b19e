#!/usr/bin/env -S npx tsx
// `e4ops pitr`: point-in-time recovery of C2's database with pgBackRest as the engine: create the stanza,
// take backups, show what can be restored (sets, WAL range, newest recoverable time), check the archive,
// print the backup timers. Library: backups/pitr/. Drills on PITR: `e4ops drill --pgbackrest-config`.
import { defineCommand, runIfMain } from '../lib/cli/command.ts';
import { EXIT } from '../lib/cli/exit-codes.ts';
import { UsageError, type FlagSpecs } from '../lib/cli/flags.ts';
import { createLogger, redactUrl } from '../lib/log.ts';
import { writeTextfileMetrics } from '../lib/ops-metrics.ts';
import type { PgBackRestTarget } from '../lib/pgbackrest/pgbackrest-command.ts';
import { initPitrStanza, takePitrBackup, checkPitrRepository, pitrMetricSamples, renderPitrTimers, readArchiverStatus, type ArchiverStatus } from '../backups/pitr/pitr-operations.ts';
import { readPitrInfo, type PitrInfo } from '../backups/pitr/pitr-repository.ts';
import { createPgClient } from '../lib/pg/pg-client.ts';

const REPO = 'pgBackRest repository';
const TARGET_FLAGS = {
  'pgbackrest-config': { type: 'string', required: true, placeholder: 'FILE', group: REPO, help: 'pgbackrest.conf (rendered by e4ops or your own)' },
  stanza: { type: 'string', default: 'c2', placeholder: 'NAME', group: REPO, help: 'stanza' },
  'config-include-path': { type: 'string', placeholder: 'DIR', group: REPO, help: "folder of extra *.conf files holding secrets such as repo1-cipher-pass (default: conf.d beside the config file, when it exists)" },
  'run-as': { type: 'string', placeholder: 'USER', group: REPO, help: 'OS user pgBackRest runs as (default: postgres when run as root)' },
} as const satisfies FlagSpecs;

const METRICS_FLAG = { 'metrics-file': { type: 'string', placeholder: 'FILE', help: 'Prometheus textfile-collector output (archive lag, newest full/diff, check result)' } } as const satisfies FlagSpecs;

type TargetFlags = { 'pgbackrest-config': string; stanza: string; 'config-include-path'?: string; 'run-as'?: string };

function targetOf(f: TargetFlags): PgBackRestTarget {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(f.stanza)) throw new UsageError(`--stanza "${f.stanza}": letters, digits, _ . - only`);
  return { configFile: f['pgbackrest-config'], stanza: f.stanza, configIncludePath: f['config-include-path'], user: f['run-as'] };
}

/** The production server's archiver (failures, segments waiting), when --database-url is given. */
async function archiverOf(url: string | undefined): Promise<ArchiverStatus | undefined> {
  if (!url) return undefined;
  const c = createPgClient(url);
  try {
    await c.connect();
    return await readArchiverStatus(c);
  } catch (e) {
    createLogger({ component: 'pitr' }).warn('pitr.archiver.unreachable', { database: redactUrl(url), error: (e as Error).message });
    return undefined;
  } finally { await c.end().catch(() => undefined); }
}

const when = (iso: string | null, now = Date.now()) => (iso ? `${iso} (${Math.round((now - Date.parse(iso)) / 1000)} s ago)` : 'none');
const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;

export function renderPitrInfoText(i: PitrInfo): string {
  const lines = [`stanza ${i.stanza} (cipher ${i.cipher}): ${i.sets.length} backup set(s)`];
  for (const s of i.sets) lines.push(`  ${s.label}  ${s.type.padEnd(4)}  ${s.stoppedAt}  database ${mib(s.databaseBytes)}, stored ${mib(s.repositoryBytes)}${s.prior ? `  (on ${s.prior})` : ''}`);
  lines.push(`WAL archived: ${i.wal ? `${i.wal.min} .. ${i.wal.max}` : 'none'}; newest segment arrived ${when(i.newestWalArchivedAt)}`);
  lines.push(`restorable to any time from ${i.oldestRecoverableTime ?? '(no backup yet)'} (end of the oldest set) on; newest commit in the archive: ${i.newestRecoverableTime ?? 'not read'}`);
  return lines.join('\n') + '\n';
}

const init = defineCommand({
  name: 'pitr init',
  summary: 'create the stanza and prove archiving works (stanza-create + check)',
  flags: { ...TARGET_FLAGS },
  exitCodes: ['pgbackrest'],
  async run({ flags }, ctx) {
    const r = await initPitrStanza(targetOf(flags));
    ctx.stdout(`stanza ${flags.stanza}: created (or already matching this cluster) and checked: a WAL segment reached the repository (${r.seconds.toFixed(1)} s)\n`);
    return EXIT.ok;
  },
});

const backup = defineCommand({
  name: 'pitr backup',
  summary: 'take a pgBackRest backup (full, diff or incr) of C2\'s database',
  flags: {
    ...TARGET_FLAGS, ...METRICS_FLAG,
    type: { type: 'string', choices: ['full', 'diff', 'incr'], default: 'incr', help: 'backup type (pgBackRest makes a full one when there is none to build on)' },
  },
  exitCodes: ['pgbackrest'],
  async run({ flags }, ctx) {
    const t = targetOf(flags);
    const r = await takePitrBackup(t, flags.type as 'full' | 'diff' | 'incr');
    ctx.stdout(`${r.set.type} backup ${r.set.label}: database ${mib(r.set.databaseBytes)}, stored ${mib(r.set.repositoryBytes)}, ${r.seconds.toFixed(1)} s\n`);
    if (flags['metrics-file']) writeTextfileMetrics(flags['metrics-file'], pitrMetricSamples(await readPitrInfo(t, { withNewestCommit: false }), { stanza: t.stanza, checkOk: true }));
    return EXIT.ok;
  },
});

const info = defineCommand({
  name: 'pitr info',
  summary: 'backup sets, archived WAL range and the newest recoverable time',
  description: 'The newest recoverable time is the commit time of the newest transaction in the archive: the newest WAL segments are fetched through pgBackRest (decrypted) and read with pg_waldump.',
  flags: {
    ...TARGET_FLAGS, ...METRICS_FLAG,
    json: { type: 'boolean', help: 'print JSON' },
    'database-url': { type: 'string', placeholder: 'URL', help: 'the production database (read-only): its archive failures and waiting segments go into the metrics' },
  },
  exitCodes: ['pgbackrest'],
  async run({ flags }, ctx) {
    const t = targetOf(flags);
    const i = await readPitrInfo(t);
    if (flags['metrics-file']) writeTextfileMetrics(flags['metrics-file'], pitrMetricSamples(i, { stanza: t.stanza, checkOk: true, archiver: await archiverOf(flags['database-url']) }));
    ctx.stdout(flags.json ? JSON.stringify(i) + '\n' : renderPitrInfoText(i));
    return EXIT.ok;
  },
});

const check = defineCommand({
  name: 'pitr check',
  summary: 'pgBackRest check: archive_command works and the repository answers; the stanza is healthy',
  description: 'Run it from a timer (every 15 min) with --metrics-file and --database-url: the PITR alerts read what it writes.',
  flags: { ...TARGET_FLAGS, ...METRICS_FLAG, 'database-url': { type: 'string', placeholder: 'URL', help: 'the production database (read-only): archive failures and waiting segments into the metrics' } },
  exitCodes: ['pgbackrest'],
  async run({ flags }, ctx) {
    const t = targetOf(flags);
    try {
      const i = await checkPitrRepository(t);
      if (flags['metrics-file']) writeTextfileMetrics(flags['metrics-file'], pitrMetricSamples(i, { stanza: t.stanza, checkOk: true, archiver: await archiverOf(flags['database-url']) }));
      ctx.stdout(`stanza ${t.stanza}: check passed; ${i.sets.length} set(s); newest WAL ${when(i.newestWalArchivedAt)}\n`);
      return EXIT.ok;
    } catch (e) {
      if (flags['metrics-file']) {
        // The repository failed its check; what is known of the archive still goes out (stale values would mislead less than none).
        const info = await readPitrInfo(t, { withNewestCommit: false }).catch(() => undefined);
        writeTextfileMetrics(flags['metrics-file'], pitrMetricSamples(info, { stanza: t.stanza, checkOk: false, archiver: await archiverOf(flags['database-url']) }));
      }
      throw e;
    }
  },
});

const timer = defineCommand({
  name: 'pitr print-systemd-timer',
  summary: 'print service + timer units: full backup weekly, diff daily, repository check every 15 min',
  flags: {
    ...TARGET_FLAGS, ...METRICS_FLAG,
    'full-on-calendar': { type: 'string', placeholder: 'SPEC', default: 'Sun *-*-* 01:00:00', help: 'systemd OnCalendar of the full backup' },
    'diff-on-calendar': { type: 'string', placeholder: 'SPEC', default: 'Mon..Sat *-*-* 01:00:00', help: 'systemd OnCalendar of the differential backup' },
    user: { type: 'string', placeholder: 'USER', help: 'user the backups run as (default root; pgBackRest then runs as postgres)' },
    'database-url': { type: 'string', placeholder: 'URL', help: 'for the check job: the production database (read-only; put the password in ~/.pgpass, not here)' },
  },
  async run({ flags }, ctx) {
    const t = targetOf(flags);
    ctx.stdout(renderPitrTimers({ configFile: t.configFile, stanza: t.stanza, configIncludePath: t.configIncludePath, fullOnCalendar: flags['full-on-calendar'], diffOnCalendar: flags['diff-on-calendar'], metricsFile: flags['metrics-file'], databaseUrl: flags['database-url'], user: flags.user }));
    return EXIT.ok;
  },
});

export const command = defineCommand({
  name: 'pitr',
  summary: 'point-in-time recovery with pgBackRest: stanza, backups, what can be restored, archive checks',
  description: `pgBackRest is the engine (continuous WAL archiving, full/diff/incr backups); this names its steps
for C2's database and keeps its errors: a pgBackRest failure exits 14 with pgBackRest's own error code
and name. Logical backup sets (e4ops backup) stay the portable, age-encrypted layer with the configs;
see docs/operate/pitr.md for when to use which. Drill a PITR restore with e4ops drill --pgbackrest-config.`,
  flags: {},
  subcommands: [init, backup, info, check, timer],
  examples: [
    'e4ops pitr init --pgbackrest-config /etc/pgbackrest/pgbackrest.conf',
    'e4ops pitr backup --type full --pgbackrest-config /etc/pgbackrest/pgbackrest.conf --stanza c2',
    'e4ops pitr info --json --pgbackrest-config /etc/pgbackrest/pgbackrest.conf --metrics-file /var/lib/node_exporter/textfile/e4ops-pitr.prom',
  ],
});

await runIfMain(import.meta.url, command);
