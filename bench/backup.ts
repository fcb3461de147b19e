// bench:backup — seeds a C2 database of 1,000,000 clients / 100,000 topics / 5,000,000 links (keys
// sealed as C2 seals them), then times our backup (scripts/backup.ts: pg_dump | zstd | age → sha256 →
// target) against bare `pg_dump -Fc > file` on the same database, sampling the peak RSS of each whole
// process tree from /proc. Ours runs exactly as the printed systemd unit / cron line runs it. Last stdout line: one JSON object {"bench":"backup",...}.
// Sizes: BENCH_CLIENTS / BENCH_TOPICS / BENCH_LINKS override (for a quick look).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawn } from 'node:child_process';
import { startThrowawayPostgres } from '../lib/servers/postgres.ts';
import { seedC2Database, type SealDbValuesBatch } from '../lib/c2-db/seed-database.ts';
import * as keystore from '../lib/e4/keystore.ts';
import { NODE_FLAGS } from '../backups/schedule.ts';
import { treeRssBytes } from '../lib/process-tree.ts';
import { REPO_ROOT } from '../lib/repo-root.ts';

const repo = REPO_ROOT;
const N = { clients: Number(process.env.BENCH_CLIENTS ?? 1_000_000), topics: Number(process.env.BENCH_TOPICS ?? 100_000), links: Number(process.env.BENCH_LINKS ?? 5_000_000) };
const say = (s: string) => process.stderr.write(s + '\n');

/** Run a command, sampling its process tree's RSS every 50 ms; wall time in seconds. */
function measure(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ seconds: number; peakRssBytes: number; stdout: string }> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let peak = 0;
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr = (stderr + d).slice(-4000); });
    const timer = setInterval(() => { peak = Math.max(peak, treeRssBytes(child.pid!)); }, 50);
    child.on('close', (code) => {
      clearInterval(timer);
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      if (code !== 0) reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${stderr}`));
      else resolve({ seconds, peakRssBytes: peak, stdout });
    });
  });
}

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-bench-backup-'));
  const server = await startThrowawayPostgres({ settings: { shared_buffers: '256MB', max_wal_size: '4GB', checkpoint_timeout: '30min' } });
  try {
    const url = await server.createDatabase('c2');
    const dbKey = keystore.deriveDbKey('bench passphrase for the c2 database');
    const sealBatch: SealDbValuesBatch = (plains) => keystore.sealDbValuesBatch(dbKey, plains);
    say(`seeding ${N.clients} clients, ${N.topics} topics, ${N.links} links (keys sealed as C2 seals them)...`);
    const seed = await seedC2Database(url, { ...N, sealBatch });
    server.psql('CHECKPOINT');
    const dbBytes = Number(server.psql(`SELECT pg_database_size('c2')`).trim());
    say(`seeded in ${seed.seconds.toFixed(1)} s; database ${(dbBytes / 2 ** 20).toFixed(0)} MiB`);

    const identity = path.join(dir, 'id.age');
    execFileSync('age-keygen', ['-o', identity], { stdio: 'ignore' });
    const recipient = execFileSync('age-keygen', ['-y', identity], { encoding: 'utf8' }).trim();
    // As in production: the passphrase file is read to fingerprint it (Argon2i, 64 MiB, in a worker).
    const passphraseFile = path.join(dir, 'db-passphrase');
    fs.writeFileSync(passphraseFile, 'bench passphrase for the c2 database\n');
    const bareFile = path.join(dir, 'bare.pgdump');
    const bare = () => measure('sh', ['-c', 'exec pg_dump -Fc --dbname="$DBURL" > "$OUT"'], { ...process.env, DBURL: url, OUT: bareFile });
    const ours = (compression: string, target: string) => measure(process.execPath, [...NODE_FLAGS, '--import', 'tsx', path.join(repo, 'scripts/backup.ts'),
      '--database-url', url, '--target', target, '--recipient', recipient, '--compression', compression,
      '--passphrase-file', passphraseFile, '--lock-file', path.join(dir, 'lock'), '--create-target', '--json'], { ...process.env, E4OPS_LOG_LEVEL: 'warn' });

    // The machine is shared: interleave the runs and compare the fastest of each (noise only adds time).
    const mib = (n: number) => (n / 2 ** 20).toFixed(1);
    const bareRuns: Awaited<ReturnType<typeof bare>>[] = [];
    const ourRuns: Awaited<ReturnType<typeof bare>>[] = [];
    let oursBytes = 0;
    let bareBytes = 0;
    for (let round = 1; round <= 2; round++) {
      say(`round ${round}: bare pg_dump -Fc > file ...`);
      const b = await bare();
      bareRuns.push(b);
      bareBytes = fs.statSync(bareFile).size;
      say(`  ${b.seconds.toFixed(2)} s, ${mib(bareBytes)} MiB, peak RSS ${mib(b.peakRssBytes)} MiB`);
      say(`round ${round}: ours (pg_dump -Z0 | zstd | age → sha256 → local target) ...`);
      const target = path.join(dir, `target-${round}`);
      const o = await ours('zstd', target);
      ourRuns.push(o);
      const setId = JSON.parse(o.stdout.trim().split('\n').pop()!).setId as string;
      oursBytes = fs.readdirSync(path.join(target, setId)).reduce((a, f) => a + fs.statSync(path.join(target, setId, f)).size, 0);
      say(`  ${o.seconds.toFixed(2)} s, ${mib(oursBytes)} MiB, peak RSS ${mib(o.peakRssBytes)} MiB`);
      fs.rmSync(target, { recursive: true, force: true });
    }
    say('ours with pg_dump\'s own zlib instead of zstd (pg_dump -Fc | age) ...');
    const z = await ours('pg_dump', path.join(dir, 'target-zlib'));
    say(`  ${z.seconds.toFixed(2)} s, peak RSS ${mib(z.peakRssBytes)} MiB`);
    const best = (runs: { seconds: number }[]) => Math.min(...runs.map((r) => r.seconds));
    const peak = (runs: { peakRssBytes: number }[]) => Math.max(...runs.map((r) => r.peakRssBytes));
    const result = {
      bench: 'backup',
      clients: N.clients, topics: N.topics, links: N.links, databaseBytes: dbBytes, seedSeconds: seed.seconds,
      oursSeconds: +best(ourRuns).toFixed(3), baselineSeconds: +best(bareRuns).toFixed(3), ratio: +(best(ourRuns) / best(bareRuns)).toFixed(3),
      oursPeakRssMiB: +mib(peak(ourRuns)), baselinePeakRssMiB: +mib(peak(bareRuns)),
      oursBytes, baselineBytes: bareBytes,
      oursRunsSeconds: ourRuns.map((r) => +r.seconds.toFixed(3)), baselineRunsSeconds: bareRuns.map((r) => +r.seconds.toFixed(3)),
      oursPgDumpZlibSeconds: +z.seconds.toFixed(3), oursPgDumpZlibPeakRssMiB: +mib(z.peakRssBytes),
      loadAverage: os.loadavg().map((l) => +l.toFixed(2)),
      targets: { ratioMax: 1.2, rssMaxMiB: 200 },
    };
    process.stdout.write(JSON.stringify(result) + '\n');
  } finally {
    await server.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => { process.stderr.write(`bench:backup failed: ${(e as Error).stack ?? e}\n`); process.exit(1); });
