// The restore drill: take a backup set from a target, re-verify every object's checksum while
// decrypting it, restore the database into a scratch PostgreSQL (started here, or a given scratch
// URL that is provably not production), check what an operator needs to trust the restore, and
// optionally start a scratch C2 on it (with its own broker) and rehearse the topic-key resync.
// Every scratch server is torn down on every path. The report carries RTO, RPO, counts and checks.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { redactUrl } from '../../lib/log.ts';
import { runDocker } from '../../lib/servers/docker-engine.ts';
import { openTarget } from '../targets.ts';
import { markSetVerifiedByDrill } from '../backup-sets.ts';
import { BackupError } from '../exit-codes.ts';
import { readPassphraseFile as readPassphraseFileChecked } from '../../lib/e4/passphrase-file.ts';
import { missingFingerprintWarning } from './missing-fingerprint.ts';
import type { Logger } from '../../lib/log.ts';
import { ScratchIsProductionError } from './scratch-database-guard.ts';
import { writeDrillReport, type DrillReport } from './drill-report.ts';
import { buildDrillReport, createDrillRun, failCheck, markVerified, tearDownDrill, type DrillRun } from './drill-run.ts';
import { openDrillSet, restoreSetObjects, type OpenedSet } from './drill-backup-set.ts';
import { openScratchDatabase, productionUrlOfManifest } from './scratch-database.ts';
import { deriveDrillKey, prepareRestoredDatabaseVerification, checkRestoredDatabase, type DrillKey, type DrillReportCounts } from './restored-database-verification.ts';
import { checkScratchC2 } from './drill-c2-check.ts';
import type { FleetInventory } from '../../lib/fleet-inventory/fleet-inventory.ts';
import type { FleetSnapshot } from '../../lib/fleet/fleet.ts';

export { SCRATCH_POSTGRES_SETTINGS } from './scratch-database.ts';
export { READ_ONLY_CHECKS_MAY_START } from './drill-backup-set.ts';

export interface RestoreDrillOptions {
  /** Where the sets are (--target): a directory or an rclone remote. */
  target: string;
  /** 'latest' or a set id (--backup). */
  backup: string;
  /** age identity file that decrypts the set (--identity). */
  identityFile: string;
  /** File holding C2's db-encryption-passphrase (--passphrase-file). */
  passphraseFile: string;
  /** Restore here instead of a drill-started PostgreSQL (must be empty; never production). */
  scratchDatabaseUrl?: string;
  /** The production database (--database-url / E4OPS_DATABASE_URL): the scratch URL may never equal it. */
  productionDatabaseUrl?: string;
  /** Start a scratch C2 on the restored database and check it serves the same clients and topics. */
  withC2?: boolean;
  c2Binary?: string;
  /** Run the scratch C2 from this container image (stacks/docker/c2.Dockerfile) instead of a binary. */
  c2Image?: string;
  /** Docker engine for c2Image (default: DOCKER_HOST, else docker's default socket). */
  dockerHost?: string;
  /** With withC2: rehearse the topic-key resync against the scratch C2 with a simulated fleet. */
  resync?: boolean;
  /** Rehearsal fleet: key state of the devices at the moment before the restore (default: built from the restored keys). */
  fleetSnapshot?: FleetSnapshot;
  /** Rehearsal: simulated devices when no snapshot is given (default 20). */
  rehearsalDevices?: number;
  inventory?: FleetInventory;
  reportFile?: string;
  metricsFile?: string;
  rcloneConfig?: string;
  /** Mark the set as drill-verified on success so retention keeps it (default true). */
  markVerified?: boolean;
  logger?: Logger;
  now?: () => Date;
}

export class DrillFailedError extends Error {
  constructor(readonly report: DrillReport) {
    super(`restore drill failed: ${report.checks.filter((c) => !c.ok).map((c) => `${c.name} (${c.detail})`).join('; ')}`);
  }
}

/** Before anything starts: the image must be on the engine (a drill never pulls). */
function assertC2ImagePresent(image: string, dockerHost?: string): void {
  try {
    runDocker(dockerHost ?? process.env.DOCKER_HOST, ['image', 'inspect', '--format', '{{.Id}}', image], { timeoutMs: 30_000 });
  } catch (e) {
    throw new BackupError('config', `--c2-image ${image}: not usable on the Docker engine${dockerHost ?? process.env.DOCKER_HOST ? ` at ${dockerHost ?? process.env.DOCKER_HOST}` : ''} (${(e as Error).message}); build it from stacks/docker/c2.Dockerfile (README, "Restore drills"), or use --c2-binary`);
  }
}

/** Read a passphrase file the way backups do: one trailing newline is not part of the passphrase. */
export function readPassphraseFile(file: string): string {
  // The one reader (lib/e4/passphrase-file.ts): a short passphrase is a usage error (exit 2), as in backup.
  try { return readPassphraseFileChecked(file); } catch (e) { throw new BackupError('config', (e as Error).message); }
}

/** The flag combinations of the C2 step, checked before anything starts (misuse throws, exit 2). */
export function assertC2StepOptions(o: { withC2?: boolean; c2Binary?: string; c2Image?: string; dockerHost?: string; resync?: boolean }): void {
  if (o.c2Binary && !o.withC2) throw new BackupError('config', '--c2-binary needs --with-c2');
  if (o.c2Image && !o.withC2) throw new BackupError('config', '--c2-image needs --with-c2');
  if (o.c2Image && o.c2Binary) throw new BackupError('config', '--c2-binary and --c2-image exclude each other: give one');
  if (o.c2Image) assertC2ImagePresent(o.c2Image, o.dockerHost);
  if (o.resync && !o.withC2) throw new BackupError('config', '--resync rehearses against a scratch C2: add --with-c2');
}

/** Step 0: flags that cannot work are refused before anything starts. Returns the passphrase. */
function checkDrillOptions(opts: RestoreDrillOptions): string {
  assertC2StepOptions(opts);
  if (!fs.existsSync(opts.identityFile)) throw new BackupError('config', `--identity ${opts.identityFile} does not exist: give the age identity file whose public key the backups encrypt to`);
  return readPassphraseFile(opts.passphraseFile);
}

/** What the steps after the restore need. */
interface RestoredSet { set: OpenedSet; key: DrillKey; dbUrl: string; dbHost: string; workDir: string; passphrase: string }

/** Steps 3 + 4: scratch database, then every object restored (the read-only checks start during the index phase). */
async function restoreIntoScratch(run: DrillRun, opts: RestoreDrillOptions, set: OpenedSet, key: DrillKey, passphrase: string) {
  const since = Date.now();
  const { dbUrl, dbHost } = await openScratchDatabase(run.scratch, {
    scratchDatabaseUrl: opts.scratchDatabaseUrl,
    // The manifest says where the backup was taken from: that database is production too.
    productionUrls: [opts.productionDatabaseUrl ?? process.env.E4OPS_DATABASE_URL, productionUrlOfManifest(set.manifest.postgres.host, set.manifest.postgres.database)],
    forC2: !!opts.withC2,
  });
  run.timings.scratchDatabase = (Date.now() - since) / 1000;
  run.log.info('drill.scratch', { database: redactUrl(dbUrl), setId: set.setId });
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-drill-'));
  run.scratch.addDir(workDir);
  const inv = set.manifest.c2.inventory;
  const expect = { counts: { clients: inv.clients, topics: inv.topics, links: inv.topicLinks }, passphraseFingerprint: set.manifest.passphraseFingerprint?.value, sourceRecordsFingerprint: !!set.manifest.passphraseFingerprint, sourceRecordsCounts: true };
  const noFingerprint = missingFingerprintWarning(set.manifest);
  if (noFingerprint) { run.checks.push(noFingerprint); run.log.warn('drill.no_passphrase_fingerprint', { setId: set.setId }); }
  const verification = prepareRestoredDatabaseVerification(run, dbUrl, key, expect);
  const restored = await restoreSetObjects(run, { set, identityFile: opts.identityFile, dbUrl, workDir, onIndexPhase: () => void verification.startReadOnlyChecks({ besideRestore: true }) });
  // A restore that failed after the read-only checks started: they read the scratch database, let them end before teardown.
  if (!restored) { await verification.settle(); return undefined; }
  const restoredSet: RestoredSet = { set, key, dbUrl, dbHost, workDir, passphrase };
  return { restoredSet, verification, expect };
}

/** Run a restore drill. Resolves with the report (ok or not); throws only for misuse (bad flags). */
export async function runRestoreDrill(opts: RestoreDrillOptions): Promise<DrillReport> {
  const run = createDrillRun({ logger: opts.logger, now: opts.now });
  run.extra.source = 'backup-set';
  let set: OpenedSet | undefined;
  let counts: DrillReportCounts = { clients: 0, topics: 0, links: 0 };
  try {
    const passphrase = checkDrillOptions(opts);
    set = await openDrillSet(run, opts);
    const key = set && deriveDrillKey(run, passphrase, opts.passphraseFile);
    const restore = set && key && await restoreIntoScratch(run, opts, set, key, passphrase);
    if (restore) {
      const r = restore.restoredSet;
      counts = await checkRestoredDatabase(run, restore.verification, r.key, restore.expect, path.join(r.workDir, 'c2-configs'));
      if (opts.withC2) await checkScratchC2(run, { ...opts, ...r, dbKey: r.key.dbKey, restoredPointAt: new Date(r.set.manifest.startedAt), counts });
      markVerified(run);
    }
  } catch (e) {
    if (e instanceof ScratchIsProductionError) failCheck(run, 'scratch-is-not-production', e);
    else if (e instanceof BackupError && e.kind === 'usage') throw e;
    else failCheck(run, 'drill', e);
  } finally {
    await tearDownDrill(run);
  }
  return buildDrillReport(run, {
    backupId: set?.setId ?? null, target: opts.target, counts,
    // RPO: what a restore of this set would lose if production failed now = everything committed since the
    // set's consistent snapshot, which pg_dump takes at the start of the run (not when the upload finished).
    rpoSeconds: set ? Math.max(0, (run.startedAt.getTime() - Date.parse(set.manifest.startedAt)) / 1000) : null,
  });
}

/** Run the drill, write its report/metrics, and mark the set verified when it passed. */
export async function runRestoreDrillAndRecord(opts: RestoreDrillOptions): Promise<DrillReport> {
  const report = await runRestoreDrill(opts);
  writeDrillReport(report, opts.reportFile, opts.metricsFile);
  if (report.ok && report.backupId && opts.markVerified !== false) {
    const target = openTarget(opts.target, { rcloneConfig: opts.rcloneConfig });
    await markSetVerifiedByDrill(target, report.backupId, {
      rtoSeconds: report.rtoSeconds, rpoSeconds: report.rpoSeconds, counts: report.counts, finishedAt: report.finishedAt,
    });
  }
  return report;
}
