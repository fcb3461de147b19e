// The PITR drill: restore C2's cluster from a pgBackRest repository (the toolkit's or one the operator set
// up by hand) to a point in time, into a scratch data directory, start a scratch PostgreSQL on it, and run
// the same checks as the logical drill. The report has the same schema, source "pgbackrest", the point
// reached and the real RPO. A drill that cannot reach its target fails.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { OpsError } from '../../lib/cli/exit-codes.ts';
import { redactUrl, type Logger } from '../../lib/log.ts';
import type { PgBackRestTarget } from '../../lib/pgbackrest/pgbackrest-command.ts';
import { BackupError } from '../exit-codes.ts';
import { buildDrillReport, createDrillRun, failCheck, lap, markVerified, tearDownDrill, type DrillRun } from '../drill/drill-run.ts';
import { writeDrillReport, type DrillReport, type PitrDrillFacts } from '../drill/drill-report.ts';
import { assertC2StepOptions, readPassphraseFile } from '../drill/restore-drill.ts';
import { deriveDrillKey, prepareRestoredDatabaseVerification, checkRestoredDatabase, type DrillReportCounts } from '../drill/restored-database-verification.ts';
import { warmKeyCheckWorkers } from '../../lib/c2-db/key-store-parallel.ts';
import { checkScratchC2 } from '../drill/drill-c2-check.ts';
import { pickLoopbackHostFor5432 } from '../../lib/servers/c2.ts';
import { removeDirSync } from '../drill/scratch-resources.ts';
import type { FleetInventory } from '../../lib/fleet-inventory/fleet-inventory.ts';
import type { FleetSnapshot } from '../../lib/fleet/fleet.ts';
import { readPitrInfoAndSegments, newestArchivedCommit, type PitrInfo, type RepoEntry } from './pitr-repository.ts';
import {
  configuredPgPaths, createScratchDataDir, restoreClusterFromRepository, neutralizeRestoredConfig, waitForPromotion, findC2Database, startRestoredServer,
  PITR_SCRATCH_SETTINGS, type RecoveredPoint,
} from './pitr-restore.ts';
import { createPgClient } from '../../lib/pg/pg-client.ts';

export interface PitrDrillOptions {
  pgbackrestConfig: string;
  stanza: string;
  configIncludePath?: string;
  /** OS user pgBackRest runs as (default postgres when root). */
  runAs?: string;
  /** ISO time, or 'latest' (default): the end of the archive. */
  targetTime?: string;
  /** pgBackRest set label to restore from. */
  set?: string;
  passphraseFile: string;
  /** C2's database in the cluster (default: the one database holding C2's tables). */
  c2Database?: string;
  /** Folder the scratch data directory is made in (default the temp folder); never at or around pg1-path. */
  scratchDir?: string;
  /** The production database: its clock gives the RPO against now (never written to). */
  productionDatabaseUrl?: string;
  withC2?: boolean; c2Binary?: string; c2Image?: string; dockerHost?: string;
  resync?: boolean; fleetSnapshot?: FleetSnapshot; rehearsalDevices?: number; inventory?: FleetInventory;
  reportFile?: string; metricsFile?: string;
  logger?: Logger; now?: () => Date;
}

/** Step 0: flags that cannot work are refused before anything starts (exit 2). */
export function parsePitrTarget(targetTime: string | undefined): Date | undefined {
  if (targetTime === undefined || targetTime === 'latest') return undefined;
  // An ISO time without a zone would be read in this host's zone: demand one.
  const d = new Date(targetTime);
  if (!/(Z|[+-]\d\d:?\d\d)$/.test(targetTime) || Number.isNaN(d.getTime())) {
    throw new BackupError('config', `--target-time ${targetTime}: give an ISO time with its zone (2026-12-02T20:15:00Z) or "latest"`);
  }
  return d;
}

/** Step 1: the repository answers, and the target lies inside what it can restore. */
function checkTargetReachable(run: DrillRun, info: PitrInfo, target: Date | undefined): boolean {
  const range = `sets ${info.sets.map((s) => s.label).join(', ') || 'none'}; restorable from ${info.oldestRecoverableTime ?? '-'}; newest commit in the archive ${info.newestRecoverableTime ?? 'unknown'}`;
  if (!info.sets.length) { failCheck(run, 'pitr-repository', new Error(`stanza ${info.stanza} has no backup set to restore: run e4ops pitr backup --type full`)); return false; }
  run.checks.push({ name: 'pitr-repository', ok: true, detail: `stanza ${info.stanza} (cipher ${info.cipher}): ${range}` });
  if (!target) return true;
  if (info.oldestRecoverableTime && target.getTime() < Date.parse(info.oldestRecoverableTime)) {
    failCheck(run, 'pitr-target', new Error(`--target-time ${target.toISOString()} is before the end of the oldest backup set (${info.oldestRecoverableTime}): the repository cannot restore to it (retention expired older sets)`));
    return false;
  }
  // The newest segment's arrival bounds what recovery can reach (a commit in it is older than its arrival).
  if (info.newestWalArchivedAt && target.getTime() > Date.parse(info.newestWalArchivedAt) + 1000) {
    failCheck(run, 'pitr-target', new Error(`--target-time ${target.toISOString()} is after the newest archived WAL segment (arrived ${info.newestWalArchivedAt}): recovery cannot reach it; drill to latest, or wait for archive_timeout`));
    return false;
  }
  return true;
}

interface RestoredCluster { dbUrl: string; dbHost: string; point: RecoveredPoint; set: string | null; restoreSeconds: number }

/** Steps 3-4: pgbackrest restore into a scratch data directory, neutralize production settings, start and promote. */
async function restoreIntoScratchCluster(run: DrillRun, t: PgBackRestTarget, o: PitrDrillOptions, target: Date | undefined): Promise<RestoredCluster> {
  const pgPaths = configuredPgPaths(o.pgbackrestConfig, o.configIncludePath);
  const dataDir = createScratchDataDir(pgPaths, o.scratchDir);
  run.scratch.add(`scratch data directory ${dataDir}`, async () => fs.rmSync(dataDir, { recursive: true, force: true }), () => removeDirSync(dataDir));
  const since = Date.now();
  const restored = await restoreClusterFromRepository(t, { dataDir, targetTime: target, set: o.set });
  lap(run, 'restore', since);
  const neutralized = neutralizeRestoredConfig(dataDir);
  run.checks.push({ name: 'restore', ok: true, detail: `pgbackrest restore of set ${restored.set ?? '?'} into ${dataDir} in ${restored.seconds.toFixed(1)} s (archiving off${neutralized.length ? `; production settings disabled: ${[...new Set(neutralized)].join(', ')}` : ''})` });
  const tStart = Date.now();
  const what = target?.toISOString() ?? (o.set ? `the end of set ${o.set}` : 'the end of the archive');
  // C2 always dials port 5432, and 127.0.0.1:5432 may be the machine's own PostgreSQL: use a free 127.0.0.N.
  const host = o.withC2 ? await pickLoopbackHostFor5432() : '127.0.0.1';
  const server = await startRestoredServer(dataDir, { host, ...(o.withC2 ? { port: 5432 } : {}), settings: PITR_SCRATCH_SETTINGS });
  run.scratch.add(`restored PostgreSQL ${host}:${server.port}`, () => server.stop(), () => server.killSync());
  const point = await waitForPromotion(server, what);
  lap(run, 'recovery', tStart);
  const db = await findC2Database(server, o.c2Database);
  return { dbUrl: server.url(db), dbHost: host, point, set: restored.set, restoreSeconds: restored.seconds };
}

/** The restored point against what was asked: a time target must be met (last commit <= target < first left out). */
function checkRestoredPoint(run: DrillRun, point: RecoveredPoint, target: Date | undefined): void {
  if (!target) {
    run.checks.push({ name: 'pitr-point', ok: true, detail: `recovered to the end of the archive: last commit ${point.lastCommitAt ?? 'unknown'}` });
    return;
  }
  const last = point.lastCommitAt ? Date.parse(point.lastCommitAt) : NaN;
  if (!(last <= target.getTime())) {
    failCheck(run, 'pitr-point', new Error(`the last recovered commit (${point.lastCommitAt ?? 'unknown'}) is not at or before the target ${target.toISOString()}`));
    return;
  }
  run.checks.push({ name: 'pitr-point', ok: true, detail: `recovered to ${target.toISOString()}: last commit ${point.lastCommitAt}${point.stoppedBeforeCommitAt ? `, first commit left out ${point.stoppedBeforeCommitAt}` : ''}` });
}

/** The production database's clock (read-only), for the RPO against now. */
async function productionNow(url: string | undefined, run: DrillRun): Promise<number | undefined> {
  if (!url) return undefined;
  const c = createPgClient(url);
  try {
    await c.connect();
    return Date.parse((await c.query<{ now: Date }>('SELECT now() AS now')).rows[0].now.toISOString());
  } catch (e) {
    run.log.warn('pitr.drill.production.unreachable', { database: redactUrl(url), error: (e as Error).message });
    return undefined;
  } finally { await c.end().catch(() => undefined); }
}

function pitrFacts(o: PitrDrillOptions, info: PitrInfo | undefined, r: RestoredCluster | undefined, prodNow: number | undefined): PitrDrillFacts {
  const last = r?.point.lastCommitAt ? Date.parse(r.point.lastCommitAt) : undefined;
  const newest = info?.newestRecoverableTime ? Date.parse(info.newestRecoverableTime) : undefined;
  return {
    stanza: o.stanza, configFile: o.pgbackrestConfig, target: o.targetTime ?? (o.set ? 'set' : 'latest'), set: r?.set ?? o.set ?? null,
    restoredPointInTime: r?.point.lastCommitAt ?? null, stoppedBeforeCommitAt: r?.point.stoppedBeforeCommitAt ?? null,
    newestCommitInArchive: info?.newestRecoverableTime ?? null,
    rpoToArchiveSeconds: last !== undefined && newest !== undefined ? Math.max(0, (newest - last) / 1000) : null,
    ...(prodNow !== undefined && last !== undefined ? { rpoToProductionSeconds: Math.max(0, (prodNow - last) / 1000) } : {}),
    restoreSeconds: r?.restoreSeconds ?? 0, recoverySeconds: r?.point.seconds ?? 0,
  };
}

/** Run a PITR drill. Resolves with the report (ok or not); throws only for misuse (bad flags). */
export async function runPitrDrill(o: PitrDrillOptions): Promise<DrillReport> {
  const run = createDrillRun({ logger: o.logger, now: o.now });
  run.extra.source = 'pgbackrest';
  const t: PgBackRestTarget = { configFile: o.pgbackrestConfig, stanza: o.stanza, configIncludePath: o.configIncludePath, user: o.runAs };
  let info: PitrInfo | undefined;
  let restored: RestoredCluster | undefined;
  let counts: DrillReportCounts = { clients: 0, topics: 0, links: 0 };
  const target = parsePitrTarget(o.targetTime);
  let prodNow: number | undefined;
  try {
    assertC2StepOptions(o);
    const passphrase = readPassphraseFile(o.passphraseFile);
    prodNow = await productionNow(o.productionDatabaseUrl, run); // before the restore: what a disaster now would lose
    // The repository's sets and archived segments, listed now: a time target is checked against them before
    // anything is restored; "latest" needs nothing from them first, so pgBackRest restores meanwhile (a
    // restore that fails because the repository cannot be read is then reported as the repository's failure).
    const listed = readPitrInfoAndSegments(t, { withNewestCommit: false }).then((r) => r, (e: unknown) => ({ error: e }));
    let restoring: Promise<RestoredCluster> | undefined;
    const startRestore = () => {
      restoring = restoreIntoScratchCluster(run, t, o, target);
      restoring.catch(() => undefined);
      warmKeyCheckWorkers(); // the key-check workers load their modules while pgBackRest restores
    };
    if (!target) startRestore();
    const got = await listed;
    let segments: RepoEntry[] = [];
    if ('error' in got) failCheck(run, 'pitr-repository', got.error);
    else { info = got.info; segments = got.segments; }
    const reachable = !!info && checkTargetReachable(run, info, target);
    if (!reachable) {
      await restoring?.catch(() => undefined); // its scratch resources go with the teardown; its failure is this one's
      restoring = undefined;
    } else if (!restoring) startRestore();
    // While pgBackRest restores: the key (Argon2i).
    const key = restoring ? deriveDrillKey(run, passphrase, o.passphraseFile) : undefined;
    const restoredCluster = restoring && await restoring;
    if (key && restoredCluster) {
      restored = restoredCluster;
      checkRestoredPoint(run, restored.point, target);
      const expect = { sourceRecordsCounts: false, sourceRecordsFingerprint: false };
      const verification = prepareRestoredDatabaseVerification(run, restored.dbUrl, key, expect);
      counts = await checkRestoredDatabase(run, verification, key, expect);
      const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-drill-'));
      run.scratch.addDir(workDir);
      const pointAt = new Date(restored.point.lastCommitAt ?? run.startedAt);
      if (o.withC2) await checkScratchC2(run, { ...o, dbUrl: restored.dbUrl, dbHost: restored.dbHost, passphrase, dbKey: key.dbKey, workDir, restoredPointAt: pointAt, counts });
      markVerified(run);
    }
    // The newest commit in the archive as it was when the drill began (the segments listed then), for the RPO.
    // Read once the restored database is verified: fetching and decoding WAL is not on the way to a usable
    // database, and beside the restore it took the cores pgBackRest restores with.
    if (info?.archiveId && segments.length) info.newestRecoverableTime = await newestArchivedCommit(t, info.archiveId, segments).catch(() => null);
  } catch (e) {
    if (e instanceof OpsError && e.kind === 'usage') throw e;
    failCheck(run, e instanceof OpsError && e.kind === 'pgbackrest' ? 'pitr-restore' : e instanceof OpsError && e.kind === 'refused' ? 'scratch-is-not-production' : 'pitr-recovery', e);
  } finally {
    await tearDownDrill(run);
  }
  run.extra.backupTakenAt = info?.sets.find((s) => s.label === restored?.set)?.startedAt;
  if (!run.extra.backupTakenAt) delete run.extra.backupTakenAt;
  run.extra.pitr = pitrFacts(o, info, restored, prodNow);
  return buildDrillReport(run, { backupId: restored?.set ?? o.set ?? null, target: `pgbackrest:${o.pgbackrestConfig}#${o.stanza}`, counts, rpoSeconds: run.extra.pitr.rpoToArchiveSeconds });
}

/** Run the PITR drill and write its report and metrics. */
export async function runPitrDrillAndRecord(o: PitrDrillOptions): Promise<DrillReport> {
  const report = await runPitrDrill(o);
  writeDrillReport(report, o.reportFile, o.metricsFile);
  return report;
}
