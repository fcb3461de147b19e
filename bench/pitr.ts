// bench:pitr — point-in-time recovery with pgBackRest on the drill benchmark's database (1,000,000 clients,
// 100,000 topics, 5,000,000 links, keys sealed as C2 seals them, seeded by lib/c2-db/seed-database.ts):
// (1) full backup, then an incremental one after 1,000 changed rows (time, bytes stored);
// (2) drill RTO on PITR (restore latest + start + every key checked) next to bare `pgbackrest restore` +
//     start on the same repository (ratio);
// (3) RPO after a hard kill: a write load of acknowledged commits, kill -9 of the primary mid-load, restore
//     latest from the repository, and count the acknowledged commits (and seconds) that are gone.
// Last stdout line: one JSON object {"bench":"pitr",...}.
// Sizes: BENCH_CLIENTS / BENCH_TOPICS / BENCH_LINKS; BENCH_ARCHIVE_TIMEOUT (s, default 5); BENCH_LOAD_SECONDS (default 20);
// BENCH_ROUNDS (default 2). E4OPS_KEY_CHECK_WORKERS sets the drill's key-check threads (default one per core).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { startThrowawayPostgres, type ThrowawayPostgres } from '../lib/servers/postgres.ts';
import { createThrowawayPgBackRestRepo, type ThrowawayPgBackRestRepo } from '../lib/servers/pgbackrest-repo.ts';
import { seedC2Database, type SealDbValuesBatch } from '../lib/c2-db/seed-database.ts';
import * as keystore from '../lib/e4/keystore.ts';
import { createMemoryLogger } from '../lib/log.ts';
import { takePitrBackup } from '../backups/pitr/pitr-operations.ts';
import { runPitrDrill } from '../backups/pitr/pitr-drill.ts';
import { defaultKeyCheckWorkers } from '../lib/c2-db/key-store-parallel.ts';
import { createScratchDataDir, restoreClusterFromRepository, neutralizeRestoredConfig, startRestoredServer, waitForPromotion, PITR_SCRATCH_SETTINGS } from '../backups/pitr/pitr-restore.ts';
import { createPgClient } from '../lib/pg/pg-client.ts';

const N = { clients: Number(process.env.BENCH_CLIENTS ?? 1_000_000), topics: Number(process.env.BENCH_TOPICS ?? 100_000), links: Number(process.env.BENCH_LINKS ?? 5_000_000) };
const ARCHIVE_TIMEOUT = Number(process.env.BENCH_ARCHIVE_TIMEOUT ?? 5);
const LOAD_SECONDS = Number(process.env.BENCH_LOAD_SECONDS ?? 20);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const PASSPHRASE = 'bench passphrase for the c2 database';
const CIPHER = 'bench repository cipher passphrase';
const say = (s: string) => process.stderr.write(s + '\n');
const secs = (t0: number) => (Date.now() - t0) / 1000;

async function seed(source: ThrowawayPostgres): Promise<string> {
  const url = await source.createDatabase('e4');
  const dbKey = keystore.deriveDbKey(PASSPHRASE);
  const sealBatch: SealDbValuesBatch = (plains) => keystore.sealDbValuesBatch(dbKey, plains);
  say(`seeding ${N.clients} clients, ${N.topics} topics, ${N.links} links ...`);
  const r = await seedC2Database(url, { ...N, sealBatch });
  say(`  seeded in ${r.seconds.toFixed(1)} s`);
  // A database in steady state, not fresh from a bulk load: frozen and analysed (otherwise the first vacuum
  // rewrites every page and the "incremental" holds the whole table), and the load's WAL archived.
  say('  vacuum freeze, checkpoint, archive the load\'s WAL (untimed) ...');
  source.psql('VACUUM (FREEZE, ANALYZE)', 'e4');
  source.psql('CHECKPOINT');
  await waitArchived(source);
  return url;
}

/** Switch to a new WAL segment and wait until the archiver has pushed it (and so everything before it). */
async function waitArchived(source: ThrowawayPostgres): Promise<void> {
  const seg = source.psql('SELECT pg_walfile_name(pg_switch_wal())').trim();
  for (let i = 0; i < 36_000; i++) {
    if (source.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver").trim() >= seg) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`WAL segment ${seg} was not archived within an hour`);
}

/** (1) full, then incr after 1,000 changed rows. */
async function backups(repo: ThrowawayPgBackRestRepo, source: ThrowawayPostgres) {
  say('full backup ...');
  const full = await takePitrBackup(repo.target, 'full');
  const dbKey = keystore.deriveDbKey(PASSPHRASE);
  const rows = Array.from({ length: 1000 }, (_, i) => `(${i + 1}, '\\x${keystore.sealDbValue(dbKey, crypto.randomBytes(32)).toString('hex')}'::bytea)`);
  source.psql(`UPDATE clients c SET key = v.k FROM (VALUES ${rows.join(',')}) AS v(id, k) WHERE c.id = v.id`, 'e4');
  say('incremental backup after 1,000 changed rows ...');
  const incr = await takePitrBackup(repo.target, 'incr');
  return { full, incr };
}

/** Bare pgBackRest: restore latest into a fresh data directory, start, wait for promotion. */
async function bareRestoreAndStart(repo: ThrowawayPgBackRestRepo, work: string): Promise<{ seconds: number; url: string; log: () => string; stop: () => Promise<void> }> {
  const t0 = Date.now();
  const dataDir = createScratchDataDir([], work);
  await restoreClusterFromRepository(repo.target, { dataDir });
  neutralizeRestoredConfig(dataDir);
  const server = await startRestoredServer(dataDir, { settings: PITR_SCRATCH_SETTINGS });
  await waitForPromotion(server, 'latest');
  const seconds = secs(t0);
  return { seconds, url: server.url('e4'), log: () => fs.readFileSync(server.logFile, 'utf8'), stop: async () => { await server.stop(); fs.rmSync(dataDir, { recursive: true, force: true }); } };
}

/** (3) Acknowledged commits until the primary is killed with SIGKILL; returns each commit's id and ack time. */
let archiverAtKill = '';
async function writeLoadThenKill(source: ThrowawayPostgres): Promise<{ acked: Map<number, number>; killedAt: number; tableSegment: string }> {
  source.psql('CREATE TABLE bench_writes (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())', 'e4');
  const tableSegment = source.psql('SELECT pg_walfile_name(pg_current_wal_lsn())').trim();
  say(`  bench_writes created in WAL segment ${tableSegment}; archiver: ${source.psql("SELECT last_archived_wal || ' at ' || last_archived_time || ', failed ' || failed_count FROM pg_stat_archiver").trim()}`);
  const c = createPgClient(source.url('e4'));
  await c.connect();
  const acked = new Map<number, number>();
  const until = Date.now() + LOAD_SECONDS * 1000;
  let id = 0;
  let killedAt = 0;
  const killer = new Promise<void>((resolve) => setTimeout(async () => {
    killedAt = Date.now();
    archiverAtKill = source.psql("SELECT last_archived_wal || ' at ' || last_archived_time || ', failed ' || failed_count || coalesce(' (last failed ' || last_failed_wal || ')', '') FROM pg_stat_archiver").trim();
    await source.kill();
    resolve();
  }, LOAD_SECONDS * 1000));
  try {
    while (Date.now() < until + 5000 && !killedAt) {
      id += 1;
      await c.query('INSERT INTO bench_writes (id) VALUES ($1)', [id]);
      acked.set(id, Date.now());
      await new Promise((r) => setTimeout(r, 5));
    }
  } catch { /* the primary is gone */ }
  await killer;
  await c.end().catch(() => undefined);
  return { acked, killedAt, tableSegment };
}

async function main() {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-bench-pitr-'));
  fs.chmodSync(work, 0o755);
  const repo = createThrowawayPgBackRestRepo({ cipherPassphrase: CIPHER, processMax: 2 });
  // Durable like production (fsync, synchronous commits): the RPO counts acknowledged commits.
  const source = await startThrowawayPostgres({ fast: false, settings: { ...repo.postgresSettings(ARCHIVE_TIMEOUT), shared_buffers: '256MB', max_wal_size: '4GB', checkpoint_timeout: '30min' } });
  try {
    repo.attach(source);
    await repo.init();
    await seed(source);
    const dbBytes = Number(source.psql("SELECT pg_database_size('e4')").trim());
    const { full, incr } = await backups(repo, source);
    say(`  full ${full.seconds.toFixed(2)} s; incr ${incr.seconds.toFixed(2)} s, ${(incr.set.repositoryBytes / 1048576).toFixed(1)} MiB stored`);
    const passFile = path.join(work, 'passphrase');
    fs.writeFileSync(passFile, PASSPHRASE + '\n');
    // Alternating runs (bare, drill, drill on one thread, then again): the page cache and the machine's load
    // favour none. The one-thread drill (E4OPS_KEY_CHECK_WORKERS=1) is the comparison the worker threads must win.
    const bareRuns: number[] = [];
    const drills: Awaited<ReturnType<typeof runPitrDrill>>[] = [];
    const oneThread: Awaited<ReturnType<typeof runPitrDrill>>[] = [];
    const drillOnce = async (workers?: number) => {
      const before = process.env.E4OPS_KEY_CHECK_WORKERS;
      if (workers) process.env.E4OPS_KEY_CHECK_WORKERS = String(workers);
      try {
        const d = await runPitrDrill({ pgbackrestConfig: repo.configFile, configIncludePath: repo.configIncludePath, stanza: repo.stanza, passphraseFile: passFile, scratchDir: work, logger: createMemoryLogger('drill') });
        if (!d.ok) throw new Error(`the drill failed: ${JSON.stringify(d.checks.filter((c) => !c.ok))}`);
        say(`  RTO ${d.rtoSeconds.toFixed(2)} s (${d.counts.clients} clients, ${d.counts.topics} topics; keys ${d.keysPerSecond?.toFixed(0)}/s); timings ${JSON.stringify(d.timings)}; load ${os.loadavg()[0].toFixed(1)}`);
        return d;
      } finally {
        if (before === undefined) delete process.env.E4OPS_KEY_CHECK_WORKERS; else process.env.E4OPS_KEY_CHECK_WORKERS = before;
      }
    };
    for (let round = 1; round <= ROUNDS; round++) {
      say(`round ${round}: bare pgbackrest restore + start (baseline) ...`);
      const bare = await bareRestoreAndStart(repo, work);
      await bare.stop();
      bareRuns.push(bare.seconds);
      say(`  ${bare.seconds.toFixed(2)} s; load ${os.loadavg()[0].toFixed(1)}`);
      say(`round ${round}: PITR drill, latest, every key checked (key-check workers: ${defaultKeyCheckWorkers()}) ...`);
      drills.push(await drillOnce());
      if (defaultKeyCheckWorkers() > 1) {
        say(`round ${round}: the same drill with the keys checked on one thread ...`);
        oneThread.push(await drillOnce(1));
      }
    }
    const drill = drills.reduce((a, b) => (b.rtoSeconds < a.rtoSeconds ? b : a));
    const bare = { seconds: Math.min(...bareRuns) };
    say(`write load for ${LOAD_SECONDS} s, then kill -9 of the primary (archive_timeout ${ARCHIVE_TIMEOUT} s) ...`);
    const { acked, killedAt, tableSegment } = await writeLoadThenKill(source);
    const after = await bareRestoreAndStart(repo, work);
    const c = createPgClient(after.url);
    await c.connect();
    const recovered = await c.query('SELECT coalesce(max(id), 0) AS m FROM bench_writes').then((r) => Number(r.rows[0].m), async (e: Error) => {
      // What recovery replayed and what the repository holds, to tell a lost segment from a stop short of it.
      const log = after.log().split('\n').filter((l) => /restored log file|redo (starts|done)|last completed|selected new timeline|archive recovery complete|invalid record|unexpected pageaddr|FATAL|ERROR|WARNING/.test(l));
      say(`  restored server log (${log.length} lines of interest):\n    ${[...log.slice(0, 5), '...', ...log.slice(-25)].join('\n    ')}`);
      const archived = await repo.run('repo-ls', ['--recurse', `archive/${repo.stanza}`]).catch((x: Error) => x.message);
      say(`  repository archive (newest 30):\n    ${archived.trim().split('\n').slice(-30).join('\n    ')}`);
      say(`  archiver just before the kill: ${archiverAtKill}`);
      for (const f of fs.readdirSync(path.join(repo.dir, 'log'))) {
        say(`  pgBackRest log ${f} (last 40 lines):\n    ${fs.readFileSync(path.join(repo.dir, 'log', f), 'utf8').trim().split('\n').slice(-40).join('\n    ')}`);
      }
      throw new Error(`reading bench_writes (created in WAL segment ${tableSegment}) from the restore after kill -9: ${e.message}`);
    });
    await c.end();
    await after.stop();
    const ackedIds = [...acked.keys()];
    const lastAck = Math.max(...acked.values());
    const lost = ackedIds.filter((i) => i > recovered).length;
    const rpoSeconds = lost ? (lastAck - (acked.get(recovered) ?? lastAck - LOAD_SECONDS * 1000)) / 1000 : 0;
    say(`  ${ackedIds.length} commits acknowledged, ${lost} lost; RPO ${rpoSeconds.toFixed(2)} s (killed ${((killedAt - lastAck) / 1000).toFixed(2)} s after the last ack)`);
    const result = {
      bench: 'pitr', clients: N.clients, topics: N.topics, links: N.links, databaseBytes: dbBytes,
      fullBackupSeconds: +full.seconds.toFixed(3),
      incremental: { changedRows: 1000, seconds: +incr.seconds.toFixed(3), repositoryBytes: incr.set.repositoryBytes },
      rto: {
        drillSeconds: +drill.rtoSeconds.toFixed(3), bareRestoreStartSeconds: +bare.seconds.toFixed(3), ratio: +(drill.rtoSeconds / bare.seconds).toFixed(3),
        runs: { drill: drills.map((d) => +d.rtoSeconds.toFixed(3)), bare: bareRuns.map((x) => +x.toFixed(3)), drillOneThread: oneThread.map((d) => +d.rtoSeconds.toFixed(3)) }, bestOf: ROUNDS,
        keyCheckWorkers: defaultKeyCheckWorkers(),
        ...(oneThread.length ? { oneThreadRatio: +(Math.min(...oneThread.map((d) => d.rtoSeconds)) / bare.seconds).toFixed(3) } : {}),
        drillTimings: drill.timings,
        keysChecked: drill.counts.clients + drill.counts.topics, target: 2.0,
      },
      loadAverage: os.loadavg().map((x) => +x.toFixed(2)),
      rpo: { archiveTimeoutSeconds: ARCHIVE_TIMEOUT, acknowledgedCommits: ackedIds.length, lostCommits: lost, lostSeconds: +rpoSeconds.toFixed(3), target: ARCHIVE_TIMEOUT },
    };
    process.stdout.write(JSON.stringify(result) + '\n');
  } finally {
    await source.stop().catch(() => undefined);
    repo.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

await main();
