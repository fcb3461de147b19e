// One backup run: lock → clean interrupted sets → open a snapshot of C2's database → stream every
// object (pg_dump, configs, rendered configs, Pulumi export) through age to all targets → manifest last
// → retention → textfile metrics. Failures carry the exit code they mean (backups/exit-codes.ts).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { createLogger, redactUrl, type Logger } from '../lib/log.ts';
import { C2SchemaMissingError, detectCryptoMode, readC2Inventory, type C2Inventory } from '../lib/c2-db/inventory.ts';
import { PASSWORD_MIN_BYTES } from '../lib/e4/keystore.ts';
import { computePassphraseFingerprint, FINGERPRINT_ALGORITHM } from './passphrase-fingerprint.ts';
import { BackupError } from './exit-codes.ts';
import { storeEncryptedObject, type PipelineStage, type ProgressHook } from './encrypted-object.ts';
import { MANIFEST_FILE, serializeManifest, type BackupManifest, type ManifestObject } from './manifest.ts';
import { listBackupSets, newSetId, removeIncompleteSets } from './backup-sets.ts';
import { loadRecipients } from './recipients.ts';
import { acquireRunLock } from './run-lock.ts';
import { hasRetentionRules, pruneBackupSets, validateRetentionPolicy, type PruneResult, type RetentionPolicy } from './retention.ts';
import { openTarget, type BackupTarget } from './targets.ts';
import { writeBackupMetrics } from './backup-metrics.ts';
import type { ElasticsearchSnapshotOptions } from './elasticsearch-snapshot.ts';

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
  /** Read only to record its fingerprint; never stored. */
  passphraseFile?: string;
  elasticsearch?: Omit<ElasticsearchSnapshotOptions, 'snapshotName'>;
  /** 'zstd' (default): pg_dump -Z0 | zstd; 'pg_dump': pg_dump's own zlib. */
  compression?: DumpCompression;
  zstdLevel?: number;
  retention?: RetentionPolicy;
  lockFile?: string;
  metricsFile?: string;
  rcloneConfig?: string;
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

/** Split a database URL into a password-free URL (for argv) and libpq env (PGPASSWORD). */
export function pgDumpConnection(databaseUrl: string): { url: string; env: NodeJS.ProcessEnv; display: string; database: string; host: string } {
  let u: URL;
  try { u = new URL(databaseUrl); } catch {
    throw new BackupError('config', '--database-url is not a URL: use postgres://USER:PASSWORD@HOST:5432/DATABASE');
  }
  if (!/^postgres(ql)?:$/.test(u.protocol)) throw new BackupError('config', `--database-url must start with postgres:// (got ${u.protocol})`);
  const password = decodeURIComponent(u.password);
  u.password = '';
  const env: NodeJS.ProcessEnv = { ...process.env };
  if (password) env.PGPASSWORD = password;
  return { url: u.toString(), env, display: redactUrl(databaseUrl), database: decodeURIComponent(u.pathname.replace(/^\//, '')) || 'postgres', host: u.hostname };
}

async function readPassphraseFingerprint(file: string): Promise<BackupManifest['passphraseFingerprint']> {
  let raw: Buffer;
  try { raw = fs.readFileSync(file); } catch (e) {
    throw new BackupError('config', `--passphrase-file ${file} cannot be read: ${(e as Error).message}`);
  }
  // One trailing newline is how editors save files, not part of the passphrase.
  const text = raw.toString('utf8').replace(/\r?\n$/, '');
  if (Buffer.byteLength(text) < PASSWORD_MIN_BYTES) {
    throw new BackupError('config', `--passphrase-file ${file}: the passphrase is ${Buffer.byteLength(text)} bytes; C2 requires at least ${PASSWORD_MIN_BYTES}`);
  }
  try {
    return { algorithm: FINGERPRINT_ALGORITHM, value: await computePassphraseFingerprint(text) };
  } catch (e) {
    throw new BackupError('config', `--passphrase-file ${file}: ${(e as Error).message}`);
  }
}

function checkDir(dir: string, flag: string): void {
  let st: fs.Stats;
  try { st = fs.statSync(dir); } catch { throw new BackupError('config', `${flag} ${dir} does not exist`); }
  if (!st.isDirectory()) throw new BackupError('config', `${flag} ${dir} is not a directory`);
}

function pgDumpVersion(): string {
  const r = spawnSync('pg_dump', ['--version'], { encoding: 'utf8' });
  if (r.status !== 0) throw new BackupError('config', 'pg_dump not found: apt-get install postgresql-client (same major version as the server or newer)');
  return r.stdout.trim();
}

/** Run one backup. Throws BackupError (with its exit code) when nothing usable was stored. */
export async function runBackup(opts: BackupOptions): Promise<BackupResult> {
  const t0 = Date.now();
  const log = opts.log ?? createLogger({ component: 'backup' });
  // Everything an operator can get wrong is checked before the lock, the database or the targets.
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
  const compression = opts.compression ?? 'zstd';
  const zstdLevel = opts.zstdLevel ?? 1;
  if (!Number.isInteger(zstdLevel) || zstdLevel < 1 || zstdLevel > 19) throw new BackupError('config', `--zstd-level must be 1..19 (got ${zstdLevel})`);
  const dumpVersion = pgDumpVersion();
  const targets: BackupTarget[] = opts.targets.map((t) => openTarget(t, { rcloneConfig: opts.rcloneConfig }));
  const fingerprint = opts.passphraseFile ? await readPassphraseFingerprint(opts.passphraseFile) : null;
  if (!fingerprint) log.warn('no_passphrase_fingerprint', { hint: 'give --passphrase-file so drills can confirm they hold the right DB passphrase' });

  const lock = acquireRunLock(opts.lockFile);
  const startedAt = new Date();
  const setId = newSetId(startedAt);
  const slog = log.child({ setId });
  let success = false;
  let bytes = 0;
  const setsPerTarget: Record<string, number> = {};
  const failed: BackupResult['failed'] = [];
  const removedIncomplete: Record<string, string[]> = {};
  const db = new pg.Client({ connectionString: opts.databaseUrl, connectionTimeoutMillis: 15_000, application_name: 'e4ops-backup' });
  db.on('error', (e) => slog.warn('database_connection_error', { error: e.message }));
  try {
    for (const t of targets) {
      try {
        removedIncomplete[t.spec] = await removeIncompleteSets(t);
        for (const id of removedIncomplete[t.spec]) slog.info('incomplete_set_removed', { target: t.spec, removedSetId: id });
      } catch (e) {
        slog.warn('incomplete_set_cleanup_failed', { target: t.spec, error: (e as Error).message });
      }
    }

    try { await db.connect(); } catch (e) {
      throw new BackupError('sourceUnreachable', `cannot connect to the database ${conn.display}: ${(e as Error).message}; check --database-url and that PostgreSQL is up`);
    }
    // One exported snapshot for pg_dump and the inventory counts: the manifest describes exactly the dump.
    await db.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    if (opts.dbSchema) await db.query(`SET LOCAL search_path TO ${pg.escapeIdentifier(opts.dbSchema)}`);
    const info = (await db.query<{ snap: string; v: string; n: number }>(
      `SELECT pg_export_snapshot() AS snap, current_setting('server_version') AS v, current_setting('server_version_num')::int AS n`)).rows[0];
    const dumpMajor = Number(/(\d+)(\.\d+)?/.exec(dumpVersion.replace(/^\D+/, ''))?.[1] ?? 0);
    if (dumpMajor && Math.floor(info.n / 10000) > dumpMajor) {
      throw new BackupError('config', `pg_dump ${dumpMajor} cannot dump PostgreSQL ${info.v}: install postgresql-client-${Math.floor(info.n / 10000)} (pg_dump must be the server's major version or newer)`);
    }
    const inventoryP: Promise<C2Inventory> = readC2Inventory(db).catch((e) => {
      if (e instanceof C2SchemaMissingError) throw new BackupError('config', `database ${conn.display}: ${e.message}`);
      throw new BackupError('sourceUnreachable', `database ${conn.display}: counting C2 rows failed: ${(e as Error).message}`);
    });
    inventoryP.catch(() => undefined);

    let live = [...targets];
    for (const t of live) {
      try { await t.prepareSet(setId); } catch (e) {
        failed.push({ target: t.spec, error: e as BackupError });
        slog.error('target_failed', { target: t.spec, error: (e as Error).message });
      }
    }
    live = live.filter((t) => !failed.some((f) => f.target === t.spec));
    if (!live.length) throw failed[0].error;

    const objects: ManifestObject[] = [];
    const store = async (name: string, kind: ManifestObject['kind'], format: ManifestObject['format'], comp: ManifestObject['compression'], stages: PipelineStage[]) => {
      const ot0 = Date.now();
      const r = await storeEncryptedObject({ setId, name, stages, recipientArgs: recipients.ageArgs, targets: live, onProgress: opts.onProgress });
      for (const f of r.failures) {
        failed.push({ target: f.target.spec, error: f.error });
        slog.error('target_failed', { target: f.target.spec, object: name, error: f.error.message });
      }
      if (!r.okTargets.length) throw r.failures[0]?.error ?? new BackupError('target', `no target accepted ${name}`);
      live = r.okTargets;
      objects.push({ name, kind, format, compression: comp, encryption: 'age', size: r.size, sha256: r.sha256 });
      slog.info('object_stored', { object: name, bytes: r.size, seconds: (Date.now() - ot0) / 1000, targets: live.map((t) => t.spec) });
    };

    const dumpArgs = ['--format=custom', `--snapshot=${info.snap}`, '--no-password', `--dbname=${conn.url}`, ...(compression === 'zstd' ? ['--compress=0'] : [])];
    const dump: PipelineStage = { cmd: 'pg_dump', args: dumpArgs, env: conn.env, errorKind: 'sourceUnreachable', what: `pg_dump of ${conn.display}` };
    const zstd = (what: string): PipelineStage => ({ cmd: 'zstd', args: ['-q', '-c', `-${zstdLevel}`], errorKind: 'internal', what });
    await store(compression === 'zstd' ? 'postgres.pgdump.zst.age' : 'postgres.pgdump.age', 'postgres-dump', 'pg_dump-custom',
      compression === 'zstd' ? 'zstd' : 'pg_dump-zlib', compression === 'zstd' ? [dump, zstd('zstd of the dump')] : [dump]);
    const inventory = await inventoryP;
    await db.query('COMMIT').catch(() => undefined);

    const tarOf = (dir: string, flag: string): PipelineStage[] => [
      { cmd: 'tar', args: ['-C', dir, '--numeric-owner', '-cf', '-', '.'], errorKind: 'sourceUnreachable', what: `tar of ${flag} ${dir}` },
      zstd(`zstd of ${dir}`),
    ];
    if (opts.configsDir) await store('c2-configs.tar.zst.age', 'c2-configs', 'tar', 'zstd', tarOf(opts.configsDir, '--configs-dir'));
    if (opts.renderedConfigsDir) await store('rendered-configs.tar.zst.age', 'rendered-configs', 'tar', 'zstd', tarOf(opts.renderedConfigsDir, '--rendered-configs-dir'));
    if (opts.extraFiles?.length) {
      // Stored with their absolute paths (minus the leading /): `tar -x -C /` puts them back.
      await store('extra-files.tar.zst.age', 'extra-files', 'tar', 'zstd', [
        { cmd: 'tar', args: ['-C', '/', '--numeric-owner', '-cf', '-', '--', ...opts.extraFiles.map((f) => path.relative('/', f))], errorKind: 'sourceUnreachable', what: 'tar of the extra files' },
        zstd('zstd of the extra files'),
      ]);
    }
    if (opts.pulumiStackExport) {
      await store('pulumi-stack.json.zst.age', 'pulumi-stack', 'json', 'zstd',
        [{ cmd: 'zstd', args: ['-q', '-c', `-${zstdLevel}`, opts.pulumiStackExport], errorKind: 'sourceUnreachable', what: `zstd of ${opts.pulumiStackExport}` }]);
    }
    // The Elasticsearch client is loaded only when asked for (it costs memory every run otherwise).
    const es = opts.elasticsearch
      ? await (await import('./elasticsearch-snapshot.ts')).snapshotElasticsearch({ ...opts.elasticsearch, snapshotName: `e4ops-${setId.toLowerCase()}` })
      : undefined;
    if (es) slog.info('elasticsearch_snapshot', { repository: es.repository, snapshot: es.snapshot, indices: es.indices.length });

    const crypto = detectCryptoMode(inventory, opts.configsDir, opts.c2Env ?? {});
    const manifest: BackupManifest = {
      kind: 'e4ops-backup-set', schemaVersion: 1, setId,
      startedAt: startedAt.toISOString(), finishedAt: new Date().toISOString(),
      toolkitVersion: toolkitVersion(), host: os.hostname(),
      postgres: { serverVersion: info.v, serverVersionNum: info.n, database: conn.database, host: conn.host, pgDumpVersion: dumpVersion, snapshot: info.snap },
      c2: { cryptoMode: crypto.mode, cryptoModeSource: crypto.source, inventory },
      objects, recipients: recipients.keys, passphraseFingerprint: fingerprint,
      ...(es ? { elasticsearch: es } : {}),
    };
    const text = serializeManifest(manifest);
    const stored: string[] = [];
    for (const t of live) {
      try { await t.writeText(setId, MANIFEST_FILE, text); stored.push(t.spec); } catch (e) {
        failed.push({ target: t.spec, error: e as BackupError });
        slog.error('target_failed', { target: t.spec, object: MANIFEST_FILE, error: (e as Error).message });
      }
    }
    if (!stored.length) throw failed[failed.length - 1].error;
    bytes = objects.reduce((a, o) => a + o.size, 0);
    slog.info('backup_set_stored', { targets: stored, bytes, objects: objects.length, inventory, cryptoMode: crypto.mode });

    const pruned: PruneResult[] = [];
    for (const spec of stored) {
      const t = targets.find((x) => x.spec === spec)!;
      if (opts.retention && hasRetentionRules(opts.retention)) {
        const p = await pruneBackupSets(t, opts.retention);
        pruned.push(p);
        for (const id of p.removed) slog.info('set_pruned', { target: spec, prunedSetId: id });
      }
      setsPerTarget[spec] = (await listBackupSets(t)).filter((s) => s.status === 'complete').length;
    }
    success = failed.length === 0;
    return { setId, manifest, stored, failed, pruned, removedIncomplete, seconds: (Date.now() - t0) / 1000 };
  } catch (e) {
    const be = e instanceof BackupError ? e : new BackupError('internal', (e as Error).message);
    if (opts.metricsFile) {
      // Set counts still go out on failure, so "sets on the target" alerts keep working.
      for (const t of targets) {
        try { setsPerTarget[t.spec] = (await listBackupSets(t)).filter((s) => s.status === 'complete').length; } catch { /* unreachable target */ }
      }
    }
    slog.error('backup_failed', { kind: be.kind, exitCode: be.exitCode, error: be.message, hint: 'objects already written stay without a manifest; the next run removes them' });
    throw be;
  } finally {
    await db.end().catch(() => undefined);
    lock.release();
    if (opts.metricsFile) {
      try {
        writeBackupMetrics(opts.metricsFile, { success, finishedAt: new Date(), durationSeconds: (Date.now() - t0) / 1000, bytes: success ? bytes : 0, setsPerTarget });
      } catch (e) {
        slog.warn('metrics_write_failed', { file: opts.metricsFile, error: (e as Error).message });
      }
    }
  }
}
