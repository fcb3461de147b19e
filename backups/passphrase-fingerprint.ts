// The DB passphrase's fingerprint (lib/e4/keystore.ts passphraseFingerprint) for the manifest, computed in a
// short-lived worker thread: Argon2i fills 64 MiB of WebAssembly memory that a process never gives back,
// and the backup's memory budget (< 200 MiB for the whole job) has no room to carry it through the dump.
// The worker's memory goes back to the OS when it ends.
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

export async function computePassphraseFingerprint(passphrase: string): Promise<string> {
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
