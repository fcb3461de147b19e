// The DB passphrase's fingerprint (lib/e4/keystore.ts passphraseFingerprint) for the manifest. Argon2i fills
// 64 MiB of WebAssembly memory that V8 only hands back after a full garbage collection, and the backup's
// memory budget (< 200 MiB for the whole job) has no room to carry it through the dump. So: with
// --expose-gc (the printed systemd unit / cron line pass it) compute in-process and collect right away;
// otherwise compute in a short-lived worker thread, whose memory goes back to the OS when it ends.
import { Worker } from 'node:worker_threads';
import { deriveDbKey, dbKeyFingerprint, openDbValuesBatch } from '../lib/e4/keystore.ts';

export const FINGERPRINT_ALGORITHM = 'e4ops/passphrase-fingerprint/v1';

/** The fingerprint, and how many of the sampled sealed keys the passphrase opens. */
export interface PassphraseCheck { value: string; opened: number; sampled: number }

/** One Argon2i derivation serves both: open the samples, fingerprint the key, wipe it. */
function checkInProcess(passphrase: string, samples: Uint8Array[]): PassphraseCheck {
  const key = deriveDbKey(passphrase);
  try {
    const opened = samples.length ? openDbValuesBatch(key, samples).filter((v) => v !== null).length : 0;
    return { value: dbKeyFingerprint(key), opened, sampled: samples.length };
  } finally { key.fill(0); }
}

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
import(workerData.tsxApi)
  .then(({ register }) => { register(); return import(workerData.keystore); })
  .then((m) => {
    const key = m.deriveDbKey(workerData.passphrase);
    const samples = workerData.samples.map((b) => Buffer.from(b, 'base64'));
    const opened = samples.length ? m.openDbValuesBatch(key, samples).filter((v) => v !== null).length : 0;
    parentPort.postMessage({ value: m.dbKeyFingerprint(key), opened, sampled: samples.length });
    key.fill(0);
  }, (e) => parentPort.postMessage({ error: String(e && e.message || e) }))
  .catch((e) => parentPort.postMessage({ error: String(e && e.message || e) }));
`;

async function inProcessThenCollect(passphrase: string, samples: Uint8Array[], gc: () => void): Promise<PassphraseCheck> {
  const value = checkInProcess(passphrase, samples);
  // The WebAssembly memory is released a tick after a full collection; wait (bounded) until it is.
  for (let i = 0; i < 20; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 25));
    if (process.memoryUsage().external < 48 * 2 ** 20) break;
  }
  return value;
}

export async function computePassphraseFingerprint(passphrase: string): Promise<string> {
  return (await checkPassphrase(passphrase, [])).value;
}

/** Fingerprint the passphrase and open `samples` (sealed key column values) with it. */
export async function checkPassphrase(passphrase: string, samples: Uint8Array[]): Promise<PassphraseCheck> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (typeof gc === 'function') return inProcessThenCollect(passphrase, samples, gc);
  const resolve = (import.meta as { resolve?: (s: string) => string }).resolve;
  let tsxApi: string | undefined;
  try { tsxApi = typeof resolve === 'function' ? resolve('tsx/esm/api') : undefined; } catch { tsxApi = undefined; }
  // Without a resolvable tsx (e.g. inside a test runner's own module system) compute in-process.
  if (!tsxApi) return checkInProcess(passphrase, samples);
  const keystore = new URL('../lib/e4/keystore.ts', import.meta.url).href;
  const reply = await new Promise<Partial<PassphraseCheck> & { error?: string }>((res, rej) => {
    const w = new Worker(WORKER_SOURCE, { eval: true, workerData: { tsxApi, keystore, passphrase, samples: samples.map((b) => Buffer.from(b).toString('base64')) } });
    w.once('message', (m) => { res(m); void w.terminate(); });
    w.once('error', rej);
    w.once('exit', (code) => { if (code !== 0 && code !== 1) rej(new Error(`fingerprint worker exited ${code}`)); });
  });
  if (reply.error !== undefined) throw new Error(reply.error);
  return { value: reply.value!, opened: reply.opened ?? 0, sampled: reply.sampled ?? samples.length };
}
