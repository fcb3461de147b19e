// bench:restore — time from the start of a production restore to C2 serving the restored counts:
// `e4ops restore` (logical set; preflight with checksums, restore beside production, the drill's checks
// with every key opened, swap by rename, C2 started and waited for) next to the bare hand path
// (`age -d | zstd -d | pg_restore` into an empty database, start C2, wait for the same counts), on a
// database seeded by lib/c2-db/seed-database.ts. Both alternate twice; the best of each is compared.
// Then the pgBackRest source: `e4ops restore --pgbackrest-config ...` (old data directory moved aside, recovery to
// the end of the archive) next to bare `pgbackrest restore` into an empty data directory + start PostgreSQL +
// start C2, both until C2 serves the counts. The resync is in neither time (bench:drill measures it).
// Last stdout line: {"bench":"restore",...}. BENCH_SKIP_PGBACKREST=1 runs the logical half only.
// Sizes: BENCH_CLIENTS / BENCH_TOPICS / BENCH_LINKS (default 1,000,000 / 100,000 / 5,000,000).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawn } from 'node:child_process';
import { startThrowawayPostgres } from '../lib/servers/postgres.ts';
import { startThrowawayMosquitto } from '../lib/servers/mosquitto.ts';
import { startC2, c2BinaryAvailable, c2BinaryDir, pickLoopbackHostFor5432 } from '../lib/servers/c2.ts';
import { seedC2Database } from '../lib/c2-db/seed-database.ts';
import { deriveDbKey, sealDbValuesBatch } from '../lib/e4/keystore.ts';
import { createC2Api } from '../lib/c2/c2-api.ts';
import { createLogger, createMemoryLogger } from '../lib/log.ts';
import { runBackup } from '../backups/create-backup.ts';
import { openTarget } from '../backups/targets.ts';
import { openBackupSet } from '../backups/backup-sets.ts';
import { runRestore } from '../backups/restore/run-restore.ts';
import { waitForC2Counts } from '../backups/restore/c2-lifecycle.ts';
import { withDatabase } from '../backups/restore/production-database.ts';
import { waitForRecoveredPostgres } from '../backups/restore/pgbackrest-source.ts';
import { writeC2Service } from '../test/restore/c2-service.ts';
import { createThrowawayPgBackRestRepo } from '../lib/servers/pgbackrest-repo.ts';
import { postgresBinDir } from '../lib/servers/postgres.ts';

const N = { clients: Number(process.env.BENCH_CLIENTS ?? 1_000_000), topics: Number(process.env.BENCH_TOPICS ?? 100_000), links: Number(process.env.BENCH_LINKS ?? 5_000_000) };
const PASSPHRASE = 'bench passphrase for the c2 database';
const say = (s: string) => process.stderr.write(s + '\n');

function sh(cmd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', cmd], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => { err = (err + d).slice(-3000); });
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd.slice(0, 200)} exited ${code}: ${err}`))));
  });
}

async function main() {
  if (!c2BinaryAvailable()) throw new Error(`the C2 binary is not built (${c2BinaryDir()}): run bash scripts/build-c2.sh`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-bench-restore-'));
  fs.chmodSync(dir, 0o755);
  const withPgBackRest = !process.env.BENCH_SKIP_PGBACKREST;
  const repo = withPgBackRest ? createThrowawayPgBackRestRepo({ processMax: 2 }) : undefined;
  const pgs = await startThrowawayPostgres({ host: await pickLoopbackHostFor5432(), port: 5432, settings: { shared_buffers: '256MB', max_wal_size: '8GB', checkpoint_timeout: '30min', maintenance_work_mem: '512MB', ...(repo ? repo.postgresSettings(60) : {}) } });
  const pgService = path.join(dir, 'pg-service.sh');
  const mq = await startThrowawayMosquitto();
  const service = path.join(dir, 'c2-service.sh');
  try {
    if (repo) {
      repo.attach(pgs);
      await repo.init();
      const pgCtl = path.join(postgresBinDir(), 'pg_ctl');
      fs.writeFileSync(pgService, `#!/bin/sh
case "$1" in
start) runuser -u postgres -- '${pgCtl}' -D '${pgs.dataDir}' -l '${path.dirname(pgs.dataDir)}/pg-restored.log' -W start ;;
stop) [ -f '${pgs.dataDir}/postmaster.pid' ] || exit 0; runuser -u postgres -- '${pgCtl}' -D '${pgs.dataDir}' -m fast -w stop ;;
esac
`, { mode: 0o755 });
    }
    pgs.psql('CREATE ROLE e4c2 LOGIN');
    pgs.psql('CREATE DATABASE e4 OWNER e4c2');
    const dbKey = deriveDbKey(PASSPHRASE);
    say(`seeding ${N.clients} clients, ${N.topics} topics, ${N.links} links ...`);
    const seed = await withDatabase(pgs.url('e4'), async (c) => { await c.query('SET ROLE e4c2'); return seedC2Database(c, { ...N, sealBatch: (p) => sealDbValuesBatch(dbKey, p) }); });
    pgs.psql('CHECKPOINT');
    say(`  seeded in ${seed.seconds.toFixed(1)} s`);
    const passFile = path.join(dir, 'passphrase');
    fs.writeFileSync(passFile, PASSPHRASE + '\n');
    const c2Dir = path.join(dir, 'c2');
    const first = await startC2({ dir: c2Dir, db: { host: pgs.host, database: 'e4', username: 'e4c2' }, passphrase: PASSPHRASE, mqttBroker: mq.url, mqttClientId: 'e4c2-bench', logLevel: 'warn' });
    const caFile = path.join(dir, 'ca.pem');
    fs.writeFileSync(caFile, first.ca.certPem);
    const baseUrl = first.baseUrl;
    await first.stop();
    writeC2Service(service, c2Dir, passFile);
    const identity = path.join(dir, 'id.age');
    execFileSync('age-keygen', ['-o', identity], { stdio: 'ignore' });
    const recipient = execFileSync('age-keygen', ['-y', identity], { encoding: 'utf8' }).trim();
    const targetDir = path.join(dir, 'target');
    say('backup ...');
    const backup = await runBackup({ databaseUrl: pgs.url('e4'), configsDir: path.join(c2Dir, 'configs'), targets: [targetDir], recipients: [recipient], passphraseFile: passFile, lockFile: path.join(dir, 'lock'), log: createMemoryLogger('backup') });
    const manifest = await openBackupSet(openTarget(targetDir), backup.setId);
    const dumpFile = path.join(targetDir, backup.setId, manifest.objects.find((o) => o.kind === 'postgres-dump')!.name);
    const counts = { clients: manifest.c2.inventory.clients, topics: manifest.c2.inventory.topics };
    const api = createC2Api({ baseUrl, ca: first.ca.certPem, retries: 1 });
    const disaster = () => pgs.psql('DROP DATABASE IF EXISTS e4 WITH (FORCE)');

    const bare = async () => {
      disaster();
      // The hand path, timed from the same point as ours: stop C2, create the empty database, restore, start C2.
      const t0 = process.hrtime.bigint();
      await sh(`sh ${service} stop`);
      pgs.psql('CREATE DATABASE e4 OWNER e4c2');
      await sh(`age -d -i ${identity} ${dumpFile} | zstd -d -q | pg_restore --no-owner --no-privileges --role=e4c2 --exit-on-error --dbname=${pgs.url('e4')}`);
      const restored = Number(process.hrtime.bigint() - t0) / 1e9;
      await sh(`sh ${service} start`);
      await waitForC2Counts(api, counts, 300_000);
      return { serving: Number(process.hrtime.bigint() - t0) / 1e9, restored };
    };
    let round = 0;
    const ours = async () => {
      disaster();
      const stateDir = path.join(dir, `state-${++round}`);
      const t0 = process.hrtime.bigint();
      const report = await runRestore({
        target: targetDir, backup: backup.setId, identityFile: identity, databaseUrl: pgs.url('e4'), c2Role: 'e4c2', passphraseFile: passFile,
        configsDir: path.join(c2Dir, 'configs'), c2: { url: baseUrl, ca: Buffer.from(first.ca.certPem) },
        lifecycle: { stopCommands: [`sh ${service} stop`], startCommands: [`sh ${service} start`] }, automationEnginePaused: true, resync: false,
        stateDir, yes: true, logger: createLogger({ component: 'restore', level: 'warn' }),
      });
      const wall = Number(process.hrtime.bigint() - t0) / 1e9;
      if (!report.ok) throw new Error(`restore failed: ${report.error}`);
      return { serving: report.rto.c2ServingSeconds!, wall, steps: Object.fromEntries(report.steps.map((s) => [s.step, s.seconds ?? 0])) };
    };
    await sh(`sh ${service} start`);
    await waitForC2Counts(api, counts, 300_000);
    const bares: Awaited<ReturnType<typeof bare>>[] = [];
    const ourRuns: Awaited<ReturnType<typeof ours>>[] = [];
    for (let r = 1; r <= 2; r++) {
      say(`round ${r}: bare age | zstd | pg_restore into an empty database, start C2, wait for the counts ...`);
      bares.push(await bare());
      say(`  C2 serving after ${bares.at(-1)!.serving.toFixed(2)} s (pg_restore done after ${bares.at(-1)!.restored.toFixed(2)} s)`);
      say(`round ${r}: e4ops restore --no-resync ...`);
      ourRuns.push(await ours());
      say(`  C2 serving after ${ourRuns.at(-1)!.serving.toFixed(2)} s; steps ${JSON.stringify(ourRuns.at(-1)!.steps)}`);
    }
    const baseline = Math.min(...bares.map((b) => b.serving));
    const best = ourRuns.reduce((a, b) => (b.serving < a.serving ? b : a));
    const pitr = repo ? await benchPgBackRest({ repo, pgs, pgService, service, api, counts, passFile, baseUrl, ca: first.ca.certPem, dir }) : undefined;
    api.close();
    process.stdout.write(JSON.stringify({
      bench: 'restore', source: 'logical', clients: N.clients, topics: N.topics, links: N.links, dumpBytes: fs.statSync(dumpFile).size,
      oursSecondsToC2Serving: +best.serving.toFixed(3), baselineSecondsToC2Serving: +baseline.toFixed(3), ratio: +(best.serving / baseline).toFixed(3),
      comparison: 'best of two alternating runs each; both end when C2 serves the restored counts', baselineRuns: bares.map((b) => +b.serving.toFixed(3)),
      oursRuns: ourRuns.map((o) => +o.serving.toFixed(3)), oursSteps: best.steps, loadAverage: os.loadavg().map((x) => +x.toFixed(2)),
      ...(pitr ? { pgbackrest: pitr } : {}), targets: { ratioMax: 1.3, pgbackrestRatioMax: 1.5 },
    }) + '\n');
  } finally {
    try { execFileSync('sh', [service, 'stop']); } catch { /* not running */ }
    try { if (repo) execFileSync('sh', [pgService, 'stop']); } catch { /* not running */ }
    await mq.stop();
    await pgs.stop();
    repo?.cleanup();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

interface PitrBench {
  repo: ReturnType<typeof createThrowawayPgBackRestRepo>; pgs: Awaited<ReturnType<typeof startThrowawayPostgres>>; pgService: string; service: string;
  api: ReturnType<typeof createC2Api>; counts: { clients: number; topics: number }; passFile: string; baseUrl: string; ca: string; dir: string;
}

/** pgBackRest half: a full backup of the same database, then bare restore vs e4ops restore, alternating twice. */
async function benchPgBackRest(b: PitrBench): Promise<Record<string, unknown>> {
  say('pgBackRest full backup ...');
  await b.repo.run('backup', ['--type=full']);
  await b.repo.run('check');
  const dataDir = b.pgs.dataDir;
  const bare = async () => {
    const t0 = process.hrtime.bigint();
    await sh(`sh ${b.service} stop`);
    await sh(`sh ${b.pgService} stop`);
    fs.rmSync(dataDir, { recursive: true, force: true });
    fs.mkdirSync(dataDir, { mode: 0o700 });
    execFileSync('chown', ['postgres:', dataDir]);
    await b.repo.run('restore', [`--pg1-path=${dataDir}`, '--type=default']);
    await sh(`sh ${b.pgService} start`);
    await waitForRecoveredPostgres(b.pgs.url('postgres'), 600_000); // C2 migrates its schema: not on a server still recovering
    await sh(`sh ${b.service} start`);
    await waitForC2Counts(b.api, b.counts, 600_000);
    return Number(process.hrtime.bigint() - t0) / 1e9;
  };
  let round = 0;
  const ours = async () => {
    const stateDir = path.join(b.dir, `pitr-state-${++round}`);
    const report = await runRestore({
      target: '', backup: 'latest', identityFile: '', databaseUrl: b.pgs.url('e4'), passphraseFile: b.passFile, c2: { url: b.baseUrl, ca: Buffer.from(b.ca) },
      pgbackrest: { configFile: b.repo.configFile, stanza: b.repo.stanza, configIncludePath: b.repo.configIncludePath, targetTime: 'latest', dataDir, postgres: { stopCommands: [`sh ${b.pgService} stop`], startCommands: [`sh ${b.pgService} start`] } },
      lifecycle: { stopCommands: [`sh ${b.service} stop`], startCommands: [`sh ${b.service} start`] }, automationEnginePaused: true, resync: false,
      stateDir, yes: true, c2TimeoutSeconds: 600, logger: createLogger({ component: 'restore', level: 'warn' }),
    });
    if (!report.ok) throw new Error(`pgBackRest restore failed: ${report.error}`);
    fs.rmSync(report.dataDirectory!.keptAside!, { recursive: true, force: true }); // untimed: what --finalize does
    return { serving: report.rto.c2ServingSeconds!, steps: Object.fromEntries(report.steps.map((s) => [s.step, s.seconds ?? 0])) };
  };
  const bares: number[] = [];
  const ourRuns: Awaited<ReturnType<typeof ours>>[] = [];
  for (let r = 1; r <= 2; r++) {
    say(`pgBackRest round ${r}: bare pgbackrest restore + start PostgreSQL + start C2 ...`);
    bares.push(await bare());
    say(`  C2 serving after ${bares.at(-1)!.toFixed(2)} s`);
    say(`pgBackRest round ${r}: e4ops restore --pgbackrest-config ... --no-resync ...`);
    ourRuns.push(await ours());
    say(`  C2 serving after ${ourRuns.at(-1)!.serving.toFixed(2)} s; steps ${JSON.stringify(ourRuns.at(-1)!.steps)}`);
  }
  const baseline = Math.min(...bares);
  const best = ourRuns.reduce((x, y) => (y.serving < x.serving ? y : x));
  return { oursSecondsToC2Serving: +best.serving.toFixed(3), baselineSecondsToC2Serving: +baseline.toFixed(3), ratio: +(best.serving / baseline).toFixed(3), baselineRuns: bares.map((x) => +x.toFixed(3)), oursRuns: ourRuns.map((o) => +o.serving.toFixed(3)), oursSteps: best.steps };
}

main().catch((e) => { process.stderr.write(`bench:restore failed: ${(e as Error).stack ?? e}\n`); process.exit(1); });
