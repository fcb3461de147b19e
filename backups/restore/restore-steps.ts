// The restore's steps, one function each, in runbook order. Each takes the run's context, does its
// one thing, and returns a small JSON result that the journal keeps (later steps and a resumed run
// read it there). Each is safe to re-enter after a kill inside it.
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { OpsError } from '../../lib/cli/exit-codes.ts';
import type { Logger } from '../../lib/log.ts';
import type { C2Api } from '../../lib/c2/c2-api.ts';
import { dbKeyFingerprint } from '../../lib/e4/keystore.ts';
import { verifyBackupSet } from '../backup-sets.ts';
import type { BackupManifest } from '../manifest.ts';
import type { BackupTarget } from '../targets.ts';
import { checkOrphanLinks, type DrillCheck } from '../drill/restored-database-checks.ts';
import { READ_ONLY_CHECKS_MAY_START } from '../drill/restore-drill.ts';
import { checkRestoredDatabase, prepareRestoredDatabaseVerification, type DrillKey, type RestoredDatabaseVerification, type VerificationExpectations } from '../drill/restored-database-verification.ts';
import { ScratchResources } from '../drill/scratch-resources.ts';
import type { DrillRun } from '../drill/drill-run.ts';
import { checkRestoredConfigs } from '../drill/restored-config-checks.ts';
import { resyncC2FromApi } from '../resync/c2-resync-adapter.ts';
import { createSealedTopicKeyProbe } from '../resync/sealed-topic-key-probe.ts';
import { resyncTopicKeys } from '../resync/resync-topic-keys.ts';
import { readJournal as readResyncJournal } from '../resync/resync-journal.ts';
import { writeResyncReport } from '../resync/resync-report.ts';
import type { FleetInventory } from '../../lib/fleet-inventory/fleet-inventory.ts';
import { assertCanRestoreAs, checkObjectOwners, createRestoreDatabase, inspectServer, swapRestoredDatabaseIn, withDatabase, type DatabaseNames } from './production-database.ts';
import { restoreDumpInto } from './logical-restore.ts';
import { restoreConfigsDir, restoreExtraFiles } from './restore-configs.ts';
import { checkProductionC2Serves, runLifecycleCommands, waitForC2Counts, type C2Lifecycle } from './c2-lifecycle.ts';
import type { RestoreIdentity } from './restore-journal.ts';
import type { PgBackRestTarget } from '../../lib/pgbackrest/pgbackrest-command.ts';
import { assertPostgresStopped, restoreDataDirectory, waitForRecoveredPostgres, type PgBackRestBackup } from './pgbackrest-source.ts';

export interface RestoreContext {
  identity: RestoreIdentity;
  names: DatabaseNames;
  /** Logical source: the set's manifest and its target. */
  manifest?: BackupManifest;
  target?: BackupTarget;
  /** pgBackRest source: the stanza, the backup restored from, PostgreSQL's own stop/start commands. */
  pgbackrest?: { target: PgBackRestTarget; backup: PgBackRestBackup; postgres: C2Lifecycle };
  identityFile: string;
  passphrase: string;
  /** URL of a database on the production server (password included; never logged). */
  urlFor(db: string): string;
  maintenanceUrl: string;
  api: C2Api;
  lifecycle: C2Lifecycle;
  inventory?: FleetInventory;
  stateDir: string;
  c2TimeoutMs: number;
  log: Logger;
  signal?: AbortSignal;
  /** The DB key (one Argon2i derivation per run). */
  dbKey(): Buffer;
  /** The drill's verification of the restored database; its read-only half starts while pg_restore builds indexes (this run only). */
  verification?: RestoreVerification;
  /** pgBackRest: C2's start commands, run by check-database once the schema check passed (this run only); start-c2 waits for them. */
  c2StartedDuringChecks?: Promise<{ command: string; seconds: number }[]>;
}

interface RestoreVerification { run: DrillRun; key: DrillKey; expect: VerificationExpectations; v: RestoredDatabaseVerification }

/** The drill's checks (backups/drill/restored-database-verification.ts) on the restored database, with a run of their own. */
function verificationOf(ctx: RestoreContext): RestoreVerification {
  if (ctx.verification) return ctx.verification;
  const now = () => new Date();
  // No signal handlers and nothing to tear down: the restored database is production's, not a scratch server.
  const run: DrillRun = { log: ctx.log, now, startedAt: now(), t0: Date.now(), checks: [], timings: {}, scratch: new ScratchResources(), extra: {}, rtoSeconds: 0 };
  const dbKey = ctx.dbKey();
  const key: DrillKey = { dbKey, fingerprint: dbKeyFingerprint(dbKey) };
  const m = ctx.manifest;
  const inv = m?.c2.inventory;
  // A logical set records counts and the passphrase's fingerprint; pgBackRest records neither (every key opening proves the passphrase).
  const expect: VerificationExpectations = {
    counts: inv ? { clients: inv.clients, topics: inv.topics, links: inv.topicLinks } : undefined, passphraseFingerprint: m?.passphraseFingerprint?.value,
    sourceRecordsFingerprint: !!m?.passphraseFingerprint, sourceRecordsCounts: !!inv,
    // pgBackRest: these checks are on the way to C2 serving (nothing runs beside them); orphans go to check-c2.
    orphanLinksLater: !!ctx.pgbackrest,
  };
  const url = ctx.urlFor(m ? ctx.names.restore : ctx.names.database);
  ctx.verification = { run, key, expect, v: prepareRestoredDatabaseVerification(run, url, key, expect) };
  return ctx.verification;
}

export type StepResult = Record<string, unknown>;
const checkFailures = (checks: DrillCheck[]) => checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`).join('; ');

/** Public keys of an age identity file (age-keygen -y), to match against the set's recipients without decrypting. */
function agePublicKeys(identityFile: string): string[] {
  const r = spawnSync('age-keygen', ['-y', identityFile], { encoding: 'utf8' });
  if (r.status !== 0) throw new OpsError('usage', `--identity ${identityFile} is not an age identity file: ${(r.stderr || r.error?.message || '').trim()}`);
  return r.stdout.split('\n').map((l) => l.trim()).filter(Boolean);
}

/** Free bytes where the server keeps its data, when that directory is on this machine. */
function freeBytesAt(dir: string | undefined): number | undefined {
  if (!dir || !fs.existsSync(dir)) return undefined;
  const st = fs.statfsSync(dir);
  return st.bavail * st.bsize;
}

export async function preflight(ctx: RestoreContext): Promise<StepResult> {
  const m = ctx.manifest!;
  const checks: DrillCheck[] = [];
  const set = await verifyBackupSet(ctx.target!, m.setId);
  if (!set.ok) throw new OpsError('integrity', `set ${m.setId} is damaged: ${set.objects.filter((o) => !o.ok).map((o) => o.error).join('; ')}; restore another set (--backup ID)`);
  checks.push({ name: 'set-verified', ok: true, detail: `all ${set.objects.length} objects of ${m.setId} match their manifest size and SHA-256` });
  const mine = agePublicKeys(ctx.identityFile);
  if (!mine.some((k) => m.recipients.includes(k))) throw new OpsError('wrongIdentity', `--identity ${ctx.identityFile} (${mine.join(', ')}) is none of set ${m.setId}'s recipients (${m.recipients.join(', ')})`);
  checks.push({ name: 'identity-matches', ok: true, detail: `the age identity is a recipient of set ${m.setId}` });
  const fp = dbKeyFingerprint(ctx.dbKey());
  if (!m.passphraseFingerprint) checks.push({ name: 'passphrase-fingerprint', ok: true, detail: 'the manifest records no fingerprint: the key check after the restore decides' });
  else if (m.passphraseFingerprint.value !== fp) throw new OpsError('wrongPassphrase', '--passphrase-file does not match the passphrase fingerprint in the manifest: use the passphrase escrowed for this C2 database');
  else checks.push({ name: 'passphrase-fingerprint', ok: true, detail: 'the passphrase matches the fingerprint recorded in the manifest' });
  const server = await withDatabase(ctx.maintenanceUrl, async (admin) => {
    const s = await inspectServer(admin, ctx.names.database);
    if (!s.superuser && !s.createdb) throw new OpsError('refused', 'the --database-url user may not create databases: connect as a superuser (postgres) or a role with CREATEDB');
    await assertCanRestoreAs(admin, ctx.identity.c2Role);
    const size = s.productionOwner ? (await admin.query<{ n: string }>('SELECT pg_database_size($1) AS n', [ctx.names.database])).rows[0].n : '0';
    return { ...s, productionBytes: Number(size) };
  });
  checks.push({ name: 'destination-reachable', ok: true, detail: `PostgreSQL ${server.serverVersion}; ${ctx.names.database} ${server.productionOwner ? `exists (owner ${server.productionOwner})` : 'does not exist'}` });
  // The restore is a second copy next to the kept one: room for the larger of the old database and ~5x the compressed dump.
  const dumpBytes = m.objects.find((o) => o.kind === 'postgres-dump')?.size ?? 0;
  const need = Math.max(server.productionBytes, dumpBytes * 5);
  const free = freeBytesAt(server.dataDirectory);
  if (free !== undefined && free < need) throw new OpsError('refused', `not enough disk for the restore on ${server.dataDirectory}: ${(free / 1e9).toFixed(2)} GB free, about ${(need / 1e9).toFixed(2)} GB needed (the old database is kept until --finalize)`);
  checks.push({ name: 'disk-space', ok: true, detail: free === undefined ? 'not checked: the server\'s data directory is not on this machine (make sure it has room for a second copy)' : `${(free / 1e9).toFixed(2)} GB free for about ${(need / 1e9).toFixed(2)} GB` });
  return { checks, productionExisted: !!server.productionOwner };
}

export async function stopC2(ctx: RestoreContext): Promise<StepResult> {
  const ran = await runLifecycleCommands(ctx.lifecycle.stopCommands, 'stop');
  // Stopped means the API no longer answers: a C2 still serving would write into the database being replaced.
  const answers = await ctx.api.countClients().then(() => true, () => false);
  if (answers) throw new OpsError('refused', `C2 at ${ctx.api.opts.baseUrl} still answers after the stop commands: stop every replica (and the automation engine) before restoring`);
  return { commands: ran };
}

export async function restoreDatabase(ctx: RestoreContext): Promise<StepResult> {
  const oid = await withDatabase(ctx.maintenanceUrl, (admin) => createRestoreDatabase(admin, ctx.names, ctx.identity.c2Role));
  ctx.log.info('restore.database.created', { database: ctx.names.restore, oid });
  let last = Date.now();
  const r = await restoreDumpInto({
    target: ctx.target!, manifest: ctx.manifest!, identityFile: ctx.identityFile, databaseUrl: ctx.urlFor(ctx.names.restore), role: ctx.identity.c2Role,
    onProgressLine: (line) => {
      // From the first index on, readers neither wait for pg_restore nor hold it up (see the drill): check keys meanwhile.
      if (READ_ONLY_CHECKS_MAY_START.test(line)) void verificationOf(ctx).v.startReadOnlyChecks({ besideRestore: true });
      if (Date.now() - last > 5000) { last = Date.now(); ctx.log.info('restore.progress', { pgRestore: line }); }
    },
  }).catch(async (e) => { await ctx.verification?.v.settle(); ctx.verification = undefined; throw e; });
  return { oid, seconds: r.seconds, tocEntries: r.tocEntries };
}

export async function checkDatabase(ctx: RestoreContext): Promise<StepResult> {
  const { run, v, key, expect } = verificationOf(ctx);
  // pgBackRest: the recovered cluster already is production (there is no rename to wait for), so C2 starts as
  // soon as its schema is known good, while keys, counts and orphans are still being read: C2's start-up only
  // reads rows, and its migrations, which could add a missing column, wait for a schema that passed.
  const startEarly = ctx.pgbackrest ? (schema: DrillCheck) => {
    if (!schema.ok || ctx.c2StartedDuringChecks) return;
    ctx.c2StartedDuringChecks = runLifecycleCommands(ctx.lifecycle.startCommands, 'start');
    ctx.c2StartedDuringChecks.catch(() => undefined); // start-c2 reports it
  } : undefined;
  let counts: Awaited<ReturnType<typeof checkRestoredDatabase>>;
  try {
    counts = await checkRestoredDatabase(run, v, key, expect, undefined, startEarly);
  } catch (e) {
    await stopC2StartedDuringChecks(ctx);
    throw e;
  }
  // A pgBackRest restore brings the cluster's own roles back: C2's role is then the database's owner unless given.
  const role = ctx.identity.c2Role || await withDatabase(v.dbUrl, async (c) => (await c.query<{ o: string }>('SELECT pg_get_userbyid(datdba) AS o FROM pg_database WHERE datname = current_database()')).rows[0].o);
  const owners = await withDatabase(v.dbUrl, (c) => checkObjectOwners(c, role));
  // The fingerprint was checked in preflight; the drill's configs check runs after restore-configs.
  const checks = [...run.checks.filter((c) => (c.name !== 'passphrase-fingerprint' || !ctx.manifest) && c.name !== 'configs-parse'), owners];
  if (checks.some((c) => !c.ok)) {
    const stopped = await stopC2StartedDuringChecks(ctx);
    if (ctx.pgbackrest) {
      throw new OpsError('checkFailed', `the recovered cluster failed its checks${stopped ? ' (C2, started once the schema passed, was stopped again)' : ''}: ${checkFailures(checks)}; C2 stays stopped. To go back, stop PostgreSQL and swap ${ctx.identity.keptDataDir} back in for ${ctx.identity.dataDir} (docs/operate/restore.md)`, { checks });
    }
    throw new OpsError('checkFailed', `the restored database ${ctx.names.restore} failed its checks, so nothing was swapped (${ctx.names.database} is untouched): ${checkFailures(checks)}`, { checks });
  }
  return { checks, counts, c2Role: role };
}

/** A check failed after C2 was started early: stop it again (true when it had been started). */
async function stopC2StartedDuringChecks(ctx: RestoreContext): Promise<boolean> {
  if (!ctx.c2StartedDuringChecks) return false;
  await ctx.c2StartedDuringChecks.catch(() => undefined);
  ctx.c2StartedDuringChecks = undefined;
  await runLifecycleCommands(ctx.lifecycle.stopCommands, 'stop').catch((e) => ctx.log.error('restore.c2.stop-after-failed-checks', { error: (e as Error).message }));
  return true;
}

export async function restoreConfigs(ctx: RestoreContext): Promise<StepResult> {
  const dir = ctx.identity.configsDir;
  if (!dir) return { configs: { restoredFiles: 0, extraFiles: [], note: 'no --configs-dir given: configs left as they are' }, checks: [] };
  const configs = await restoreConfigsDir(ctx.target!, ctx.manifest!, ctx.identityFile, dir, ctx.identity.stamp);
  configs.extraFiles = await restoreExtraFiles(ctx.target!, ctx.manifest!, ctx.identityFile, ctx.stateDir, ctx.identity.stamp);
  const checks = configs.configsDir ? checkRestoredConfigs(dir).checks : [];
  if (checks.some((c) => !c.ok)) ctx.log.warn('restore.configs.check', { failures: checkFailures(checks) });
  return { configs, checks };
}

export async function swapDatabase(ctx: RestoreContext): Promise<StepResult> {
  const r = await withDatabase(ctx.maintenanceUrl, (admin) => swapRestoredDatabaseIn(admin, ctx.names));
  ctx.log.info('restore.swapped', { database: ctx.names.database, kept: r.keptDatabase, terminatedSessions: r.terminatedSessions });
  return r;
}

export async function startC2(ctx: RestoreContext, counts: { clients: number; topics: number }): Promise<StepResult> {
  const early = ctx.c2StartedDuringChecks;
  const ran = early ? await early : await runLifecycleCommands(ctx.lifecycle.startCommands, 'start');
  const served = await waitForC2Counts(ctx.api, counts, ctx.c2TimeoutMs, ctx.signal);
  return { commands: ran, ...(early ? { startedDuringChecks: true } : {}), servingAt: new Date().toISOString(), waitedSeconds: served.seconds };
}

export async function checkC2(ctx: RestoreContext): Promise<StepResult> {
  const url = ctx.urlFor(ctx.names.database);
  // pgBackRest: the orphan links (reported, never fatal) are counted here, once C2 serves (see verificationOf).
  const [check, orphans] = await Promise.all([
    checkProductionC2Serves(ctx.api, url),
    ctx.pgbackrest ? withDatabase(url, (c) => checkOrphanLinks(c)).then((o) => o.check) : Promise.resolve(undefined),
  ]);
  if (!check.ok) throw new OpsError('c2Unreachable', check.detail);
  return { checks: [...(orphans ? [orphans] : []), check] };
}

export async function resync(ctx: RestoreContext, restored: { counts: { clients: number; topics: number }; takenAt: string; label: string }): Promise<StepResult> {
  const journalFile = path.join(ctx.stateDir, 'resync-journal.jsonl');
  const reportFile = path.join(ctx.stateDir, 'resync-report.json');
  const summarize = (r: { topics: { rotated: number; alreadyRotated: number; failed: unknown[]; created: string[] }; clientsCreated: string[]; linksCreated: number; atRisk: unknown[] }) => ({
    journal: journalFile, rotated: r.topics.rotated + r.topics.alreadyRotated, failed: r.topics.failed.length,
    clientsCreated: r.clientsCreated.length, linksCreated: r.linksCreated, topicsCreated: r.topics.created.length, atRisk: r.atRisk, doneAt: new Date().toISOString(),
  });
  // Killed after the resync's own journal closed but before ours said so: its report is the result.
  if (readResyncJournal(journalFile).finished && fs.existsSync(reportFile)) return { resync: summarize(JSON.parse(fs.readFileSync(reportFile, 'utf8'))) };
  const report = await resyncTopicKeys({
    c2: resyncC2FromApi(ctx.api), journalFile, automationEnginePaused: true,
    expected: { clients: restored.counts.clients, topics: restored.counts.topics, source: `${restored.label} (restored)` },
    backupTakenAt: new Date(restored.takenAt), inventory: ctx.inventory,
    probe: createSealedTopicKeyProbe(ctx.urlFor(ctx.names.database)), signal: ctx.signal, logger: ctx.log.child({ component: 'resync' }),
  });
  writeResyncReport(report, reportFile);
  if (ctx.signal?.aborted) throw new OpsError('incomplete', `the resync was interrupted; re-run the same restore command to finish it (journal ${journalFile})`);
  if (!report.ok) throw new OpsError('topicsFailed', `the resync left ${report.topics.failed.length} topic(s) failed: ${report.topics.failed.slice(0, 5).map((f) => f.topic).join(', ')}; re-run the same restore command to retry them`);
  return { resync: summarize(report) };
}

export async function stopPostgres(ctx: RestoreContext): Promise<StepResult> {
  const ran = await runLifecycleCommands(ctx.pgbackrest!.postgres.stopCommands, 'stop');
  await assertPostgresStopped(ctx.maintenanceUrl);
  return { commands: ran };
}

export async function restoreDataDir(ctx: RestoreContext): Promise<StepResult> {
  const id = ctx.identity;
  const r = await restoreDataDirectory(ctx.pgbackrest!.target, { dataDir: id.dataDir!, keptDataDir: id.keptDataDir!, targetTime: id.targetTime!, delta: !!id.delta });
  return { keptDataDir: r.keptDataDir, seconds: r.seconds, backup: ctx.pgbackrest!.backup.label };
}

export async function startPostgres(ctx: RestoreContext): Promise<StepResult> {
  const ran = await runLifecycleCommands(ctx.pgbackrest!.postgres.startCommands, 'start');
  const r = await waitForRecoveredPostgres(ctx.maintenanceUrl, ctx.c2TimeoutMs * 2);
  return { commands: ran, restoredPointAt: r.restoredPointAt ?? (id(ctx).targetTime !== 'latest' ? id(ctx).targetTime : ctx.pgbackrest!.backup.stoppedAt), recoveredAt: new Date().toISOString() };
}

const id = (ctx: RestoreContext) => ctx.identity;

export async function preflightPgBackRest(ctx: RestoreContext): Promise<StepResult> {
  const b = ctx.pgbackrest!.backup;
  const id = ctx.identity;
  const checks: DrillCheck[] = [{ name: 'pgbackrest-backup', ok: true, detail: `recovery to ${id.targetTime} starts from backup ${b.label} (${b.type}, ${b.startedAt} to ${b.stoppedAt}, ${(b.sizeBytes / 1e6).toFixed(1)} MB)` }];
  // An unusable passphrase fails here, before anything stops; the key check after the recovery proves it right.
  try { ctx.dbKey(); } catch (e) { throw new OpsError('usage', `--passphrase-file: ${(e as Error).message}`); }
  const parent = path.dirname(id.dataDir!);
  const st = fs.statfsSync(fs.existsSync(parent) ? parent : '/');
  const free = st.bavail * st.bsize;
  if (free < b.sizeBytes * 1.1) throw new OpsError('refused', `not enough disk next to ${id.dataDir}: ${(free / 1e9).toFixed(2)} GB free, the backup restores ${(b.sizeBytes / 1e9).toFixed(2)} GB${id.delta ? '' : ' (and the old data directory is kept)'}`);
  checks.push({ name: 'disk-space', ok: true, detail: `${(free / 1e9).toFixed(2)} GB free next to ${id.dataDir} for ${(b.sizeBytes / 1e9).toFixed(2)} GB` });
  return { checks };
}
