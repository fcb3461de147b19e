// The restore drill: take a backup set from a target, re-verify every object's checksum while
// decrypting it, restore the database into a scratch PostgreSQL (started here, or a given scratch
// URL that is provably not production), check what an operator needs to trust the restore, and
// optionally start a scratch C2 on it (with its own broker) and rehearse the topic-key resync.
// Every scratch server is torn down on every path. The report carries RTO, RPO, counts and checks.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import pg from 'pg';
import { createLogger, redactUrl, type Logger } from '../../lib/log.ts';
import { startScratchPostgres } from './scratch-postgres.ts';
import { pickLoopbackHostFor5432 } from '../../lib/servers/c2.ts';
import { deriveDbKey, dbKeyFingerprint, openDbValue, openDbValuesBatch } from '../../lib/e4/keystore.ts';
import { openTarget } from '../targets.ts';
import { openBackupSet, openDecryptedObject, resolveSetId, markSetVerifiedByDrill } from '../backup-sets.ts';
import { BackupError } from '../exit-codes.ts';
import type { BackupManifest } from '../manifest.ts';
import { assertScratchIsNotProduction, pgTargetOf, ScratchIsProductionError } from './scratch-database-guard.ts';
import { checkInventoryCounts, checkOrphanLinks, countLinksMissingTopic, checkRestoredSchema, sealedKeyChecks, type DrillCheck } from './restored-database-checks.ts';
import { verifyKeyStore, type KeyStoreReport } from '../../lib/c2-db/key-store.ts';
import { checkRestoredConfigs } from './restored-config-checks.ts';
import { ScratchResources, removeDirSync } from './scratch-resources.ts';
import { killTreeSync } from '../../lib/process-tree.ts';
import { runDocker } from '../../lib/servers/docker-engine.ts';
import { writeDrillReport, type DrillReport } from './drill-report.ts';
import type { FleetInventory } from '../resync/fleet-inventory.ts';
import type { FleetSnapshot } from '../../lib/fleet/fleet.ts';

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

/**
 * Settings of the scratch PostgreSQL the drill starts: throwaway data (no fsync, minimal WAL, no
 * autovacuum during the load) and room for the index builds.
 */
export const SCRATCH_POSTGRES_SETTINGS: Record<string, string | number | boolean> = {
  wal_level: 'minimal', max_wal_senders: 0, max_wal_size: '8GB', checkpoint_timeout: '30min',
  maintenance_work_mem: '512MB', shared_buffers: '256MB', autovacuum: false,
};

/**
 * pg_restore builds post-data in this order: primary keys and unique constraints (ALTER TABLE, ACCESS
 * EXCLUSIVE locks), then indexes (SHARE locks), then foreign keys (SHARE ROW EXCLUSIVE). From the first
 * index on, readers neither wait for the restore nor hold it up, so the read-only checks (keys opened
 * in this process, counts in PostgreSQL) use the second core while PostgreSQL builds indexes and
 * validates foreign keys. Started earlier, a reader would hold up an ADD PRIMARY KEY and stall the
 * restore, and the key opening would starve the dump stream this process relays to pg_restore.
 */
export const READ_ONLY_CHECKS_MAY_START = /creating (?:INDEX|FK CONSTRAINT) /;

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
  let text: string;
  try { text = fs.readFileSync(file, 'utf8'); } catch (e) {
    throw new BackupError('config', `--passphrase-file ${file} cannot be read: ${(e as Error).message}`);
  }
  return text.replace(/\r?\n$/, '');
}

/** Stream a decrypted object into a program's stdin; the object's own error (checksum, identity) wins over the program's. */
function pipeInto(src: Readable, cmd: string, args: string[], what: string, onStderrLine?: (line: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    let partial = '';
    let srcErr: Error | undefined;
    child.stderr.on('data', (d) => {
      const text = partial + d;
      const lines = text.split('\n');
      partial = lines.pop() ?? '';
      for (const l of lines) {
        onStderrLine?.(l);
        if (!onStderrLine || /error|fatal|warning/i.test(l)) stderr = (stderr + l + '\n').slice(-4000);
      }
    });
    child.stdin.on('error', () => undefined); // the child died; its exit code tells
    src.on('error', (e) => { srcErr = e; child.stdin.destroy(); child.kill('SIGTERM'); });
    src.pipe(child.stdin);
    child.on('error', (e) => reject(new BackupError('config', `${cmd} cannot run (${e.message}): apt-get install postgresql-client tar`)));
    child.on('close', (code) => {
      if (srcErr) return reject(srcErr);
      if (code !== 0) return reject(new Error(`${what} failed (exit ${code}): ${stderr.trim().split('\n').slice(-3).join(' | ')}`));
      resolve();
    });
  });
}

function c2FailedCheck(name: string, e: unknown): DrillCheck {
  return { name, ok: false, detail: (e as Error)?.message ?? String(e) };
}

/** Run a restore drill. Resolves with the report (ok or not); throws only for misuse (bad flags). */
export async function runRestoreDrill(opts: RestoreDrillOptions): Promise<DrillReport> {
  const log = opts.logger ?? createLogger({ component: 'restore-drill' });
  const now = opts.now ?? (() => new Date());
  const started = now();
  const t0 = Date.now();
  const checks: DrillCheck[] = [];
  const timings: Record<string, number> = {};
  const lap = (name: string, since: number) => { timings[name] = (Date.now() - since) / 1000; };
  const scratch = new ScratchResources();
  scratch.installSignalHandlers();
  let manifest: BackupManifest | undefined;
  let setId: string | null = null;
  let counts = { clients: 0, topics: 0, links: 0 };
  let rtoSeconds = 0;
  const extra: Partial<DrillReport> = {};

  const fail = (name: string, e: unknown) => {
    checks.push({ name, ok: false, detail: (e as Error)?.message ?? String(e) });
    log.error('drill.check.failed', { check: name, error: (e as Error)?.message });
  };

  try {
    if (opts.c2Binary && !opts.withC2) throw new BackupError('config', '--c2-binary needs --with-c2');
    if (opts.c2Image && !opts.withC2) throw new BackupError('config', '--c2-image needs --with-c2');
    if (opts.c2Image && opts.c2Binary) throw new BackupError('config', '--c2-binary and --c2-image exclude each other: give one');
    if (opts.c2Image) assertC2ImagePresent(opts.c2Image, opts.dockerHost);
    if (opts.resync && !opts.withC2) throw new BackupError('config', '--resync rehearses against a scratch C2: add --with-c2');
    if (!fs.existsSync(opts.identityFile)) throw new BackupError('config', `--identity ${opts.identityFile} does not exist: give the age identity file whose public key the backups encrypt to`);
    const passphrase = readPassphraseFile(opts.passphraseFile);

    // 1. The set and its manifest.
    const target = openTarget(opts.target, { rcloneConfig: opts.rcloneConfig });
    try {
      setId = await resolveSetId(target, opts.backup);
      manifest = await openBackupSet(target, setId);
      checks.push({ name: 'backup-set', ok: true, detail: `set ${setId} on ${target.spec}: manifest valid, ${manifest.objects.length} objects, taken ${manifest.startedAt}` });
    } catch (e) {
      fail('backup-set', e);
      return finish();
    }
    const m = manifest;
    extra.backupTakenAt = m.startedAt;

    // 2. Passphrase: derive the DB key once (Argon2i) and compare its fingerprint with the manifest.
    const tKey = Date.now();
    let dbKey: Buffer;
    try { dbKey = deriveDbKey(passphrase); } catch (e) { fail('passphrase-fingerprint', new Error(`--passphrase-file ${opts.passphraseFile}: ${(e as Error).message}`)); return finish(); }
    const fingerprint = dbKeyFingerprint(dbKey);
    lap('deriveKey', tKey);

    // 3. Scratch database.
    const tDb = Date.now();
    let dbUrl: string;
    let dbHost: string;
    if (opts.scratchDatabaseUrl) {
      const production = opts.productionDatabaseUrl ?? process.env.E4OPS_DATABASE_URL;
      await assertScratchIsNotProduction(opts.scratchDatabaseUrl, production);
      // The manifest says where the backup was taken from: that database is production too.
      if (m.postgres.host) await assertScratchIsNotProduction(opts.scratchDatabaseUrl, `postgres://x@${m.postgres.host.includes(':') && !m.postgres.host.startsWith('[') ? m.postgres.host : `${m.postgres.host}:5432`}/${m.postgres.database}`);
      const t = pgTargetOf(opts.scratchDatabaseUrl, '--scratch-database-url');
      if (opts.withC2 && t.port !== 5432) throw new BackupError('config', `--with-c2 needs the scratch database on port 5432 (C2 has no port setting); --scratch-database-url uses port ${t.port}`);
      dbUrl = opts.scratchDatabaseUrl;
      dbHost = t.host;
      const c = new pg.Client({ connectionString: dbUrl });
      await c.connect();
      try {
        const r = await c.query(`SELECT count(*)::int AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')`);
        if (r.rows[0].n > 0) throw new BackupError('config', `--scratch-database-url ${redactUrl(dbUrl)} is not empty (${r.rows[0].n} tables): a drill restores into an empty scratch database only`);
      } finally { await c.end(); }
    } else {
      let host = '127.0.0.1';
      // C2 always dials port 5432, and 127.0.0.1:5432 may be the machine's own PostgreSQL: use a free 127.0.0.N.
      if (opts.withC2) host = await pickLoopbackHostFor5432();
      const { server: pgs } = await startScratchPostgres({ host, ...(opts.withC2 ? { port: 5432 } : {}), settings: SCRATCH_POSTGRES_SETTINGS }, (dir) => scratch.addDir(dir));
      // The launcher's own folder (socket, log; the data too when it ran initdb itself) is the socket folder's parent.
      scratch.add(`scratch PostgreSQL ${pgs.host}:${pgs.port}`, () => pgs.stop(), () => { killTreeSync(pgs.daemon.child.pid); removeDirSync(path.dirname(pgs.socketDir)); });
      // The scratch server is the drill's alone: restore into its default database (no CREATE DATABASE on the RTO path).
      dbUrl = pgs.url('postgres');
      dbHost = pgs.host;
    }
    lap('scratchDatabase', tDb);
    log.info('drill.scratch', { database: redactUrl(dbUrl), setId });

    const withClient = async <T>(fn: (c: pg.Client) => Promise<T>): Promise<T> => {
      const c = new pg.Client({ connectionString: dbUrl });
      await c.connect();
      try { return await fn(c); } finally { await c.end(); }
    };
    // Batch opening (lib/e4 openDbValuesBatch: three AES passes per batch); keys read with COPY (FORMAT binary).
    const openBatch = (sealed: Uint8Array[]) => openDbValuesBatch(dbKey, sealed);
    const exp = m.c2.inventory;
    // The read-only checks (every key opened, inventory counts, links to missing topics) start as soon as they can
    // no longer slow the restore down: see READ_ONLY_CHECKS_MAY_START. Started at most once.
    let readOnlyChecks: Promise<[KeyStoreReport, Awaited<ReturnType<typeof checkInventoryCounts>>, number]> | undefined;
    const startReadOnlyChecks = () => {
      if (readOnlyChecks) return readOnlyChecks;
      timings.readOnlyChecksStartedAt = (Date.now() - t0) / 1000;
      readOnlyChecks = Promise.all([
        withClient((c) => verifyKeyStore(c, (s) => openDbValue(dbKey, s), { openBatch })),
        withClient((c) => checkInventoryCounts(c, { clients: exp.clients, topics: exp.topics, links: exp.topicLinks })),
        withClient((c) => countLinksMissingTopic(c)),
      ]);
      readOnlyChecks.catch(() => undefined); // awaited (and reported) after the restore
      return readOnlyChecks;
    };

    // 4. Every object: checksum-verified and decrypted in one pass; the dump goes straight into pg_restore.
    const work = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-drill-'));
    scratch.addDir(work);
    const tRestore = Date.now();
    let restored = false;
    const objectErrors: string[] = [];
    let wrongIdentity = false;
    for (const o of [...m.objects].sort((a, b) => (a.kind === 'postgres-dump' ? -1 : b.kind === 'postgres-dump' ? 1 : 0))) {
      const src = openDecryptedObject(target, m, o.name, opts.identityFile);
      try {
        if (o.kind === 'postgres-dump') {
          // pg_restore --verbose names each step: the read-only checks start when it reaches the first index.
          await pipeInto(src, 'pg_restore', ['--no-owner', '--no-privileges', '--exit-on-error', '--verbose', '--dbname', dbUrl], `pg_restore of ${o.name}`, (line) => {
            if (READ_ONLY_CHECKS_MAY_START.test(line)) startReadOnlyChecks();
          });
          restored = true;
          lap('restore', tRestore);
        } else if (o.format === 'tar') {
          const dir = path.join(work, o.kind);
          fs.mkdirSync(dir, { recursive: true });
          await pipeInto(src, 'tar', ['-x', '--no-same-owner', '-C', dir, '-f', '-'], `tar -x of ${o.name}`);
        } else {
          for await (const _ of src) { /* read to the end: the checksum gate and age verify it */ }
        }
      } catch (e) {
        const be = e as BackupError;
        if (be?.kind === 'wrongIdentity') wrongIdentity = true;
        objectErrors.push(be?.message ?? String(e));
        src.destroy();
      }
    }
    // A restore that failed after the read-only checks started: they read the scratch database, let them end before teardown.
    if (!restored) await readOnlyChecks?.catch(() => undefined);
    if (objectErrors.length) {
      fail(wrongIdentity ? 'decrypt' : 'checksums', new Error(objectErrors.join('; ')));
      if (!restored) return finish();
    } else {
      checks.push({ name: 'checksums', ok: true, detail: `all ${m.objects.length} objects match their manifest size and SHA-256` });
      checks.push({ name: 'decrypt', ok: true, detail: `every object decrypts with ${opts.identityFile}` });
    }
    if (!restored) { fail('restore', new Error(`set ${m.setId} has no postgres-dump object`)); return finish(); }
    checks.push({ name: 'restore', ok: true, detail: `pg_restore into ${redactUrl(dbUrl)} in ${timings.restore?.toFixed(1)} s` });

    // 5. Database checks.
    const tChecks = Date.now();
    // The schema check beside the read-only checks (started during the restore, or now if pg_restore never
    // printed an index line), each on its own connection.
    const [schema, [keyReport, inv, missingTopic]] = await Promise.all([withClient((c) => checkRestoredSchema(c, dbUrl)), startReadOnlyChecks()]);
    // The client side of the orphan links after the restore: by then C2's foreign key on client_id is
    // validated and nothing is left to count (before, it would repeat the validation PostgreSQL was doing).
    const orphans = await withClient((c) => checkOrphanLinks(c, { missingTopic }));
    const keys = { report: keyReport, checks: [] as DrillCheck[] };
    keys.checks = sealedKeyChecks(keys.report, { ours: fingerprint, manifest: m.passphraseFingerprint?.value });
    checks.push(schema, inv.check, ...keys.checks, orphans.check);
    counts = { clients: inv.inventory.clients, topics: inv.inventory.topics, links: inv.inventory.topicLinks };
    const total = keys.report.clients.total + keys.report.topics.total;
    extra.keysPerSecond = keys.report.seconds > 0 ? total / keys.report.seconds : 0;
    timings.verifyKeys = keys.report.seconds;
    extra.orphanLinks = { missingTopic: orphans.orphans.missingTopic, missingClient: orphans.orphans.missingClient };
    const cfgDir = path.join(work, 'c2-configs');
    if (fs.existsSync(cfgDir)) {
      const cfg = checkRestoredConfigs(cfgDir, { now: now() });
      checks.push(...cfg.checks);
      extra.certificates = cfg.certificates;
    } else {
      checks.push({ name: 'configs-parse', ok: true, detail: 'the set holds no C2 configs object (backup ran without --configs-dir)' });
    }
    lap('checks', tChecks);

    // 6. A scratch C2 on the restored database, with its own broker.
    if (opts.withC2) {
      const tC2 = Date.now();
      const { startScratchC2, checkC2ServesRestoredData } = await import('./scratch-c2.ts');
      let c2: Awaited<ReturnType<typeof startScratchC2>> | undefined;
      try {
        c2 = await startScratchC2({ dbUrl, dbHost, passphrase, binary: opts.c2Binary, image: opts.c2Image, dockerHost: opts.dockerHost, scratch, workDir: work });
        checks.push(await checkC2ServesRestoredData(c2, dbUrl));
      } catch (e) {
        checks.push(c2FailedCheck('c2-serves-restored-data', e));
      }
      lap('c2', tC2);
      rtoSeconds = (Date.now() - t0) / 1000;
      if (opts.resync && c2 && checks.every((c) => c.ok)) {
        const tR = Date.now();
        const { rehearseResync } = await import('./resync-rehearsal.ts');
        try {
          const r = await rehearseResync({
            c2, dbUrl, dbKey, snapshot: opts.fleetSnapshot, devices: opts.rehearsalDevices ?? 20, inventory: opts.inventory,
            backupTakenAt: new Date(m.startedAt), counts, workDir: work, logger: log,
          });
          extra.resync = { ...r.summary, seconds: (Date.now() - tR) / 1000 };
          checks.push(...r.checks);
        } catch (e) {
          checks.push(c2FailedCheck('resync-rehearsal', e));
        }
        lap('resync', tR);
      }
    } else {
      rtoSeconds = (Date.now() - t0) / 1000;
    }
    return finish();
  } catch (e) {
    if (e instanceof ScratchIsProductionError) fail('scratch-is-not-production', e);
    else if (e instanceof BackupError && e.kind === 'usage') throw e;
    else fail('drill', e);
    return finish();
  } finally {
    const errors = await scratch.stopAll();
    if (errors.length) log.warn('drill.teardown', { errors });
  }

  function finish(): DrillReport {
    const finished = now();
    const ok = checks.length > 0 && checks.every((c) => c.ok);
    if (!rtoSeconds) rtoSeconds = (Date.now() - t0) / 1000;
    const report: DrillReport = {
      kind: 'restore-drill',
      ok,
      backupId: setId,
      target: opts.target,
      startedAt: started.toISOString(),
      finishedAt: finished.toISOString(),
      rtoSeconds,
      rpoSeconds: manifest ? Math.max(0, (started.getTime() - Date.parse(manifest.finishedAt ?? manifest.startedAt)) / 1000) : null,
      counts,
      timings,
      ...extra,
      ...(ok ? {} : { failedChecks: checks.filter((c) => !c.ok).map((c) => c.name) }),
      checks,
    };
    return report;
  }
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
