// `provision new` and `provision import`: register devices with C2 before they are switched on, link
// their topics, write each device's bundle and label, escrow its key and record it in the fleet
// inventory. Runbook order: check C2 and the input (nothing registered on any refusal) → plan against
// the inventory and C2 (idempotent) → per device: bundle → escrow → NewClient → links → inventory.
// The topic keys C2 pushes now are lost for an offline device (one retained command per device):
// `provision first-use` delivers every topic key once the device is online.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { createLogger, type Logger } from '../lib/log.ts';
import { KEY_LEN } from '../lib/e4/ids.ts';
import { buildDeviceBundle, writeDeviceBundle } from './device-bundle.ts';
import { ProvisionInputError, checkTopics, type FactoryKeyRow } from './provisioning-input.ts';
import type { ProvisioningC2 } from './provisioning-c2.ts';
import { storeFirstUseKey } from './first-use-keys.ts';
import {
  escrowIdentityKey, findClient, openProvisioningInventory, settleEscrowRecipients, updateInventoryFile, upsertClient,
  type FleetInventory, type InventoryProvisioning,
} from './provisioning-inventory.ts';

/** A safety precondition is not met (exit 9): nothing was registered. */
export class ProvisionRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProvisionRefusedError';
  }
}

export type ProvisionMethod = InventoryProvisioning['method'];

export interface DeviceToProvision {
  name: string;
  /** Factory-set key; absent → a fresh random key is generated here. */
  key?: Buffer;
  serial?: string;
}

export interface ProvisionOptions {
  c2: ProvisioningC2;
  devices: DeviceToProvision[];
  method: ProvisionMethod;
  topics: string[];
  inventoryFile: string;
  /** Bundles and labels go here (not for factory-keyed devices: their key is already on them). */
  outDir?: string;
  /** Broker address written into bundles (required with outDir). */
  broker?: string;
  cryptoMode?: 'symkey' | 'pubkey';
  escrowRecipients?: string[];
  bundleRecipients?: string[];
  /** Create topics C2 does not know yet (otherwise an unknown topic is refused). */
  createTopics?: boolean;
  /** Overwrite the key of devices already provisioned or registered (never of rotated ones). */
  force?: boolean;
  concurrency?: number;
  dryRun?: boolean;
  signal?: AbortSignal;
  logger?: Logger;
  onProgress?: (done: number, total: number) => void;
}

export interface ProvisionReport {
  provisioned: string[];
  /** Already provisioned: left as they are. */
  unchanged: string[];
  /** Re-keyed because of --force. */
  replaced: string[];
  createdTopics: string[];
  bundleDir?: string;
  inventoryFile: string;
  dryRun: boolean;
  seconds: number;
}

/** C2 must serve the crypto mode asked for; the 2019 build has symkey only. */
export async function checkCryptoMode(c2: ProvisioningC2, wanted: 'symkey' | 'pubkey'): Promise<void> {
  const mode = await c2.cryptoMode();
  if (wanted === 'pubkey' && mode === 'symkey-only') {
    throw new ProvisionRefusedError(`C2 at ${c2.endpoint} has no pubkey mode (this C2 build serves no /e4/crypto-mode: it is symkey only); provision with --crypto-mode symkey, or upgrade C2 to a build with pubkey mode`);
  }
  if (wanted === 'pubkey') {
    throw new ProvisionRefusedError(`C2 at ${c2.endpoint} runs in ${mode} mode; pubkey provisioning (Ed25519 key pairs) is not available in this e4ops version: no C2 build with pubkey mode could be tested`);
  }
  if (mode === 'pubkey') throw new ProvisionRefusedError(`C2 at ${c2.endpoint} runs in pubkey mode, not symkey: give --crypto-mode pubkey`);
}

/** Every topic must exist in C2 unless createTopics; returns the ones to create. */
export async function checkTopicsKnown(c2: ProvisioningC2, topics: string[], createTopics: boolean): Promise<string[]> {
  const known = new Set(await c2.topics());
  const missing = topics.filter((t) => !known.has(t));
  if (missing.length && !createTopics) {
    throw new ProvisionInputError(`unknown topic${missing.length > 1 ? 's' : ''} ${missing.map((t) => `"${t}"`).join(', ')}: C2 at ${c2.endpoint} has no such topic; check the spelling, or give --create-topics to create it`);
  }
  return missing;
}

interface DevicePlan { create: DeviceToProvision[]; unchanged: string[]; replace: Set<string> }

/** Idempotency: a device the inventory already records is left alone unless --force (refused once rotated). */
export function planDevices(inv: FleetInventory, devices: DeviceToProvision[], inC2: Set<string>, force: boolean): DevicePlan {
  const plan: DevicePlan = { create: [], unchanged: [], replace: new Set() };
  const refusedRotated: string[] = [];
  const foreign: string[] = [];
  for (const d of devices) {
    const known = findClient(inv, d.name);
    if (known?.provisioning?.state === 'rotated' && force) { refusedRotated.push(d.name); continue; }
    if (known?.provisioning && !force) { plan.unchanged.push(d.name); continue; }
    if ((known || inC2.has(d.name)) && !force) { foreign.push(d.name); continue; }
    if (known || inC2.has(d.name)) plan.replace.add(d.name);
    plan.create.push(d);
  }
  const list = (names: string[]) => names.slice(0, 5).join(', ') + (names.length > 5 ? ` and ${names.length - 5} more` : '');
  if (refusedRotated.length) {
    throw new ProvisionRefusedError(`--force refused for ${list(refusedRotated)}: already rotated on first use; its key lives on the device only (escrowed), and overwriting it in C2 would cut the device off`);
  }
  if (foreign.length) {
    throw new ProvisionRefusedError(`${list(foreign)}: already registered in C2 but not provisioned by this inventory; NewClient would overwrite its key. Give --force to re-key it (the device then needs its new bundle)`);
  }
  return plan;
}

interface PreparedDevice { d: DeviceToProvision; key: Buffer; escrowedKeyFile?: string }

/** A device's files, before C2 hears of it: a key in C2 always has its bundle and its escrow. */
async function prepareDevice(o: ProvisionOptions, inv: FleetInventory, escrowTo: string[], d: DeviceToProvision): Promise<PreparedDevice> {
  const key = d.key ?? crypto.randomBytes(KEY_LEN);
  if (o.outDir) await writeDeviceBundle(o.outDir, buildDeviceBundle(d.name, key, o.topics, o.broker ?? ''), o.bundleRecipients ?? []);
  // TOFU keys are not escrowed: the key that counts is the one the first-use rotation sets.
  const escrowedKeyFile = o.method === 'tofu' ? undefined : await escrowIdentityKey(inv, d.name, key, escrowTo);
  // Factory and TOFU keys are rotated when the device first connects: the watcher needs the key it holds now.
  if (o.method !== 'prekeyed') await storeFirstUseKey(inv, d.name, key);
  return { d, key, ...(escrowedKeyFile ? { escrowedKeyFile } : {}) };
}

/** NewClient, then one link per topic (each pushes the topic key), then the inventory entry. */
async function registerDevice(o: ProvisionOptions, inv: FleetInventory, p: PreparedDevice): Promise<void> {
  await o.c2.newClient(p.d.name, p.key);
  for (const t of o.topics) await o.c2.linkClientTopic(p.d.name, t);
  const rotate = o.method !== 'prekeyed';
  upsertClient(inv, {
    name: p.d.name,
    topics: [...o.topics],
    ...(p.escrowedKeyFile ? { escrowedKeyFile: p.escrowedKeyFile } : {}),
    provisioning: {
      method: o.method,
      state: rotate ? 'waitingForFirstUse' : 'registered',
      rotateOnFirstUse: rotate,
      ...(p.d.serial ? { serial: p.d.serial } : {}),
      provisionedAt: new Date().toISOString(),
    },
  });
}

/**
 * `concurrency` lanes; each prepares its next device's files while its current device's API calls are in
 * flight, so C2 always has `concurrency` requests to work on (file work never idles a lane).
 */
async function runLanes(items: readonly DeviceToProvision[], concurrency: number, prepare: (d: DeviceToProvision) => Promise<PreparedDevice>,
  register: (p: PreparedDevice) => Promise<void>, signal?: AbortSignal): Promise<void> {
  let next = 0;
  const take = () => (next < items.length && !signal?.aborted ? items[next++] : undefined);
  const later = (d: DeviceToProvision | undefined) => (d ? new Promise<void>((r) => setImmediate(r)).then(() => prepare(d)) : undefined);
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, items.length)) }, async () => {
    let prepared = later(take());
    while (prepared) {
      const registering = register(await prepared);
      prepared = later(take());
      prepared?.catch(() => undefined); // reported when awaited
      await registering;
    }
  }));
}

export async function provisionDevices(o: ProvisionOptions): Promise<ProvisionReport> {
  const started = Date.now();
  const log = o.logger ?? createLogger({ component: 'provision' });
  const topics = checkTopics(o.topics);
  if (o.outDir && !o.broker) throw new ProvisionInputError('bundles need the broker address devices connect to: give --broker URL');
  await checkCryptoMode(o.c2, o.cryptoMode ?? 'symkey');
  const toCreate = await checkTopicsKnown(o.c2, topics, o.createTopics ?? false);
  const inv = openProvisioningInventory(o.inventoryFile);
  const escrowTo = settleEscrowRecipients(inv, o.escrowRecipients ?? []);
  const plan = planDevices(inv, o.devices, new Set(await o.c2.clients()), o.force ?? false);
  const report: ProvisionReport = {
    provisioned: [], unchanged: plan.unchanged, replaced: [], createdTopics: toCreate,
    ...(o.outDir ? { bundleDir: o.outDir } : {}), inventoryFile: o.inventoryFile, dryRun: !!o.dryRun, seconds: 0,
  };
  log.info('provision.plan', { method: o.method, devices: plan.create.length, unchanged: plan.unchanged.length, replace: plan.replace.size, createTopics: toCreate, c2: o.c2.endpoint });
  if (o.dryRun) {
    report.provisioned = plan.create.map((d) => d.name);
    report.replaced = [...plan.replace];
    return finish(report, started);
  }
  if (o.outDir) fs.mkdirSync(o.outDir, { recursive: true, mode: 0o700 });
  fs.mkdirSync(path.dirname(path.resolve(o.inventoryFile)), { recursive: true });
  for (const t of toCreate) await o.c2.newTopic(t);
  let lastSave = Date.now();
  let saveMs = 0;
  let unsaved: string[] = [];
  // Only this run's devices go into the file as it is now (a first-use watcher may have written since).
  let saving: Promise<unknown> = Promise.resolve();
  const save = (checkpoint: boolean) => {
    const names = unsaved;
    unsaved = [];
    saving = saving.catch(() => undefined).then(() => updateInventoryFile(o.inventoryFile, (fresh) => {
      fresh.escrowRecipients ??= inv.escrowRecipients;
      for (const n of names) upsertClient(fresh, findClient(inv, n)!);
    }, { checkpoint }));
    return saving;
  };
  try {
    await runLanes(plan.create, o.concurrency ?? 4, (d) => prepareDevice({ ...o, topics }, inv, escrowTo, d), async (p) => {
      await registerDevice({ ...o, topics }, inv, p);
      unsaved.push(p.d.name);
      (plan.replace.has(p.d.name) ? report.replaced : report.provisioned).push(p.d.name);
      o.onProgress?.(report.provisioned.length + report.replaced.length, plan.create.length);
      // A checkpoint every 2 s, or less often when the inventory is large: never more than ~5% of the run.
      if (Date.now() - lastSave > Math.max(2000, 20 * saveMs)) {
        lastSave = Date.now();
        const t = Date.now();
        await save(true);
        saveMs = Date.now() - t;
        lastSave = Date.now();
      }
    }, o.signal);
  } finally {
    await save(false);
  }
  log.info('provision.done', { provisioned: report.provisioned.length, replaced: report.replaced.length, unchanged: report.unchanged.length });
  return finish(report, started);
}

function finish(r: ProvisionReport, started: number): ProvisionReport {
  r.seconds = (Date.now() - started) / 1000;
  return r;
}

/** Factory-keyed devices from the parsed CSV. */
export function devicesFromFactoryRows(rows: FactoryKeyRow[]): DeviceToProvision[] {
  return rows.map((r) => ({ name: r.name, key: r.key, ...(r.serial ? { serial: r.serial } : {}) }));
}
