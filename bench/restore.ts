// bench:restore — time from the start of a production restore to C2 serving the restored counts:
// `e4ops restore` (logical set; preflight with checksums, restore beside production, the drill's checks
// with every key opened, swap by rename, C2 started and waited for) next to the bare hand path
// (`age -d | zstd -d | pg_restore` into an empty database, start C2, wait for the same counts), on a
// database seeded by lib/c2-db/seed-database.ts. Both alternate twice; the best of each is compared.
// The resync is not in either time (bench:drill measures it). Last stdout line: {"bench":"restore",...}.
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
import { writeC2Service } from '../test/restore/c2-service.ts';

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
  const pgs = await startThrowawayPostgres({ host: await pickLoopbackHostFor5432(), port: 5432, settings: { shared_buffers: '256MB', max_wal_size: '8GB', checkpoint_timeout: '30min', maintenance_work_mem: '512MB' } });
  const mq = await startThrowawayMosquitto();
  const service = path.join(dir, 'c2-service.sh');
  try {
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
    api.close();
    const baseline = Math.min(...bares.map((b) => b.serving));
    const best = ourRuns.reduce((a, b) => (b.serving < a.serving ? b : a));
    process.stdout.write(JSON.stringify({
      bench: 'restore', source: 'logical', clients: N.clients, topics: N.topics, links: N.links, dumpBytes: fs.statSync(dumpFile).size,
      oursSecondsToC2Serving: +best.serving.toFixed(3), baselineSecondsToC2Serving: +baseline.toFixed(3), ratio: +(best.serving / baseline).toFixed(3),
      comparison: 'best of two alternating runs each; both end when C2 serves the restored counts', baselineRuns: bares.map((b) => +b.serving.toFixed(3)),
      oursRuns: ourRuns.map((o) => +o.serving.toFixed(3)), oursSteps: best.steps, loadAverage: os.loadavg().map((x) => +x.toFixed(2)),
      pgbackrest: 'not measured: the pgBackRest source of e4ops restore is not built yet', targets: { ratioMax: 1.3 },
    }) + '\n');
  } finally {
    try { execFileSync('sh', [service, 'stop']); } catch { /* not running */ }
    await mq.stop();
    await pgs.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => { process.stderr.write(`bench:restore failed: ${(e as Error).stack ?? e}\n`); process.exit(1); });
