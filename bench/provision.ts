// bench:provision — devices provisioned per second against the real C2 (scripts/build-c2.sh), next to a
// bare loop of the same API calls.
//   bare: for each device NewClient(random key) + one link per topic (PUT, C2 pushes the key), with the
//         same concurrency, nothing else.
//   ours: provisionDevices(): the same calls, with the same 4 lanes, plus what provisioning adds: plan
//         against the inventory and C2's client list, a bundle (0600 JSON) and a QR label (PNG + SVG) per
//         device, the key escrowed with age, the run journal, and the fleet inventory written (checkpoints
//         and at the end).
// Also reported: CPU per device of this process, C2 and PostgreSQL, per phase:
// on a busy 2-core host the ratio follows the CPU ratio.
// The two phases alternate in rounds, in ABBA order (bare, ours, ours, bare, ...), after a warm-up of
// both, so that C2's growing tables and the shared machine's load weigh on both alike. Target (issue 16): ratio ours/bare <= 1.1.
// Also reported: what creating one file costs on the bundle directory's filesystem (fileCreateMs, a probe
// of 300 creates before the rounds). On ext4 without a journal, for 60 s (up to 6 min while the inode
// table is dirty) after a mass delete, every create skips the recently freed inodes one by one: creates
// cost 0.4-0.9 ms instead of 0.03 ms, and 'ours' writes 3 files per device.
// Usage: npm run bench:provision -- [--devices 10000] [--topics 3] [--rounds 4] [--concurrency 4] [--warmup 200] [--disk-wait 420] [--keep]
//   --disk-wait: seconds to wait, at most, for file creates to cost what they normally do (0: do not wait).
//   --warmup: devices each path provisions before the clock starts (not counted).
//   --keep: leave the bundles, escrow and inventory in place (the path is printed): to look at them, or to
//   run the bench again within minutes without the previous run's delete slowing this run's creates.
// Last stdout line: one JSON object.
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startC2, pickLoopbackHostFor5432 } from '../lib/servers/c2.ts';
import { startThrowawayPostgres } from '../lib/servers/postgres.ts';
import { startThrowawayMosquitto } from '../lib/servers/mosquitto.ts';
import { renderMosquittoConf } from '../lib/render/mosquitto-conf.ts';
import { C2Api } from '../lib/c2/c2-api.ts';
import { createLogger } from '../lib/log.ts';
import { forEachBounded } from '../lib/retry-with-backoff.ts';
import { treeCpuSeconds } from '../lib/process-tree.ts';
import { provisionDevices } from '../provisioning/provision-new.ts';
import { provisioningC2FromApi } from '../provisioning/provisioning-c2.ts';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}

const devices = arg('devices', 10_000);
const topicCount = arg('topics', 3);
const rounds = Math.max(1, arg('rounds', 4));
const concurrency = arg('concurrency', 4);
const warmup = arg('warmup', 200);
const topics = Array.from({ length: topicCount }, (_, i) => `bench/provision/topic-${i}`);

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-bench-provision-'));
const identity = path.join(dir, 'escrow.key');
execFileSync('age-keygen', ['-o', identity], { stdio: 'ignore' });
const recipient = /public key: (age1\S+)/.exec(fs.readFileSync(identity, 'utf8'))![1];

const postgres = await startThrowawayPostgres({ host: await pickLoopbackHostFor5432(), port: 5432 });
await postgres.createDatabase('e4c2');
const mosquitto = await startThrowawayMosquitto({ confText: renderMosquittoConf({ listeners: [{ port: '{{PORT}}', address: '{{HOST}}' }], persistenceDir: '{{DIR}}', allowAnonymous: true }) });
const c2server = await startC2({ db: { host: postgres.host, database: 'e4c2', username: 'postgres' }, passphrase: 'e4ops-bench-provision-passphrase', mqttBroker: mosquitto.url, logLevel: 'warn' });
const quiet = createLogger({ component: 'bench', level: 'warn' });
const api = new C2Api({ baseUrl: c2server.baseUrl, ca: c2server.ca.certPem, logger: quiet });
const c2 = provisioningC2FromApi(api);

// CPU seconds per phase, split by who spent them: this process (our work and the HTTPS client), C2, and
// PostgreSQL. On 2 shared cores, CPU this process spends is CPU C2 and PostgreSQL do not get.
// Disk cache flushes (fsync, journal commits) on the disk that holds the bundles and the journal, from
// /proc/diskstats (field 16 of the disk's line: flush requests completed). The throwaway PostgreSQL runs
// without fsync, so in the bare loop this stays near 0; each flush of ours stalls that disk's writes.
interface PhaseCost { node: number; c2: number; postgres: number; diskFlushes: number }
function diskFlushes(): number {
  const dev = fs.statSync(dir).dev;
  const major = (dev >> 8) & 0xfff;
  const minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
  let lines: string[];
  try { lines = fs.readFileSync('/proc/diskstats', 'utf8').split('\n').map((l) => l.trim()); } catch { return NaN; }
  const f = lines.map((l) => l.split(/\s+/)).find((x) => +x[0] === major && +x[1] === minor);
  return Number(f?.[18] ?? NaN);
}
const cpuNow = (): PhaseCost => {
  const u = process.cpuUsage();
  return { node: (u.user + u.system) / 1e6, c2: treeCpuSeconds(c2server.daemon.child.pid!), postgres: treeCpuSeconds(postgres.daemon.child.pid!), diskFlushes: diskFlushes() };
};
const addCpu = (acc: PhaseCost, from: PhaseCost) => {
  const to = cpuNow();
  acc.node += to.node - from.node; acc.c2 += to.c2 - from.c2; acc.postgres += to.postgres - from.postgres; acc.diskFlushes += to.diskFlushes - from.diskFlushes;
};
const perDeviceMs = (c: PhaseCost, n: number) => ({ node: +(1000 * c.node / n).toFixed(2), c2: +(1000 * c.c2 / n).toFixed(2), postgres: +(1000 * c.postgres / n).toFixed(2) });
const bareCpu: PhaseCost = { node: 0, c2: 0, postgres: 0, diskFlushes: 0 };
const oursCpu: PhaseCost = { node: 0, c2: 0, postgres: 0, diskFlushes: 0 };
const checkCpu: PhaseCost = { node: 0, c2: 0, postgres: 0, diskFlushes: 0 };
// What the registration check (which names C2 has already) costs inside 'ours': no device is in flight
// while it runs, so the CPU C2 and PostgreSQL spend meanwhile is its own.
let checkSeconds = 0;
const registeredAmong = c2.registeredAmong.bind(c2);
c2.registeredAmong = async (names) => {
  const t0 = performance.now();
  const cpu0 = cpuNow();
  try { return await registeredAmong(names); } finally {
    checkSeconds += (performance.now() - t0) / 1000;
    addCpu(checkCpu, cpu0);
  }
};

/** CPU ms per file create+write+close in `where` (the files stay: deleting them would slow the next creates). */
function probeFileCreate(where: string, files = 300): number {
  fs.mkdirSync(where, { recursive: true });
  const data = Buffer.alloc(600, 1);
  const c0 = process.cpuUsage();
  for (let i = 0; i < files; i++) {
    const fd = fs.openSync(path.join(where, `probe-${i}`), 'wx', 0o600);
    fs.writeSync(fd, data);
    fs.closeSync(fd);
  }
  const c = process.cpuUsage(c0);
  return +((c.user + c.system) / 1000 / files).toFixed(3);
}
// A bench run right after a mass delete on this filesystem (another bench's teardown, the test suite's
// temporary trees) would measure that delete, not provisioning: wait (up to --disk-wait seconds) until
// creating a file costs what it normally does, probing every 20 s.
const diskWait = arg('disk-wait', 420);
const slowCreates = (ms: number) => `creating a file costs ${ms} ms of CPU here (healthy: ~0.03 ms), as for up to 6 min after a mass delete on ext4 without a journal; 'ours' creates 3 files per device`;
let fileCreateMs = probeFileCreate(path.join(dir, 'probe-0'));
let diskWaitSeconds = 0;
const waitStarted = performance.now();
for (let probe = 1; fileCreateMs > 0.1 && diskWaitSeconds < diskWait; probe++) {
  process.stderr.write(`waiting for the filesystem: ${slowCreates(fileCreateMs)}; ${Math.round(diskWait - diskWaitSeconds)} s left (--disk-wait 0 to measure anyway)\n`);
  await new Promise((r) => setTimeout(r, 20_000));
  diskWaitSeconds = (performance.now() - waitStarted) / 1000;
  fileCreateMs = probeFileCreate(path.join(dir, `probe-${probe}`));
}
if (fileCreateMs > 0.1) process.stderr.write(`warning: ${slowCreates(fileCreateMs)}: 'ours' is inflated\n`);

const loadBefore = os.loadavg().map((x) => +x.toFixed(2));
try {
  for (const t of topics) await api.newTopic(t);
  const perRound = Math.ceil(devices / rounds);
  const inventoryFile = path.join(dir, 'inventory', 'fleet.yaml');
  let bareSeconds = 0;
  let oursSeconds = 0;
  let provisioned = 0;
  let bareDone = 0;
  const roundRatios: number[] = [];
  const runBare = async (names: string[]) => {
    await forEachBounded(names, concurrency, async (name) => {
      await api.newClient(name, crypto.randomBytes(32));
      for (const t of topics) await api.linkClientTopic(name, t);
    });
  };
  const runOurs = (names: string[]) => provisionDevices({
    c2, devices: names.map((name) => ({ name })), method: 'prekeyed', topics, inventoryFile,
    outDir: path.join(dir, 'bundles'), broker: mosquitto.url, escrowRecipients: [recipient], concurrency, logger: quiet,
  });
  // Both paths run once before the clock starts (JIT, TLS sessions, C2's and PostgreSQL's caches): the
  // first measured phase would otherwise pay the warm-up alone.
  await runBare(Array.from({ length: warmup }, (_, i) => `warm-bare-${i}`));
  await runOurs(Array.from({ length: warmup }, (_, i) => `warm-dev-${i}`));
  for (let r = 0; r < rounds; r++) {
    const n = Math.min(perRound, devices - r * perRound);
    if (n <= 0) break;
    let bareRound = 0;
    let oursRound = 0;
    const bare = async () => {
      const t0 = performance.now();
      const cpu0 = cpuNow();
      await runBare(Array.from({ length: n }, (_, i) => `bare-${r}-${i}`));
      bareRound = (performance.now() - t0) / 1000;
      addCpu(bareCpu, cpu0);
      bareDone += n;
    };
    const ours = async () => {
      const t0 = performance.now();
      const cpu0 = cpuNow();
      const report = await runOurs(Array.from({ length: n }, (_, i) => `dev-${r}-${i}`));
      oursRound = (performance.now() - t0) / 1000;
      addCpu(oursCpu, cpu0);
      provisioned += report.provisioned.length;
    };
    // ABBA order (bare first in even rounds, ours first in odd ones): what drifts during the run (C2's
    // tables growing, PostgreSQL's autovacuum, the host's load) weighs on both alike.
    for (const phase of r % 2 === 0 ? [bare, ours] : [ours, bare]) await phase();
    bareSeconds += bareRound;
    oursSeconds += oursRound;
    roundRatios.push(+(oursRound / bareRound).toFixed(3));
    process.stderr.write(`round ${r + 1}/${rounds}: ${n} devices; bare ${bareSeconds.toFixed(1)} s, ours ${oursSeconds.toFixed(1)} s so far\n`);
  }
  const bundles = fs.readdirSync(path.join(dir, 'bundles'));
  const result = {
    bench: 'provision',
    c2: c2server.version,
    devices, topicsPerDevice: topicCount, rounds, concurrency, warmupDevices: warmup,
    apiCallsPerDevice: 1 + topicCount,
    ours: { seconds: +oursSeconds.toFixed(2), devicesPerSecond: +(provisioned / oursSeconds).toFixed(1), provisioned, bundleFiles: bundles.length, cpuMsPerDevice: perDeviceMs(oursCpu, provisioned), diskFlushesPerDevice: +(oursCpu.diskFlushes / provisioned).toFixed(2) },
    bare: { seconds: +bareSeconds.toFixed(2), devicesPerSecond: +(bareDone / bareSeconds).toFixed(1), devices: bareDone, cpuMsPerDevice: perDeviceMs(bareCpu, bareDone), diskFlushesPerDevice: +(bareCpu.diskFlushes / bareDone).toFixed(2) },
    ratio: +(oursSeconds / bareSeconds).toFixed(3),
    registrationCheck: { seconds: +checkSeconds.toFixed(2), cpuMsPerDevice: perDeviceMs(checkCpu, provisioned) },
    roundRatios,
    target: 1.1,
    fileCreateMs,
    diskWaitSeconds: Math.round(diskWaitSeconds),
    loadAverage: { before: loadBefore, after: os.loadavg().map((x) => +x.toFixed(2)) },
    clientsInC2: await api.countClients(),
  };
  console.log(`provision: ${result.ours.devicesPerSecond} devices/s (${devices} devices x ${topicCount} topics, bundles + labels + escrow) vs bare API loop ${result.bare.devicesPerSecond} devices/s: ratio ${result.ratio} (target <= 1.1)`);
  console.log(JSON.stringify(result));
} finally {
  api.close();
  await c2server.stop();
  await mosquitto.stop();
  await postgres.stop();
  if (process.argv.includes('--keep')) process.stderr.write(`kept: ${dir}\n`);
  else fs.rmSync(dir, { recursive: true, force: true });
}
