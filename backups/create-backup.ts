// One backup run, as a runbook of named steps:
//   preflight (flags, files, recipients, pg_dump; nothing touched yet) → run lock → claim targets
//   (ready/marker check, lease, clean interrupted sets) → snapshot (exported, lock waits bounded) →
//   passphrase check (open sampled keys, then fingerprint) → store objects (pg_dump, configs, files,
//   Pulumi export, Elasticsearch) → write manifest (last) → prune → record metrics.
// Every step is bounded by the run's --timeout (exit 12). Failures carry their exit code (backups/exit-codes.ts).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLogger, type Logger } from '../lib/log.ts';
import { detectCryptoMode, type C2Inventory } from '../lib/c2-db/inventory.ts';
import { readPassphraseFile } from '../lib/e4/passphrase-file.ts';
import { createByteProgress } from '../lib/progress.ts';
import { checkPassphrase, FINGERPRINT_ALGORITHM } from './passphrase-fingerprint.ts';
import { BackupError, OpsError } from './exit-codes.ts';
import { storeEncryptedObject, type PipelineStage, type ProgressHook } from './encrypted-object.ts';
import { MANIFEST_FILE, serializeManifest, type BackupManifest, type ManifestObject } from './manifest.ts';
import { listBackupSets, newSetId, removeIncompleteSets } from './backup-sets.ts';
import { loadRecipients } from './recipients.ts';
import { acquireRunLock, type RunLock } from './run-lock.ts';
import { hasRetentionRules, pruneBackupSets, validateRetentionPolicy, type PruneResult, type RetentionPolicy } from './retention.ts';
import { openTarget, type BackupTarget, type TargetReadiness } from './targets.ts';
import { acquireTargetLease, type TargetLease } from './target-lease.ts';
import { writeBackupMetrics } from './backup-metrics.ts';
import { isLockTimeout, lockWaitError, openSourceSnapshot, pgDumpConnection, pgDumpStage, pgDumpVersion, DEFAULT_LOCK_WAIT_TIMEOUT_SECONDS, type SourceSnapshot } from './backup-snapshot.ts';
import type { ElasticsearchSnapshotOptions, ElasticsearchSnapshotRecord } from './elasticsearch-snapshot.ts';

export { pgDumpConnection };
export type DumpCompression = 'zstd' | 'pg_dump';

export interface BackupOptions {
  databaseUrl: string;
  /** PostgreSQL schema C2 uses (its db-schema setting), if not public. */
  dbSchema?: string;
  configsDir?: string;
  renderedConfigsDir?: string;
  /** Single files or folders (absolute paths) worth keeping, e.g. pubkey mode's C2 key outside the configs dir. */
  extraFiles?: string[];
  pulumiStackExport?: string;
  targets: string[];
  recipients?: string[];
  recipientsFile?: string;
  /** Checked against sampled keys and fingerprinted; never stored. */
  passphraseFile?: string;
  elasticsearch?: Omit<ElasticsearchSnapshotOptions, 'snapshotName'>;
  /** 'zstd' (default): pg_dump -Z0 | zstd; 'pg_dump': pg_dump's own zlib. */
  compression?: DumpCompression;
  zstdLevel?: number;
  retention?: RetentionPolicy;
  lockFile?: string;
  metricsFile?: string;
  rcloneConfig?: string;
  /**
   * Create (and mark) a missing or empty local target. The CLI passes --create-target (default false);
   * library callers that own a scratch directory (tests, benches) get true by default.
   */
  createTarget?: boolean;
  /** fstab to read mount points from (default /etc/fstab). */
  fstab?: string;
  /** pg_dump --lock-wait-timeout and our own queries' lock_timeout (default 300 s). */
  lockWaitTimeoutSeconds?: number;
  /** The whole run, exit 12 when exceeded (default: none). */
  timeoutSeconds?: number;
  /** A lease whose heartbeat is older than this is a dead run's and is taken over (default 600 s). */
  leaseStaleAfterSeconds?: number;
  /** SIGINT/SIGTERM (systemd's TimeoutStartSec, Ctrl-C): the run stops its programs and releases its leases. */
  signal?: AbortSignal;
  log?: Logger;
  onProgress?: ProgressHook;
  /** Environment C2 runs with (E4C2_CRYPTO_MODE beats config.yaml); default none. */
  c2Env?: NodeJS.ProcessEnv;
}

export interface BackupResult {
  setId: string;
  manifest: BackupManifest;
  /** Targets holding the complete set. */
  stored: string[];
  /** Targets that failed (the set is incomplete there and is removed by the next run). */
  failed: { target: string; error: BackupError }[];
  pruned: PruneResult[];
  removedIncomplete: Record<string, string[]>;
  seconds: number;
}

export function toolkitVersion(): string {
  try {
    const pkg = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'package.json');
    return (JSON.parse(fs.readFileSync(pkg, 'utf8')) as { version: string }).version;
  } catch { return 'unknown'; }
}

function checkDir(dir: string, flag: string): void {
  let st: fs.Stats;
  try { st = fs.statSync(dir); } catch { throw new BackupError('config', `${flag} ${dir} does not exist`); }
  if (!st.isDirectory()) throw new BackupError('config', `${flag} ${dir} is not a directory`);
}

/** What preflight settled: everything an operator can get wrong, checked before anything is touched. */
export interface Preflight {
  recipients: ReturnType<typeof loadRecipients>;
  conn: ReturnType<typeof pgDumpConnection>;
  compression: DumpCompression;
  zstdLevel: number;
  dumpVersion: string;
  targets: BackupTarget[];
  passphrase?: { file: string; text: string };
}

export function preflight(opts: BackupOptions): Preflight {
  if (!opts.targets.length) throw new BackupError('config', 'no --target given: a directory or an rclone remote (remote:path), repeatable');
  const recipients = loadRecipients(opts.recipients, opts.recipientsFile);
  const conn = pgDumpConnection(opts.databaseUrl);
  if (opts.configsDir) checkDir(opts.configsDir, '--configs-dir');
  if (opts.renderedConfigsDir) checkDir(opts.renderedConfigsDir, '--rendered-configs-dir');
  for (const f of opts.extraFiles ?? []) {
    if (!path.isAbsolute(f)) throw new BackupError('config', `extra file ${f} must be an absolute path`);
    if (!fs.existsSync(f)) throw new BackupError('config', `extra file ${f} does not exist`);
  }
  if (opts.pulumiStackExport && !fs.existsSync(opts.pulumiStackExport)) throw new BackupError('config', `--pulumi-stack-export ${opts.pulumiStackExport} does not exist`);
  if (opts.retention) validateRetentionPolicy(opts.retention);
  const zstdLevel = opts.zstdLevel ?? 1;
  if (!Number.isInteger(zstdLevel) || zstdLevel < 1 || zstdLevel > 19) throw new BackupError('config', `--zstd-level must be 1..19 (got ${zstdLevel})`);
  const dumpVersion = pgDumpVersion();
  const targets = opts.targets.map((t) => openTarget(t, { rcloneConfig: opts.rcloneConfig }));
  const passphrase = opts.passphraseFile ? { file: opts.passphraseFile, text: readPassphraseFile(opts.passphraseFile) } : undefined;
  return { recipients, conn, compression: opts.compression ?? 'zstd', zstdLevel, dumpVersion, targets, passphrase };
}

/** State the steps share; `step` says what the run is doing, for the timeout message. */
interface BackupRun {
  opts: BackupOptions;
  pre: Preflight;
  log: Logger;
  t0: number;
  startedAt: Date;
  setId: string;
  signal: AbortSignal;
  /** Stop the run (a lost lease): every bounded step rejects with `e`. */
  abort: (e: Error) => void;
  step: string;
  leases: TargetLease[];
  live: BackupTarget[];
  failed: BackupResult['failed'];
  objects: ManifestObject[];
  removedIncomplete: Record<string, string[]>;
  setsPerTarget: Record<string, number>;
}

/** Reject as soon as the run is aborted (timeout, lost lease), whatever `p` is waiting for. */
function bounded<T>(run: BackupRun, p: Promise<T>): Promise<T> {
  if (run.signal.aborted) return Promise.reject(run.signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(run.signal.reason);
    run.signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => run.signal.removeEventListener('abort', onAbort));
  });
}

function targetFailed(run: BackupRun, t: BackupTarget, e: unknown, object?: string): void {
  // A stopped run (timeout, signal, lost lease) is not one target failing: it ends the run with its own reason.
  if (run.signal.aborted) throw run.signal.reason;
  const be = e instanceof BackupError ? e : new BackupError('target', `target ${t.spec}: ${(e as Error).message}`);
  run.failed.push({ target: t.spec, error: be });
  run.log.error('target_failed', { target: t.spec, ...(object ? { object } : {}), error: be.message });
}

/**
 * Ready check (marker / mount) and lease on every target, then removal of sets dead runs left without a
 * manifest. A target that cannot be written drops out (the others still get the set); a target another
 * live run holds stops the whole run (exit 5): its owner is named.
 */
export async function claimTargets(run: BackupRun): Promise<void> {
  for (const t of run.pre.targets) {
    try {
      const readiness: TargetReadiness = await t.ensureReady({ create: run.opts.createTarget ?? true, fstab: run.opts.fstab });
      if (readiness !== 'ready') run.log.info('target_initialised', { target: t.spec, how: readiness });
      const lease = await acquireTargetLease(t, { operation: 'backup', staleAfterSeconds: run.opts.leaseStaleAfterSeconds, log: run.log, onLost: (e) => run.abort(e) });
      run.leases.push(lease);
      await lease.setSetId(run.setId);
    } catch (e) {
      if (!(e instanceof BackupError) || e.kind !== 'target') throw e;
      targetFailed(run, t, e);
    }
  }
  run.live = run.pre.targets.filter((t) => run.leases.some((l) => l.target === t));
  if (!run.live.length) throw run.failed[0].error;
  for (const t of run.live) {
    try {
      run.removedIncomplete[t.spec] = await removeIncompleteSets(t, { keep: [run.setId] });
      for (const id of run.removedIncomplete[t.spec]) run.log.info('incomplete_set_removed', { target: t.spec, removedSetId: id });
    } catch (e) {
      run.log.warn('incomplete_set_cleanup_failed', { target: t.spec, error: (e as Error).message });
    }
  }
}

/** Open every sampled key with the passphrase before recording its fingerprint; none opening is exit 13. */
export async function checkPassphraseStep(run: BackupRun, snap: SourceSnapshot): Promise<BackupManifest['passphraseFingerprint']> {
  const p = run.pre.passphrase;
  if (!p) {
    run.log.warn('no_passphrase_fingerprint', { hint: 'give --passphrase-file so drills can confirm they hold the right DB passphrase' });
    return null;
  }
  let r;
  try { r = await checkPassphrase(p.text, snap.sampleKeys); } catch (e) {
    throw new BackupError('config', `--passphrase-file ${p.file}: ${(e as Error).message}`);
  }
  if (r.sampled > 0 && r.opened === 0) {
    throw new OpsError('wrongPassphrase', `--passphrase-file ${p.file} opens none of the ${r.sampled} sampled keys of ${run.pre.conn.display}: it is not this C2's db-encryption-passphrase. `
      + 'Nothing was stored; give the file holding the passphrase C2 runs with (E4C2_DB_ENCRYPTION_PASSPHRASE / db-encryption-passphrase)');
  }
  if (r.opened < r.sampled) run.log.warn('passphrase_opens_some_keys', { opened: r.opened, sampled: r.sampled, hint: 'some stored keys do not open: a damaged row or a mixed key store; the drill checks every key' });
  run.log.info('passphrase_checked', { passphraseFile: p.file, opened: r.opened, sampled: r.sampled });
  return { algorithm: FINGERPRINT_ALGORITHM, value: r.value };
}

async function prepareSets(run: BackupRun): Promise<void> {
  for (const t of run.live) {
    try { await bounded(run, t.prepareSet(run.setId)); } catch (e) { targetFailed(run, t, e); }
  }
  run.live = run.live.filter((t) => !run.failed.some((f) => f.target === t.spec));
  if (!run.live.length) throw run.failed[0].error;
}

/** One object through age to every live target; targets that fail drop out, the run goes on with the rest. */
async function storeObject(run: BackupRun, name: string, kind: ManifestObject['kind'], format: ManifestObject['format'], comp: ManifestObject['compression'], stages: PipelineStage[]): Promise<void> {
  const ot0 = Date.now();
  run.step = `storing ${name}`;
  const progress = createByteProgress({ what: `${name} → ${run.live.length} target(s)`, log: run.log });
  const r = await bounded(run, storeEncryptedObject({
    setId: run.setId, name, stages, recipientArgs: run.pre.recipients.ageArgs, targets: run.live, signal: run.signal,
    onProgress: async (p) => { progress.update(p.bytes); await run.opts.onProgress?.(p); },
  }));
  progress.done(r.size);
  for (const f of r.failures) targetFailed(run, f.target, f.error, name);
  if (!r.okTargets.length) throw r.failures[0]?.error ?? new BackupError('target', `no target accepted ${name}`);
  run.live = r.okTargets;
  run.objects.push({ name, kind, format, compression: comp, encryption: 'age', size: r.size, sha256: r.sha256 });
  run.log.info('object_stored', { object: name, bytes: r.size, seconds: (Date.now() - ot0) / 1000, targets: run.live.map((t) => t.spec) });
}

async function storeDatabaseDump(run: BackupRun, snap: SourceSnapshot): Promise<void> {
  const { compression, zstdLevel, conn } = run.pre;
  const lockWait = run.opts.lockWaitTimeoutSeconds ?? DEFAULT_LOCK_WAIT_TIMEOUT_SECONDS;
  const dump = pgDumpStage(conn, snap.snapshot, { lockWaitTimeoutSeconds: lockWait, zstdAfter: compression === 'zstd' });
  const zstd: PipelineStage = { cmd: 'zstd', args: ['-q', '-c', `-${zstdLevel}`], errorKind: 'internal', what: 'zstd of the dump' };
  try {
    await storeObject(run, compression === 'zstd' ? 'postgres.pgdump.zst.age' : 'postgres.pgdump.age', 'postgres-dump', 'pg_dump-custom',
      compression === 'zstd' ? 'zstd' : 'pg_dump-zlib', compression === 'zstd' ? [dump, zstd] : [dump]);
  } catch (e) {
    if (e instanceof BackupError && e.kind === 'sourceUnreachable' && isLockTimeout(e.message)) throw lockWaitError(`pg_dump of ${conn.display}`, lockWait, e.message);
    throw e;
  }
}

async function storeFileObjects(run: BackupRun): Promise<void> {
  const { opts } = run;
  const zstd = (what: string): PipelineStage => ({ cmd: 'zstd', args: ['-q', '-c', `-${run.pre.zstdLevel}`], errorKind: 'internal', what });
  const tarOf = (dir: string, flag: string): PipelineStage[] => [
    { cmd: 'tar', args: ['-C', dir, '--numeric-owner', '-cf', '-', '.'], errorKind: 'sourceUnreachable', what: `tar of ${flag} ${dir}` },
    zstd(`zstd of ${dir}`),
  ];
  if (opts.configsDir) await storeObject(run, 'c2-configs.tar.zst.age', 'c2-configs', 'tar', 'zstd', tarOf(opts.configsDir, '--configs-dir'));
  if (opts.renderedConfigsDir) await storeObject(run, 'rendered-configs.tar.zst.age', 'rendered-configs', 'tar', 'zstd', tarOf(opts.renderedConfigsDir, '--rendered-configs-dir'));
  if (opts.extraFiles?.length) {
    // Stored with their absolute paths (minus the leading /): `tar -x -C /` puts them back.
    await storeObject(run, 'extra-files.tar.zst.age', 'extra-files', 'tar', 'zstd', [
      { cmd: 'tar', args: ['-C', '/', '--numeric-owner', '-cf', '-', '--', ...opts.extraFiles.map((f) => path.relative('/', f))], errorKind: 'sourceUnreachable', what: 'tar of the extra files' },
      zstd('zstd of the extra files'),
    ]);
  }
  if (opts.pulumiStackExport) {
    await storeObject(run, 'pulumi-stack.json.zst.age', 'pulumi-stack', 'json', 'zstd',
      [{ cmd: 'zstd', args: ['-q', '-c', `-${run.pre.zstdLevel}`, opts.pulumiStackExport], errorKind: 'sourceUnreachable', what: `zstd of ${opts.pulumiStackExport}` }]);
  }
}

async function snapshotElasticsearchStep(run: BackupRun): Promise<ElasticsearchSnapshotRecord | undefined> {
  if (!run.opts.elasticsearch) return undefined;
  run.step = 'snapshotting Elasticsearch';
  // The Elasticsearch client is loaded only when asked for (it costs memory every run otherwise).
  const { snapshotElasticsearch } = await import('./elasticsearch-snapshot.ts');
  const es = await bounded(run, snapshotElasticsearch({ ...run.opts.elasticsearch, snapshotName: `e4ops-${run.setId.toLowerCase()}` }));
  run.log.info('elasticsearch_snapshot', { repository: es.repository, snapshot: es.snapshot, indices: es.indices.length });
  return es;
}

function buildManifest(run: BackupRun, snap: SourceSnapshot, inventory: C2Inventory, fingerprint: BackupManifest['passphraseFingerprint'], es?: ElasticsearchSnapshotRecord): BackupManifest {
  const { conn, dumpVersion, recipients } = run.pre;
  const crypto = detectCryptoMode(inventory, run.opts.configsDir, run.opts.c2Env ?? {});
  return {
    kind: 'e4ops-backup-set', schemaVersion: 1, setId: run.setId,
    startedAt: run.startedAt.toISOString(), finishedAt: new Date().toISOString(),
    toolkitVersion: toolkitVersion(), host: os.hostname(),
    postgres: { serverVersion: snap.serverVersion, serverVersionNum: snap.serverVersionNum, database: conn.database, host: conn.host, pgDumpVersion: dumpVersion, snapshot: snap.snapshot },
    c2: { cryptoMode: crypto.mode, cryptoModeSource: crypto.source, inventory },
    objects: run.objects, recipients: recipients.keys, passphraseFingerprint: fingerprint,
    ...(es ? { elasticsearch: es } : {}),
  };
}

/** The manifest goes last: a set without one is incomplete by definition. */
async function writeManifest(run: BackupRun, manifest: BackupManifest): Promise<string[]> {
  run.step = 'writing the manifest';
  const text = serializeManifest(manifest);
  const stored: string[] = [];
  for (const t of run.live) {
    try { await bounded(run, t.writeText(run.setId, MANIFEST_FILE, text)); stored.push(t.spec); } catch (e) { targetFailed(run, t, e, MANIFEST_FILE); }
  }
  if (!stored.length) throw run.failed[run.failed.length - 1].error;
  run.log.info('backup_set_stored', { targets: stored, bytes: manifest.objects.reduce((a, o) => a + o.size, 0), objects: manifest.objects.length, inventory: manifest.c2.inventory, cryptoMode: manifest.c2.cryptoMode });
  return stored;
}

async function pruneStoredTargets(run: BackupRun, stored: string[]): Promise<PruneResult[]> {
  run.step = 'pruning';
  const pruned: PruneResult[] = [];
  for (const spec of stored) {
    const t = run.pre.targets.find((x) => x.spec === spec)!;
    if (run.opts.retention && hasRetentionRules(run.opts.retention)) {
      const p = await bounded(run, pruneBackupSets(t, run.opts.retention));
      pruned.push(p);
      for (const id of p.removed) run.log.info('set_pruned', { target: spec, prunedSetId: id });
    }
  }
  return pruned;
}

/** Textfile metrics on every outcome: set counts still go out on failure, so "sets on the target" alerts keep working. */
async function recordMetrics(run: BackupRun, success: boolean): Promise<void> {
  if (!run.opts.metricsFile) return;
  for (const t of run.pre.targets) {
    try { run.setsPerTarget[t.spec] = (await listBackupSets(t)).filter((s) => s.status === 'complete').length; } catch { /* unreachable target */ }
  }
  try {
    const bytes = success ? run.objects.reduce((a, o) => a + o.size, 0) : 0;
    writeBackupMetrics(run.opts.metricsFile, { success, finishedAt: new Date(), durationSeconds: (Date.now() - run.t0) / 1000, bytes, setsPerTarget: run.setsPerTarget });
  } catch (e) {
    run.log.warn('metrics_write_failed', { file: run.opts.metricsFile, error: (e as Error).message });
  }
}

/** The run's --timeout and lost leases both abort it; the reason becomes the run's error. */
function startRun(opts: BackupOptions, pre: Preflight, log: Logger): { run: BackupRun; stop: () => void } {
  const controller = new AbortController();
  const startedAt = new Date();
  const setId = newSetId(startedAt);
  const run: BackupRun = {
    opts, pre, log: log.child({ setId }), t0: Date.now(), startedAt, setId, signal: controller.signal, step: 'starting',
    abort: (e) => { if (!controller.signal.aborted) controller.abort(e); },
    leases: [], live: [...pre.targets], failed: [], objects: [], removedIncomplete: {}, setsPerTarget: {},
  };
  const timer = opts.timeoutSeconds ? setTimeout(() => controller.abort(new OpsError('timedOut',
    `backup did not finish within --timeout ${opts.timeoutSeconds} s: it was ${run.step}; objects already written stay without a manifest (the next run removes them)`,
    { step: run.step })), opts.timeoutSeconds * 1000) : undefined;
  timer?.unref();
  const onSignal = () => run.abort(new OpsError('terminated', `backup stopped by ${String(opts.signal?.reason ?? 'a signal')} while ${run.step}; objects already written stay without a manifest (the next run removes them)`));
  opts.signal?.addEventListener('abort', onSignal, { once: true });
  return { run, stop: () => { clearTimeout(timer); opts.signal?.removeEventListener('abort', onSignal); } };
}

/** Run one backup. Throws BackupError (with its exit code) when nothing usable was stored. */
export async function runBackup(opts: BackupOptions): Promise<BackupResult> {
  const log = opts.log ?? createLogger({ component: 'backup' });
  const pre = preflight(opts);
  const lock: RunLock = acquireRunLock(opts.lockFile);
  const { run, stop } = startRun(opts, pre, log);
  let snap: SourceSnapshot | undefined;
  let success = false;
  try {
    run.step = 'claiming the targets'; await bounded(run, claimTargets(run));
    run.step = 'opening the database snapshot';
    snap = await bounded(run, openSourceSnapshot({ databaseUrl: opts.databaseUrl, dbSchema: opts.dbSchema, lockWaitTimeoutSeconds: opts.lockWaitTimeoutSeconds, pgDumpVersion: pre.dumpVersion, log: run.log }));
    run.step = 'checking the passphrase'; const fingerprint = await bounded(run, checkPassphraseStep(run, snap));
    run.step = 'creating the set folders'; await prepareSets(run);
    await storeDatabaseDump(run, snap);
    run.step = 'counting C2 rows'; const inventory = await bounded(run, snap.inventory);
    await snap.db.query('COMMIT').catch(() => undefined);
    await storeFileObjects(run);
    const es = await snapshotElasticsearchStep(run);
    const manifest = buildManifest(run, snap, inventory, fingerprint, es);
    const stored = await writeManifest(run, manifest);
    const pruned = await pruneStoredTargets(run, stored);
    success = run.failed.length === 0;
    return { setId: run.setId, manifest, stored, failed: run.failed, pruned, removedIncomplete: run.removedIncomplete, seconds: (Date.now() - run.t0) / 1000 };
  } catch (e) {
    const be = e instanceof OpsError ? e : new BackupError('internal', (e as Error).message);
    run.log.error('backup_failed', { kind: be.kind, exitCode: be.exitCode, step: run.step, error: be.message, hint: 'objects already written stay without a manifest; the next run removes them' });
    throw be;
  } finally {
    stop();
    await snap?.close();
    for (const l of run.leases) await l.release();
    lock.release();
    await recordMetrics(run, success);
  }
}

