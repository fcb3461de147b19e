// The DB passphrase's fingerprint (lib/e4/keystore.ts passphraseFingerprint) for the manifest. Argon2i fills
// 64 MiB of WebAssembly memory that V8 only hands back after a full garbage collection, and the backup's
// memory budget (< 200 MiB for the whole job) has no room to carry it through the dump. So: with
// --expose-gc (the printed systemd unit / cron line pass it) compute in-process and collect right away;
// otherwise compute in a short-lived worker thread, whose memory goes back to the OS when it ends.
import { Worker } from 'node:worker_threads';
import { passphraseFingerprint } from '../lib/e4/keystore.ts';

export const FINGERPRINT_ALGORITHM = 'e4ops/passphrase-fingerprint/v1';

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
import(workerData.tsxApi)
  .then(({ register }) => { register(); return import(workerData.keystore); })
  .then((m) => parentPort.postMessage({ value: m.passphraseFingerprint(workerData.passphrase) }),
        (e) => parentPort.postMessage({ error: String(e && e.message || e) }));
`;

async function inProcessThenCollect(passphrase: string, gc: () => void): Promise<string> {
  const value = passphraseFingerprint(passphrase);
  // The WebAssembly memory is released a tick after a full collection; wait (bounded) until it is.
  for (let i = 0; i < 20; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 25));
    if (process.memoryUsage().external < 48 * 2 ** 20) break;
  }
  return value;
}

export async function computePassphraseFingerprint(passphrase: string): Promise<string> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (typeof gc === 'function') return inProcessThenCollect(passphrase, gc);
  const resolve = (import.meta as { resolve?: (s: string) => string }).resolve;
  let tsxApi: string | undefined;
  try { tsxApi = typeof resolve === 'function' ? resolve('tsx/esm/api') : undefined; } catch { tsxApi = undefined; }
  // Without a resolvable tsx (e.g. inside a test runner's own module system) compute in-process.
  if (!tsxApi) return passphraseFingerprint(passphrase);
  const keystore = new URL('../lib/e4/keystore.ts', import.meta.url).href;
  const reply = await new Promise<{ value?: string; error?: string }>((res, rej) => {
    const w = new Worker(WORKER_SOURCE, { eval: true, workerData: { tsxApi, keystore, passphrase } });
    w.once('message', (m) => { res(m); void w.terminate(); });
    w.once('error', rej);
    w.once('exit', (code) => { if (code !== 0 && code !== 1) rej(new Error(`fingerprint worker exited ${code}`)); });
  });
  if (reply.error !== undefined) throw new Error(reply.error);
  return reply.value!;
}
