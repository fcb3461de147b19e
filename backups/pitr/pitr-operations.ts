// `e4ops pitr` as library functions: create the stanza and prove archiving works, take a backup, check the
// repository, the textfile metrics the PITR alerts read, and the systemd timers (full weekly, diff daily).
// pgBackRest does the work; these name its steps, keep its error codes, and measure.
import { OPS_METRICS, type MetricSample } from '../../lib/ops-metrics.ts';
import { runPgBackRest, type PgBackRestTarget } from '../../lib/pgbackrest/pgbackrest-command.ts';
import { renderSystemdUnits, type ScheduledJob } from '../schedule.ts';
import { asPgBackRestOpsError, readPitrInfo, readStanzaInfo, type PitrBackupSet, type PitrInfo } from './pitr-repository.ts';

async function step(t: PgBackRestTarget, command: string, args: string[] = []): Promise<string> {
  return runPgBackRest(t, command, args).catch((e) => { throw asPgBackRestOpsError(e); });
}

/** `pitr init`: stanza-create (idempotent when the stanza matches the cluster) then check (a WAL segment archived end to end). */
export async function initPitrStanza(t: PgBackRestTarget): Promise<{ seconds: number }> {
  const t0 = Date.now();
  await step(t, 'stanza-create');
  await step(t, 'check');
  return { seconds: (Date.now() - t0) / 1000 };
}

export type PitrBackupType = 'full' | 'diff' | 'incr';

export interface PitrBackupResult { set: PitrBackupSet; seconds: number }

/** `pitr backup --type`: one pgBackRest backup; returns the set it made (from pgbackrest info). */
export async function takePitrBackup(t: PgBackRestTarget, type: PitrBackupType, o: { annotations?: Record<string, string> } = {}): Promise<PitrBackupResult> {
  const t0 = Date.now();
  // A stanza that cannot be read is pgBackRest's to report (with its code): the backup below says why.
  const before = new Set(await readStanzaInfo(t).then((i) => i.sets.map((s) => s.label), () => []));
  const notes = Object.entries(o.annotations ?? {}).map(([k, v]) => `--annotation=${k}=${v}`);
  await step(t, 'backup', [`--type=${type}`, ...notes]);
  const sets = (await readStanzaInfo(t)).sets;
  const made = sets.filter((s) => !before.has(s.label)).pop() ?? sets[sets.length - 1];
  return { set: made, seconds: (Date.now() - t0) / 1000 };
}

/** `pitr check`: pgBackRest's check (archive_command works, the repository answers) and the stanza is healthy. */
export async function checkPitrRepository(t: PgBackRestTarget): Promise<PitrInfo> {
  await step(t, 'check');
  return readPitrInfo(t, { withNewestCommit: false });
}

/** Samples for the textfile collector: archive lag, newest full/diff ages (as timestamps), check result. */
export function pitrMetricSamples(info: PitrInfo | undefined, o: { stanza: string; checkOk: boolean; archiver?: ArchiverStatus; now?: Date }): MetricSample[] {
  const labels = { stanza: o.stanza };
  // Never (no full backup yet, no WAL yet) is written as 0: the age alerts then fire instead of going blind.
  const ts = (iso: string | null | undefined) => (iso ? Date.parse(iso) / 1000 : 0);
  const newest = (types: PitrBackupSet['type'][]) => info?.sets.filter((s) => types.includes(s.type)).map((s) => s.stoppedAt).sort().pop();
  const samples: MetricSample[] = [
    { name: OPS_METRICS.pitrRepositoryCheckSuccess, help: 'pgBackRest check of the stanza passed (1) or failed (0) on the last e4ops pitr run', labels, value: o.checkOk ? 1 : 0 },
    { name: OPS_METRICS.pitrRepositoryCheckTimestamp, help: 'When e4ops pitr last checked the repository', labels, value: (o.now ?? new Date()).getTime() / 1000 },
  ];
  if (info) {
    samples.push(
      { name: OPS_METRICS.pitrLastArchivedWalTimestamp, help: 'When the newest WAL segment reached the pgBackRest repository', labels, value: ts(info.newestWalArchivedAt) },
      { name: OPS_METRICS.pitrLastFullBackupTimestamp, help: 'End of the newest full pgBackRest backup', labels, value: ts(newest(['full'])) },
      { name: OPS_METRICS.pitrLastDiffBackupTimestamp, help: 'End of the newest differential (or full) pgBackRest backup', labels, value: ts(newest(['full', 'diff'])) },
      { name: OPS_METRICS.pitrBackupSets, help: 'Backup sets in the pgBackRest repository', labels, value: info.sets.length },
    );
  }
  if (o.archiver) {
    samples.push({ name: OPS_METRICS.pitrArchiveFailedCount, help: 'archive_command failures since the statistics reset (pg_stat_archiver.failed_count)', type: 'counter', labels, value: o.archiver.failedCount });
    if (o.archiver.readySegments !== undefined) samples.push({ name: OPS_METRICS.pitrArchiveReadySegments, help: 'WAL segments waiting to be archived (pg_wal/archive_status/*.ready)', labels, value: o.archiver.readySegments });
  }
  return samples;
}

export interface ArchiverStatus { failedCount: number; readySegments?: number; lastFailedWal: string | null }

/** The production server's archiver: failures, and segments waiting (pg_ls_archive_statusdir needs pg_monitor). */
export async function readArchiverStatus(client: { query: (sql: string) => Promise<{ rows: Record<string, unknown>[] }> }): Promise<ArchiverStatus> {
  const a = (await client.query('SELECT failed_count, last_failed_wal FROM pg_stat_archiver')).rows[0];
  const ready = await client.query("SELECT count(*)::int AS n FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'").then((r) => Number(r.rows[0].n), () => undefined);
  return { failedCount: Number(a.failed_count), readySegments: ready, lastFailedWal: (a.last_failed_wal as string | null) ?? null };
}

export interface PitrTimerOptions {
  configFile: string; stanza: string; configIncludePath?: string; fullOnCalendar?: string; diffOnCalendar?: string;
  metricsFile?: string; databaseUrl?: string; user?: string;
  /** Toolkit checkout and Node binary the units run (default: this checkout, this Node). */
  repoDir?: string; nodeBin?: string;
  /** Environment file of the check job (PGPASSWORD for --database-url); default /etc/e4ops/e4ops-pitr-check.env. */
  checkEnvironmentFile?: string;
}

/**
 * The scheduled pgBackRest jobs: full weekly and diff daily by default, and the repository check every
 * 15 minutes (it writes the metrics the PITR alerts read), each a service + timer. The appliance
 * installs them as files; `e4ops pitr print-systemd-timer` prints them.
 */
export function pitrScheduledUnits(o: PitrTimerOptions): Array<{ service: string; timer: string; name: string }> {
  const common = ['--pgbackrest-config', o.configFile, '--stanza', o.stanza, ...(o.configIncludePath ? ['--config-include-path', o.configIncludePath] : []), ...(o.metricsFile ? ['--metrics-file', o.metricsFile] : [])];
  const job = (type: 'full' | 'diff' | 'check', onCalendar: string): ScheduledJob => ({
    name: `e4ops-pitr-${type}`, script: 'scripts/pitr.ts',
    description: type === 'check' ? `e4ops check of the pgBackRest repository (stanza ${o.stanza})` : `e4ops ${type} pgBackRest backup of C2's database (stanza ${o.stanza})`,
    after: 'network-online.target postgresql.service',
    exitCodes: '2 bad flags or files, 14 pgBackRest failed (its error code and name in the journal).',
    onCalendar, cron: '', nodeFlags: [],
  });
  const where = { user: o.user, repoDir: o.repoDir, nodeBin: o.nodeBin };
  return [
    renderSystemdUnits({ job: job('full', o.fullOnCalendar ?? 'Sun *-*-* 01:00:00'), args: ['backup', '--type', 'full', ...common], ...where }),
    renderSystemdUnits({ job: job('diff', o.diffOnCalendar ?? 'Mon..Sat *-*-* 01:00:00'), args: ['backup', '--type', 'diff', ...common], ...where }),
    renderSystemdUnits({ job: job('check', '*:0/15'), args: ['check', ...common, ...(o.databaseUrl ? ['--database-url', o.databaseUrl] : [])], ...where, environmentFile: o.checkEnvironmentFile }),
  ];
}

/** What `e4ops pitr print-systemd-timer` prints: every unit of pitrScheduledUnits, one after the other. */
export function renderPitrTimers(o: PitrTimerOptions): string {
  return pitrScheduledUnits(o).flatMap((u) => [u.service, u.timer]).join('\n');
}
