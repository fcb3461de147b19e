// What provisioning writes before C2 hears of a device: per device its bundle (+ label) for the station
// and, for factory/TOFU keys, the first-use key; per group of devices one escrow file (one age encryption
// for the group: the age-encryption package costs ~2.5 ms of CPU per encryption, docs/develop/benchmarks.md).
// Done on the main thread it delayed C2's responses, so it runs in worker threads with synchronous file
// calls (cheaper than fs.promises' thread-pool round trips), and provision-new.ts keeps it a group ahead of
// the C2 lanes.
import fs from 'node:fs';
import { Worker } from 'node:worker_threads';
import { ageEncrypt } from '../lib/age.ts';
import { bundlePaths, buildDeviceBundle, labelText, renderLabel, writePrivateFileSync } from './device-bundle.ts';
import { escrowDocument } from './provisioning-inventory.ts';

/** One device's files; every path absolute, every directory already made. */
export interface DeviceFilesJob {
  name: string;
  key: Uint8Array;
  bundle?: { dir: string; topics: string[]; broker: string; recipients: string[] };
  firstUse?: { file: string; recipients: string[] };
}

/** One group's escrow file: each device's key (hex) under its name. */
export interface EscrowBatchJob {
  file: string;
  recipients: string[];
  keys: [name: string, hexKey: string][];
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
  if (j.firstUse) writePrivateFileSync(j.firstUse.file, await ageEncrypt(key, j.firstUse.recipients));
}

export async function writeEscrowBatch(j: EscrowBatchJob): Promise<void> {
  writePrivateFileSync(j.file, await ageEncrypt(escrowDocument(j.keys), j.recipients));
}

type FileJob = { device: DeviceFilesJob } | { escrow: EscrowBatchJob };

/** What a worker runs for each job it is sent. */
export function runFileJob(j: FileJob): Promise<void> {
  return 'escrow' in j ? writeEscrowBatch(j.escrow) : writeDeviceFiles(j.device);
}

export interface DeviceFileWriter {
  /** Resolves once the device's files are all in place (renamed into their final names). */
  write(job: DeviceFilesJob): Promise<void>;
  /** Resolves once the group's escrow file is in place. */
  writeEscrow(job: EscrowBatchJob): Promise<void>;
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
      const replies = await Promise.all(jobs.map((j) => m.runFileJob(j).then(
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
  post(jobs: (FileJob & { id: number })[]): void;
  outstanding(): number;
}

/** One worker thread running runFileJob; undefined when it cannot load. */
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
    writeEscrow: (j) => writeEscrowBatch(j),
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
  // Each job goes to the worker with the fewest jobs outstanding; a worker's jobs of one tick travel as one message.
  const queued = new Map<FileWorker, (FileJob & { id: number })[]>();
  const send = (job: FileJob) => {
    const id = nextId++;
    const to = workers.reduce((a, b) => (b.outstanding() < a.outstanding() ? b : a));
    if (!queued.size) queueMicrotask(() => { for (const [w, jobs] of queued) w.post(jobs); queued.clear(); });
    return new Promise<void>((resolve, reject) => {
      to.track(id, { resolve, reject });
      const jobs = queued.get(to) ?? [];
      jobs.push({ ...job, id });
      queued.set(to, jobs);
    });
  };
  return {
    mode: 'worker',
    // A key of its own 32 bytes: a Buffer from Node's pool would clone the whole 8 KiB pool slab per message.
    write: (j) => send({ device: { ...j, key: new Uint8Array(j.key) } }),
    writeEscrow: (j) => send({ escrow: j }),
    async close() { await Promise.all(workers.map((w) => w.worker.terminate())); },
  };
}
