// bench:e4 — the E4 library against the reference Go implementation (e4go, built from test/go-vectors),
// run alternately in the same process tree on the same machine:
//   1. Argon2i key derivation as C2 and devices do it (64 MiB, t=1, p=4, empty salt): TS time vs Go time
//      (target: ratio <= 3)
//   2. AES-SIV unprotect of 1 KiB messages (timestamp check + AES-SIV open): TS MB/s (target >= 50),
//      next to e4go's MB/s for the same work
//   3. C2 key-store values opened per second (single and batched; informational)
// Prints a table, then ONE JSON object on the last line of stdout.
// Usage: npm run bench:e4 [-- --rounds 5 --messages 50000]
import { randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { deriveDbKey, deriveKeyFromPassword, openDbValue, openDbValuesBatch, protectSymKey, sealDbValuesBatch, unprotectSymKey } from '../lib/e4/index.ts';
import { buildGoVectors, findGo, timeGoArgon2, timeGoUnprotect } from '../test/go-vectors/go-vectors.ts';

const { values: flags } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    messages: { type: 'string', default: '50000' },
    help: { type: 'boolean', default: false },
  },
});
if (flags.help) {
  console.log('usage: npm run bench:e4 [-- --rounds N (default 5)] [--messages N (default 50000)]');
  process.exit(0);
}
const rounds = Number(flags.rounds);
const messages = Number(flags.messages);
if (!(rounds >= 1) || !(messages >= 1000)) {
  console.error('bench:e4: --rounds must be >= 1 and --messages >= 1000');
  process.exit(2);
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const r3 = (x: number) => Math.round(x * 1000) / 1000;

const go = findGo();
if (!go) {
  console.error('bench:e4: no Go toolchain found (set $GO or install Go at /usr/local/go): the Go baseline cannot run');
  process.exit(1);
}
const bin = await buildGoVectors(go);
const loadBefore = loadavg()[0];

// 1. Argon2i, alternating Go and TS; Go's time is measured inside its process (no start-up cost).
const goArgon: number[] = [];
const tsArgon: number[] = [];
const warm = await timeGoArgon2(bin);
if (deriveKeyFromPassword(warm.password).toString('hex') !== warm.key) {
  console.error('bench:e4: TypeScript and Go derive different Argon2i keys; fix correctness first (npx vitest run test/e4)');
  process.exit(1);
}
for (let i = 0; i < rounds; i++) {
  goArgon.push((await timeGoArgon2(bin)).seconds);
  const t0 = performance.now();
  deriveKeyFromPassword(warm.password);
  tsArgon.push((performance.now() - t0) / 1000);
}

// 2. AES-SIV unprotect of 1 KiB messages.
const key = randomBytes(32);
const pool = Array.from({ length: 1000 }, () => protectSymKey(randomBytes(1024), key));
const tsMBps: number[] = [];
const tsCpuMBps: number[] = [];
const goMBps: number[] = [];
for (let i = 0; i < pool.length; i++) unprotectSymKey(pool[i], key); // warm-up
for (let r = 0; r < Math.max(3, rounds); r++) {
  const g = await timeGoUnprotect(bin, messages);
  goMBps.push(g.bytes / g.seconds / 1e6);
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  for (let i = 0; i < messages; i++) unprotectSymKey(pool[i % pool.length], key);
  tsMBps.push((messages * 1024) / ((performance.now() - t0) / 1000) / 1e6);
  const cpu = process.cpuUsage(c0);
  tsCpuMBps.push((messages * 1024) / ((cpu.user + cpu.system) / 1e6) / 1e6);
}

// 3. C2 key store: sealed 32-byte keys opened per second, one by one and in batches of 10,000
//    (what a restore drill does to every row). No Go baseline: C2 never opens its store in bulk.
const dbKey = deriveDbKey('bench db passphrase 0001');
const sealedStore = sealDbValuesBatch(dbKey, Array.from({ length: 100_000 }, () => randomBytes(32)));
let t = performance.now();
for (let i = 0; i < 20_000; i++) openDbValue(dbKey, sealedStore[i]);
const storeSingle = 20_000 / ((performance.now() - t) / 1000);
t = performance.now();
for (let i = 0; i < sealedStore.length; i += 10_000) openDbValuesBatch(dbKey, sealedStore.slice(i, i + 10_000));
const storeBatch = sealedStore.length / ((performance.now() - t) / 1000);

const oursSeconds = median(tsArgon);
const baselineSeconds = median(goArgon);
const ratio = oursSeconds / baselineSeconds;
const sivMBps = median(tsMBps);
const result = {
  bench: 'e4',
  oursSeconds: r3(oursSeconds),
  baselineSeconds: r3(baselineSeconds),
  ratio: r3(ratio),
  argon2: 'Argon2i m=64MiB t=1 p=4 (TS single thread, WebAssembly kernel) vs e4go DeriveSymKey (Go, goroutines per lane)',
  argon2TargetRatio: 3,
  argon2Pass: ratio <= 3,
  sivUnprotectMBps: Math.round(sivMBps * 10) / 10,
  // the same work per second of this process's CPU time: what it reaches when it has a core to itself
  sivUnprotectMBpsCpuTime: Math.round(median(tsCpuMBps) * 10) / 10,
  sivBaselineMBps: Math.round(median(goMBps) * 10) / 10,
  sivTargetMBps: 50,
  sivPass: sivMBps >= 50,
  keyStoreOpenPerSecond: Math.round(storeSingle),
  keyStoreBatchOpenPerSecond: Math.round(storeBatch),
  rounds,
  messages,
  loadAverage: [r3(loadBefore), r3(loadavg()[0])],
};
console.log(`Argon2i 64 MiB t=1 p=4   TS ${oursSeconds.toFixed(3)} s   Go ${baselineSeconds.toFixed(3)} s   ratio ${ratio.toFixed(2)} (target <= 3)`);
console.log(`AES-SIV unprotect 1 KiB  TS ${sivMBps.toFixed(1)} MB/s (${median(tsCpuMBps).toFixed(1)} MB/s per CPU second)   Go ${median(goMBps).toFixed(1)} MB/s   (target >= 50 MB/s)`);
console.log(`C2 key store open        ${Math.round(storeSingle)} values/s one by one, ${Math.round(storeBatch)} values/s in batches of 10,000`);
console.log(`load average ${loadBefore.toFixed(2)} → ${loadavg()[0].toFixed(2)} on this machine during the run (other work skews both sides)`);
console.log(JSON.stringify(result));
