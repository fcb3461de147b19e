// `e4ops restore`: the disaster-recovery runbook as one resumable command. Reads like the runbook:
// preflight, stop C2, restore the database beside production, check it, restore the configs, swap it
// in by rename, start C2 and check it serves the restored counts, resync, report. Every step is
// journaled in --state-dir: a killed restore resumes at the step it died in, a finished one refuses
// to run again, and --finalize drops what the restore kept aside.
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { createLogger, redactUrl, type Logger } from '../../lib/log.ts';
import { OpsError } from '../../lib/cli/exit-codes.ts';
import { UsageError } from '../../lib/cli/flags.ts';
import { C2Api } from '../../lib/c2/c2-api.ts';
import { deriveDbKey } from '../../lib/e4/keystore.ts';
import { openTarget } from '../targets.ts';
import { openBackupSet, resolveSetId } from '../backup-sets.ts';
import { acquireRunLock, type RunLock } from '../run-lock.ts';
import { BackupError } from '../exit-codes.ts';
import type { FleetInventory } from '../../lib/fleet-inventory/fleet-inventory.ts';
import { readPassphraseFile } from '../drill/restore-drill.ts';
import { databaseOid, dropKeptDatabase, productionDatabaseOf, restoreDatabaseNames, restoreStamp, withDatabase } from './production-database.ts';
import { opsErrorOf } from './logical-restore.ts';
import type { C2Lifecycle } from './c2-lifecycle.ts';
import { buildRestorePlan, renderRestorePlan, type PlannedStep, type RestorePlanInput } from './restore-plan.ts';
import { readRestoreJournal, RestoreJournalWriter, RESTORE_STEPS, type RestoreIdentity, type RestoreJournalState, type RestoreStep } from './restore-journal.ts';
import * as steps from './restore-steps.ts';
import { chooseBackup, keptDataDirOf, readPgBackRestBackups, type PgBackRestBackup } from './pgbackrest-source.ts';
import type { PgBackRestTarget } from '../../lib/pgbackrest/pgbackrest-command.ts';
import { warmKeyCheckWorkers } from '../../lib/c2-db/key-store-parallel.ts';
import { buildRestoreReport } from './restore-outcome.ts';
import { writeRestoreReport, type RestoreReport } from './restore-report.ts';

export interface RestoreOptions {
  /** Logical set source (--target, --backup, --identity); with `pgbackrest` set, these are unused. */
  target: string;
  backup: string;
  identityFile: string;
  /** pgBackRest source: the stanza, the recovery target, the data directory and PostgreSQL's stop/start commands. */
  pgbackrest?: { configFile: string; stanza: string; configIncludePath?: string; targetTime: string; dataDir: string; delta?: boolean; postgres: C2Lifecycle };
  rcloneConfig?: string;
  /** The production database C2 uses (a superuser, or CREATEDB and a member of C2's role). */
  databaseUrl: string;
  /** Role that owns C2's objects (default: the production database's owner). */
  c2Role?: string;
  passphraseFile: string;
  configsDir?: string;
  c2: { url: string; ca?: Buffer; cert?: Buffer; key?: Buffer };
  lifecycle: C2Lifecycle;
  automationEnginePaused: boolean;
  resync: boolean;
  inventory?: FleetInventory;
  stateDir: string;
  disasterAt?: Date;
  reportFile?: string;
  c2TimeoutSeconds?: number;
  /** Run without asking (required without a TTY). */
  yes?: boolean;
  /** Ask once, showing the plan; resolves true to go ahead. */
  confirm?: (planText: string) => Promise<boolean>;
  logger?: Logger;
  signal?: AbortSignal;
  onStep?: (e: { step: RestoreStep; event: 'begin' | 'done' | 'already-done' | 'failed'; seconds?: number }) => void;
  now?: () => Date;
}

export const journalFileOf = (stateDir: string) => path.join(stateDir, 'restore-journal.jsonl');
export const defaultReportFile = (stateDir: string) => path.join(stateDir, 'restore-report.json');

interface Prepared { identity: RestoreIdentity; plan: RestorePlanInput; steps: PlannedStep[]; text: string; journal: RestoreJournalState }

/** Fix what a run needs (set, names, role) from the journal, or from read-only probes on a first run. Changes nothing. */
export async function prepareRestore(opts: RestoreOptions): Promise<Prepared & { manifest?: Awaited<ReturnType<typeof openBackupSet>>; backup?: PgBackRestBackup }> {
  if (opts.pgbackrest) return preparePgBackRestRestore(opts, opts.pgbackrest);
  const journal = readRestoreJournal(journalFileOf(opts.stateDir));
  const prod = productionDatabaseOf(opts.databaseUrl);
  const target = openTarget(opts.target, { rcloneConfig: opts.rcloneConfig });
  let identity = journal.identity;
  if (identity) {
    const same = identity.target === target.spec && identity.database === prod.database && (opts.backup === 'latest' || opts.backup === identity.setId);
    if (!same) throw new OpsError('refused', `${journalFileOf(opts.stateDir)} belongs to restore ${identity.restoreId} (set ${identity.setId} from ${identity.target} into ${identity.database}); these flags name another restore: use another --state-dir, or the same flags to resume`);
  }
  const setId = identity?.setId ?? await resolveSetId(target, opts.backup).catch((e) => { throw opsErrorOf(e); });
  const manifest = await openBackupSet(target, setId).catch((e) => { throw opsErrorOf(e); });
  const exists = await withDatabase(prod.maintenanceUrl, async (admin) => ({
    prod: (await databaseOid(admin, prod.database)) !== undefined,
    owner: (await admin.query<{ o: string }>('SELECT pg_get_userbyid(datdba) AS o FROM pg_database WHERE datname = $1', [prod.database])).rows[0]?.o,
  }));
  if (!identity) {
    const startedAt = (opts.now ?? (() => new Date()))();
    const stamp = restoreStamp(startedAt);
    const names = restoreDatabaseNames(prod.database, stamp);
    const c2Role = opts.c2Role ?? exists.owner;
    if (!c2Role) throw new UsageError(`${prod.database} does not exist on the server, so its owner cannot tell C2's role: give --c2-role ROLE (the db-username in C2's config)`);
    identity = {
      restoreId: `restore-${stamp}-${crypto.randomBytes(3).toString('hex')}`, startedAt: startedAt.toISOString(), stamp, setId, target: target.spec,
      database: prod.database, restoreDatabase: names.restore, keptDatabase: names.kept, c2Role,
      ...(opts.configsDir ? { configsDir: path.resolve(opts.configsDir) } : {}), ...(opts.disasterAt ? { disasterAt: opts.disasterAt.toISOString() } : {}),
      source: 'logical',
    };
  }
  const plan: RestorePlanInput = {
    identity, manifest, server: redactUrl(prod.maintenanceUrl).replace(/\/postgres$/, ''), productionExists: exists.prod, lifecycle: opts.lifecycle,
    c2Url: opts.c2.url, resync: opts.resync, inventoryClients: opts.inventory?.clients.length, stateDir: opts.stateDir,
    reportFile: opts.reportFile ?? defaultReportFile(opts.stateDir), journal,
  };
  const planned = buildRestorePlan(plan);
  return { identity, plan, steps: planned, text: renderRestorePlan(plan, planned), journal, manifest };
}

/** The pgBackRest source: the backup to restore from (pgbackrest info), names fixed once, nothing changed. */
async function preparePgBackRestRestore(opts: RestoreOptions, pb: NonNullable<RestoreOptions['pgbackrest']>): Promise<Prepared & { backup: PgBackRestBackup }> {
  const journal = readRestoreJournal(journalFileOf(opts.stateDir));
  const prod = productionDatabaseOf(opts.databaseUrl);
  const spec = `pgbackrest ${pb.configFile} stanza ${pb.stanza}`;
  let identity = journal.identity;
  if (identity && (identity.target !== spec || identity.database !== prod.database || identity.targetTime !== pb.targetTime)) {
    throw new OpsError('refused', `${journalFileOf(opts.stateDir)} belongs to restore ${identity.restoreId} (${identity.target} to ${identity.targetTime}); these flags name another restore: use another --state-dir, or the same flags to resume`);
  }
  const backup = chooseBackup(await readPgBackRestBackups(pgBackRestTargetOf(pb)), pb.targetTime);
  if (!identity) {
    const startedAt = (opts.now ?? (() => new Date()))();
    const stamp = restoreStamp(startedAt);
    identity = {
      restoreId: `restore-${stamp}-${crypto.randomBytes(3).toString('hex')}`, startedAt: startedAt.toISOString(), stamp, setId: backup.label, target: spec,
      database: prod.database, restoreDatabase: prod.database, keptDatabase: prod.database, c2Role: opts.c2Role ?? '',
      ...(opts.disasterAt ? { disasterAt: opts.disasterAt.toISOString() } : {}),
      source: 'pgbackrest', dataDir: path.resolve(pb.dataDir), keptDataDir: pb.delta ? path.resolve(pb.dataDir) : keptDataDirOf(pb.dataDir, stamp), targetTime: pb.targetTime, delta: !!pb.delta,
    };
  }
  const plan: RestorePlanInput = {
    identity, backup, server: redactUrl(prod.maintenanceUrl).replace(/\/postgres$/, ''), productionExists: true, lifecycle: opts.lifecycle, postgres: pb.postgres,
    c2Url: opts.c2.url, resync: opts.resync, inventoryClients: opts.inventory?.clients.length, stateDir: opts.stateDir,
    reportFile: opts.reportFile ?? defaultReportFile(opts.stateDir), journal,
  };
  const planned = buildRestorePlan(plan);
  return { identity, plan, steps: planned, text: renderRestorePlan(plan, planned), journal, backup };
}

export const pgBackRestTargetOf = (pb: NonNullable<RestoreOptions['pgbackrest']>): PgBackRestTarget => ({ configFile: pb.configFile, stanza: pb.stanza, ...(pb.configIncludePath ? { configIncludePath: pb.configIncludePath } : {}) });

/** --plan: every step and what it will touch. Reads the target and the server; writes nothing. */
export async function planRestore(opts: RestoreOptions): Promise<{ text: string; steps: PlannedStep[] }> {
  const p = await prepareRestore(opts);
  return { text: p.text, steps: p.steps };
}

function takeLock(stateDir: string): RunLock {
  try { return acquireRunLock(path.join(stateDir, 'restore.lock')); } catch (e) {
    if (e instanceof BackupError && e.kind === 'locked') throw new OpsError('locked', e.message.replace('another backup run', 'another restore'));
    throw opsErrorOf(e);
  }
}

/** Run (or resume) a restore. Resolves with the report; throws OpsError (report written) when a step stops it. */
export async function runRestore(opts: RestoreOptions): Promise<RestoreReport> {
  const log = opts.logger ?? createLogger({ component: 'restore' });
  if (!opts.automationEnginePaused) throw new OpsError('refused', 'refusing to restore: confirm the automation engine is paused (it rotates keys on its own and would race the restore and the resync); pause it, then pass --automation-engine-paused');
  if (!opts.lifecycle.stopCommands.length || !opts.lifecycle.startCommands.length) throw new UsageError('C2 must be stopped and started by the restore: give --c2-stop-command and --c2-start-command, or --stack-file');
  if (!opts.pgbackrest && !fs.existsSync(opts.identityFile)) throw new UsageError(`--identity ${opts.identityFile} does not exist: give the age identity file whose public key the backups encrypt to`);
  const passphrase = (() => { try { return readPassphraseFile(opts.passphraseFile); } catch (e) { throw new UsageError((e as Error).message); } })();
  const prepared = await prepareRestore(opts);
  if (prepared.journal.finished) {
    throw new OpsError('refused', `restore ${prepared.identity.restoreId} already finished at ${prepared.journal.finishedAt} (ok=${prepared.journal.finishedOk}); running it again would restore over the restore. ${prepared.journal.finishedOk ? 'Drop what it kept with --finalize; a' : 'A'} new restore needs a new --state-dir`);
  }
  if (!opts.yes) {
    if (!opts.confirm) throw new OpsError('refused', 'refusing to restore without a confirmation: no terminal to ask on; pass --yes (see the steps with --plan first)');
    if (!(await opts.confirm(prepared.text))) throw new OpsError('refused', 'not confirmed: nothing was changed');
  }
  fs.mkdirSync(opts.stateDir, { recursive: true, mode: 0o700 });
  const lock = takeLock(opts.stateDir);
  const writer = new RestoreJournalWriter(journalFileOf(opts.stateDir));
  try {
    return await runSteps(opts, prepared, passphrase, writer, log);
  } finally {
    writer.close();
    lock.release();
  }
}

async function runSteps(opts: RestoreOptions, p: Awaited<ReturnType<typeof prepareRestore>>, passphrase: string, writer: RestoreJournalWriter, log: Logger): Promise<RestoreReport> {
  const id = p.identity;
  const at = () => new Date().toISOString();
  if (p.journal.exists) writer.append({ type: 'resume', at: at(), pid: process.pid });
  else writer.append({ type: 'start', pid: process.pid, ...id });
  const prod = productionDatabaseOf(opts.databaseUrl);
  let dbKey: Buffer | undefined;
  const api = new C2Api({ baseUrl: opts.c2.url, ca: opts.c2.ca, cert: opts.c2.cert, key: opts.c2.key, retries: 1, timeoutMs: 15_000, logger: log.child({ component: 'c2-api' }) });
  const ctx: steps.RestoreContext = {
    identity: id, names: { database: id.database, restore: id.restoreDatabase, kept: id.keptDatabase }, manifest: p.manifest,
    ...(opts.pgbackrest ? { pgbackrest: { target: pgBackRestTargetOf(opts.pgbackrest), backup: p.backup!, postgres: opts.pgbackrest.postgres } } : { target: openTarget(opts.target, { rcloneConfig: opts.rcloneConfig }) }),
    identityFile: opts.identityFile, passphrase,
    urlFor: prod.urlFor, maintenanceUrl: prod.maintenanceUrl, api, lifecycle: opts.lifecycle, inventory: opts.inventory,
    stateDir: opts.stateDir, c2TimeoutMs: (opts.c2TimeoutSeconds ?? 180) * 1000, log, signal: opts.signal,
    dbKey: () => (dbKey ??= deriveDbKey(passphrase)),
  };
  const results = new Map<RestoreStep, Record<string, unknown>>([...p.journal.done].map(([k, v]) => [k, v.result]));
  // pgBackRest: the key check runs after the recovery, on every core; have the workers ready by then.
  if (opts.pgbackrest && !results.has('check-database')) warmKeyCheckWorkers();
  const reportFile = opts.reportFile ?? defaultReportFile(opts.stateDir);
  const run = async (step: RestoreStep, fn: () => Promise<Record<string, unknown>>) => {
    if (results.has(step)) { opts.onStep?.({ step, event: 'already-done' }); return; }
    if (opts.signal?.aborted) throw new OpsError('incomplete', `interrupted before ${step}; re-run the same command to resume`);
    const t0 = Date.now();
    writer.append({ type: 'step-begin', step, at: at() });
    opts.onStep?.({ step, event: 'begin' });
    log.info('restore.step.begin', { step, restoreId: id.restoreId });
    try {
      const result = { ...(await fn()), seconds: (Date.now() - t0) / 1000 };
      writer.append({ type: 'step-done', step, at: at(), result });
      results.set(step, result);
      opts.onStep?.({ step, event: 'done', seconds: result.seconds });
      log.info('restore.step.done', { step, seconds: result.seconds });
    } catch (e) {
      writer.append({ type: 'step-failed', step, at: at(), error: (e as Error)?.message ?? String(e) });
      opts.onStep?.({ step, event: 'failed', seconds: (Date.now() - t0) / 1000 });
      throw e;
    }
  };
  try {
    if (opts.pgbackrest) {
      await run('preflight', () => steps.preflightPgBackRest(ctx));
      await run('stop-c2', () => steps.stopC2(ctx));
      await run('stop-postgres', () => steps.stopPostgres(ctx));
      await run('restore-data-directory', () => steps.restoreDataDir(ctx));
      await run('start-postgres', () => steps.startPostgres(ctx));
      await run('check-database', () => steps.checkDatabase(ctx));
    } else {
      await run('preflight', () => steps.preflight(ctx));
      await run('stop-c2', () => steps.stopC2(ctx));
      await run('restore-database', () => steps.restoreDatabase(ctx));
      await run('check-database', () => steps.checkDatabase(ctx));
      await run('restore-configs', () => steps.restoreConfigs(ctx));
      await run('swap-database', () => steps.swapDatabase(ctx));
    }
    const restored = restoredPointOf(id, results, p);
    await run('start-c2', () => steps.startC2(ctx, restored.counts));
    await run('check-c2', () => steps.checkC2(ctx));
    if (opts.resync) await run('resync', () => steps.resync(ctx, restored));
    const report = buildRestoreReport({ identity: id, manifest: p.manifest, backup: p.backup, results, journal: readRestoreJournal(journalFileOf(opts.stateDir)), resync: opts.resync, finishedAt: new Date(), journalFile: journalFileOf(opts.stateDir) });
    await run('report', async () => { writeRestoreReport(report, reportFile); return { file: reportFile }; });
    writer.append({ type: 'finish', at: at(), ok: true });
    return report;
  } catch (e) {
    const err = e instanceof OpsError ? e : new OpsError('internal', (e as Error)?.message ?? String(e));
    const report = buildRestoreReport({ identity: id, manifest: p.manifest, backup: p.backup, results, journal: readRestoreJournal(journalFileOf(opts.stateDir)), resync: opts.resync, finishedAt: new Date(), journalFile: journalFileOf(opts.stateDir), error: err });
    writeRestoreReport(report, reportFile);
    (err.details as Record<string, unknown>).report = report;
    throw err;
  } finally {
    api.close();
  }
}

/** What was restored: the counts the checks read, the point in time the data is from, and a label for messages. */
function restoredPointOf(id: RestoreIdentity, results: Map<RestoreStep, Record<string, unknown>>, p: { manifest?: { setId: string; startedAt: string }; backup?: PgBackRestBackup }) {
  const counts = results.get('check-database')!.counts as { clients: number; topics: number; links: number };
  const takenAt = p.manifest ? p.manifest.startedAt : String(results.get('start-postgres')?.restoredPointAt ?? p.backup!.stoppedAt);
  return { counts, takenAt, label: p.manifest ? `set ${p.manifest.setId}` : `pgBackRest backup ${id.setId} recovered to ${id.targetTime}` };
}

/** --finalize: after a finished restore, drop the database and the configs it kept aside. */
export async function finalizeRestore(opts: { stateDir: string; databaseUrl: string; yes?: boolean; confirm?: (text: string) => Promise<boolean>; logger?: Logger }): Promise<{ dropped: string[]; text: string }> {
  const journalFile = journalFileOf(opts.stateDir);
  const j = readRestoreJournal(journalFile);
  if (!j.identity) throw new UsageError(`--state-dir ${opts.stateDir} holds no restore journal (${journalFile}): give the --state-dir of the restore to finalize`);
  if (!j.finished || !j.finishedOk) throw new OpsError('refused', `restore ${j.identity.restoreId} has not finished (see ${journalFile}); finish it first by re-running it, or roll back by hand (docs/operate/restore.md)`);
  if (j.finalized) throw new OpsError('refused', `restore ${j.identity.restoreId} was already finalized`);
  const kept = (j.done.get('swap-database')?.result.keptDatabase as string | null | undefined) ?? null;
  const configsAside = (j.done.get('restore-configs')?.result.configs as { keptAside?: string } | undefined)?.keptAside
    ?? (j.done.get('restore-data-directory')?.result.keptDataDir as string | null | undefined) ?? undefined;
  const text = `Finalize ${j.identity.restoreId}: DROP DATABASE ${kept ?? '(none kept)'}${configsAside ? `; remove ${configsAside}` : ''}\n`;
  if (!opts.yes) {
    if (!opts.confirm) throw new OpsError('refused', 'refusing to drop the kept database without a confirmation: pass --yes');
    if (!(await opts.confirm(text))) throw new OpsError('refused', 'not confirmed: nothing was dropped');
  }
  const prod = productionDatabaseOf(opts.databaseUrl);
  if (prod.database !== j.identity.database) throw new OpsError('refused', `--database-url names ${prod.database}, the restore in ${opts.stateDir} restored ${j.identity.database}`);
  const dropped: string[] = [];
  if (kept && j.identity.source !== 'pgbackrest' && await withDatabase(prod.maintenanceUrl, (admin) => dropKeptDatabase(admin, kept))) dropped.push(kept);
  if (configsAside && fs.existsSync(configsAside)) { fs.rmSync(configsAside, { recursive: true, force: true }); dropped.push(configsAside); }
  const w = new RestoreJournalWriter(journalFile);
  w.append({ type: 'finalized', at: new Date().toISOString(), dropped });
  w.close();
  return { dropped, text };
}

export { RESTORE_STEPS };
