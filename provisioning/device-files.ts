// What provisioning writes for each device before C2 hears of it: bundle (+ label) for the station, the
// escrowed key, the first-use key: a QR code, up to three age encryptions and four small files. Done on the
// main thread it delayed C2's responses (docs/develop/benchmarks.md), so it runs in worker threads with
// synchronous file calls (cheaper than fs.promises' thread-pool round trips), and provision-new.ts keeps
// it a few devices ahead of the C2 lanes.
import fs from 'node:fs';
import { Worker } from 'node:worker_threads';
import { ageEncrypt } from '../lib/age.ts';
import { bundlePaths, buildDeviceBundle, labelText, renderLabel, writePrivateFileSync } from './device-bundle.ts';

/** One device's files; every path absolute, every directory already made. */
export interface DeviceFilesJob {
  name: string;
  key: Uint8Array;
  bundle?: { dir: string; topics: string[]; broker: string; recipients: string[] };
  escrow?: { file: string; recipients: string[] };
  firstUse?: { file: string; recipients: string[] };
}

/**
 * Write one device's files. age1 recipients are encrypted in process (lib/age.ts: the age-encryption
 * package), ssh ones by the age CLI; the files themselves with synchronous calls (in a worker thread
 * they block nothing else).
 */
export async function writeDeviceFiles(j: DeviceFilesJob): Promise<void> {
  const key = Buffer.from(j.key);
  if (j.bundle) {
    const bundle = buildDeviceBundle(j.name, key, j.bundle.topics, j.bundle.broker);
    const paths = bundlePaths(j.bundle.dir, j.name, j.bundle.recipients.length > 0);
    const json = Buffer.from(JSON.stringify(bundle, null, 2) + '\n');
    writePrivateFileSync(paths.bundle, j.bundle.recipients.length ? await ageEncrypt(json, j.bundle.recipients) : json);
    const label = renderLabel(labelText(bundle));
    fs.writeFileSync(paths.labelPng, label.png);
    fs.writeFileSync(paths.labelSvg, label.svg);
  }
  if (j.escrow) writePrivateFileSync(j.escrow.file, await ageEncrypt(key, j.escrow.recipients));
  if (j.firstUse) writePrivateFileSync(j.firstUse.file, await ageEncrypt(key, j.firstUse.recipients));
}

export interface DeviceFileWriter {
  /** Resolves once the device's files are all in place (renamed into their final names). */
  write(job: DeviceFilesJob): Promise<void>;
  /** 'worker' or 'in-process' (no tsx to load the worker with, e.g. inside a test runner). */
  readonly mode: 'worker' | 'in-process';
  close(): Promise<void>;
}

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
import(workerData.tsxApi)
  .then(({ register }) => { register(); return import(workerData.module); })
  .then((m) => {
    parentPort.on('message', async (jobs) => {
      const replies = await Promise.all(jobs.map((j) => m.writeDeviceFiles(j).then(
        () => ({ id: j.id }), (e) => ({ id: j.id, error: String(e && e.message || e) }))));
      parentPort.postMessage({ replies });
    });
    parentPort.postMessage({ ready: true });
  }, (e) => parentPort.postMessage({ fatal: String(e && e.message || e) }));
`;

function tsxApiUrl(): string | undefined {
  const resolve = (import.meta as { resolve?: (s: string) => string }).resolve;
  try { return typeof resolve === 'function' ? resolve('tsx/esm/api') : undefined; } catch { return undefined; }
}

type Waiter = { resolve: () => void; reject: (e: Error) => void };
interface FileWorker {
  worker: Worker;
  /** Register the job's waiter, then post jobs in one message. */
  track(id: number, w: Waiter): void;
  post(jobs: (DeviceFilesJob & { id: number })[]): void;
  outstanding(): number;
}

/** One worker thread running writeDeviceFiles; undefined when it cannot load. */
async function startFileWorker(tsxApi: string): Promise<FileWorker | undefined> {
  const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { tsxApi, module: new URL('./device-files.ts', import.meta.url).href } });
  const waiting = new Map<number, Waiter>();
  let failed: Error | undefined;
  const failAll = (e: Error) => {
    failed ??= e;
    for (const w of waiting.values()) w.reject(failed);
    waiting.clear();
  };
  const ready = await new Promise<boolean>((resolve) => {
    worker.on('message', (m: { ready?: boolean; fatal?: string; replies?: { id: number; error?: string }[] }) => {
      if (m.ready) return resolve(true);
      if (m.fatal) { failAll(new Error(`device file worker: ${m.fatal}`)); return resolve(false); }
      for (const r of m.replies ?? []) {
        const w = waiting.get(r.id);
        waiting.delete(r.id);
        if (r.error) w?.reject(new Error(r.error)); else w?.resolve();
      }
    });
    worker.once('error', (e) => { failAll(e); resolve(false); });
    worker.once('exit', (code) => { failAll(new Error(`device file worker exited (${code})`)); resolve(false); });
  });
  if (!ready) { await worker.terminate(); return undefined; }
  return {
    worker,
    track: (id, w) => { if (failed) w.reject(failed); else waiting.set(id, w); },
    post: (jobs) => { if (!failed) worker.postMessage(jobs); },
    outstanding: () => waiting.size,
  };
}

/**
 * A writer for one run: `size` worker threads (default 2: the file work is CPU plus file creation in the
 * kernel, and on a busy host one thread alone fell behind the four C2 lanes). CPU they spend is CPU the
 * main thread no longer spends. Runs where the workers cannot load (no tsx, e.g. inside a test runner)
 * write in process.
 */
export async function openDeviceFileWriter(opts: { size?: number } = {}): Promise<DeviceFileWriter> {
  const tsxApi = tsxApiUrl();
  const inProcess: DeviceFileWriter = {
    mode: 'in-process',
    write: (j) => writeDeviceFiles(j),
    close: async () => undefined,
  };
  if (!tsxApi) return inProcess;
  const started = await Promise.all(Array.from({ length: Math.max(1, opts.size ?? 2) }, () => startFileWorker(tsxApi)));
  const workers = started.filter((w): w is FileWorker => !!w);
  if (workers.length < started.length) {
    await Promise.all(workers.map((w) => w.worker.terminate()));
    return inProcess;
  }
  let nextId = 0;
  // Jobs posted in the same tick travel as one message, to the worker with the fewest jobs outstanding.
  let batch: (DeviceFilesJob & { id: number })[] = [];
  let target = workers[0];
  return {
    mode: 'worker',
    write(j) {
      const id = nextId++;
      if (!batch.length) {
        target = workers.reduce((a, b) => (b.outstanding() < a.outstanding() ? b : a));
        const to = target;
        queueMicrotask(() => { const b = batch; batch = []; to.post(b); });
      }
      return new Promise<void>((resolve, reject) => {
        target.track(id, { resolve, reject });
        // A key of its own 32 bytes: a Buffer from Node's pool would clone the whole 8 KiB pool slab per message.
        batch.push({ ...j, key: new Uint8Array(j.key), id });
      });
    },
    async close() { await Promise.all(workers.map((w) => w.worker.terminate())); },
  };
}
