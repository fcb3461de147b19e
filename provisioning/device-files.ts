// What provisioning writes before C2 hears of a device: per device its bundle (+ label) for the station
// and, for factory/TOFU keys, the first-use key; per group of devices one escrow file (one age encryption
// for the group: the age-encryption package costs ~2.5 ms of CPU per encryption, docs/develop/benchmarks.md).
// Written on the main thread, one device per macrotask (C2's responses to the lanes are read in between),
// with synchronous file calls (cheaper than fs.promises' thread-pool round trips). Worker threads were
// tried and cost more than they saved: ~1 s of CPU to start each (tsx, qrcode, age-encryption loaded again)
// and a structured clone per job, on a host whose cores C2 needs.
import fs from 'node:fs';
import { ageEncrypt } from '../lib/age.ts';
import { bundlePaths, buildDeviceBundle, labelText, renderLabel, writePrivateFileSync } from './device-bundle.ts';

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
 * package), ssh ones by the age CLI; the files themselves with synchronous calls.
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

/** What an escrow file holds before encryption: `{"NAME": "hex key", ...}` (jq picks one out). */
export function escrowDocument(entries: Iterable<readonly [string, Uint8Array | string]>): Buffer {
  const doc: Record<string, string> = {};
  for (const [name, key] of entries) doc[name] = typeof key === 'string' ? key : Buffer.from(key).toString('hex');
  return Buffer.from(`${JSON.stringify(doc)}\n`);
}

export async function writeEscrowBatch(j: EscrowBatchJob): Promise<void> {
  writePrivateFileSync(j.file, await ageEncrypt(escrowDocument(j.keys), j.recipients));
}

/** Where provision-new.ts hands the files of the devices it prepares. */
export interface DeviceFileWriter {
  /** Resolves once the device's files are all in place (renamed into their final names). */
  write(job: DeviceFilesJob): Promise<void>;
  /** Resolves once the group's escrow file is in place. */
  writeEscrow(job: EscrowBatchJob): Promise<void>;
}

/**
 * Jobs run one after another, each in a macrotask of its own: a group of devices never holds the event
 * loop for more than one device's files (immediates queued together would all run in one loop turn).
 */
export function openDeviceFileWriter(): DeviceFileWriter {
  let tail: Promise<unknown> = Promise.resolve();
  const queue = <T>(run: () => Promise<T>): Promise<T> => {
    const done = tail.then(() => new Promise<void>((resolve) => setImmediate(resolve))).then(run);
    tail = done.catch(() => undefined);
    return done;
  };
  return {
    write: (j) => queue(() => writeDeviceFiles(j)),
    writeEscrow: (j) => queue(() => writeEscrowBatch(j)),
  };
}
