// `provision new` and `provision import`: register devices with C2 before they are switched on, link
// their topics, write each device's bundle and label, escrow its key and record it in the fleet
// inventory. Runbook order: check C2 and the input (nothing registered on any refusal) → plan against
// the inventory and C2 (idempotent) → per device: bundle → escrow → journal → NewClient → links → inventory.
// Devices are prepared in groups of ESCROW_GROUP, a group ahead of the C2 lanes: the group's bundles and
// labels and its one escrow file are written (device-files.ts), then its `prepared` records; the journal (provision-journal.ts) makes a kill between checkpoints resumable.
// The topic keys C2 pushes now are lost for an offline device (one retained command per device):
// `provision first-use` delivers every topic key once the device is online.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { createLogger, type Logger } from '../lib/log.ts';
import { KEY_LEN } from '../lib/e4/ids.ts';
import { openDeviceFileWriter, type DeviceFileWriter } from './device-files.ts';
import { openProvisionJournal, readLeftOverJournals, type JournalRecord, type ProvisionJournal } from './provision-journal.ts';
import { ProvisionInputError, checkTopics, type FactoryKeyRow } from './provisioning-input.ts';
import type { ProvisioningC2 } from './provisioning-c2.ts';
import { ensureFirstUseKeyPair, firstUseKeyFile } from './first-use-keys.ts';
import {
  escrowBatchPath, findClient, openProvisioningInventory, settleEscrowRecipients, updateInventoryFile, upsertClient,
  type FleetInventory, type InventoryClient, type InventoryProvisioning,
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
  /** Devices a killed earlier run had started: finished from its journal, or provisioned again. */
  resumed?: { fromJournal: number; again: number };
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
export function planDevices(inv: FleetInventory, devices: DeviceToProvision[], inC2: Set<string>, force: boolean, unfinished: ReadonlySet<string> = new Set()): DevicePlan {
  const plan: DevicePlan = { create: [], unchanged: [], replace: new Set() };
  const refusedRotated: string[] = [];
  const foreign: string[] = [];
  for (const d of devices) {
    const known = findClient(inv, d.name);
    if (known?.provisioning?.state === 'rotated' && (force || unfinished.has(d.name))) { refusedRotated.push(d.name); continue; }
    // A killed run's own device (its journal says it was prepared): in C2 perhaps, key not final: provision it again.
    if (unfinished.has(d.name)) { if (known) plan.replace.add(d.name); plan.create.push(d); continue; }
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

/**
 * Devices per escrow file: one age encryption (~2.5 ms of CPU) per group instead of per device. A kill
 * leaves at most two groups prepared but not finished (re-provisioned by the next run).
 */
export const ESCROW_GROUP = 32;

interface RunContext {
  o: ProvisionOptions; inv: FleetInventory; escrowTo: string[]; writer: DeviceFileWriter; journal: ProvisionJournal; firstUseRecipient?: string;
  /** Tells this run's escrow files from other runs' (start time and pid). */
  run: string;
  groups: number;
}

/**
 * A group's files (bundles, labels, first-use keys, the one escrow file), then its `prepared` journal
 * records, before C2 hears of any of its devices: a key in C2 always has its bundle and its escrow, and a
 * kill after NewClient leaves a device the next run knows as its own.
 */
async function prepareGroup(c: RunContext, ds: readonly DeviceToProvision[]): Promise<PreparedDevice[]> {
  const { o } = c;
  const keys = ds.map((d) => d.key ?? crypto.randomBytes(KEY_LEN));
  // TOFU keys are not escrowed: the key that counts is the one the first-use rotation sets.
  const escrow = o.method === 'tofu' ? undefined : escrowBatchPath(c.inv, c.run, c.groups++);
  await Promise.all([
    ...ds.map((d, i) => c.writer.write({
      name: d.name, key: keys[i],
      ...(o.outDir ? { bundle: { dir: o.outDir, topics: o.topics, broker: o.broker ?? '', recipients: [...(o.bundleRecipients ?? [])] } } : {}),
      // Factory and TOFU keys are rotated when the device first connects: the watcher needs the key it holds now.
      ...(c.firstUseRecipient ? { firstUse: { file: firstUseKeyFile(c.inv, d.name), recipients: [c.firstUseRecipient] } } : {}),
    })),
    ...(escrow ? [c.writer.writeEscrow({ file: escrow.abs, recipients: c.escrowTo, keys: ds.map((d, i): [string, string] => [d.name, keys[i].toString('hex')]) })] : []),
  ]);
  await Promise.all(ds.map((d) => c.journal.append({ op: 'prepared', name: d.name })));
  return ds.map((d, i) => ({ d, key: keys[i], ...(escrow ? { escrowedKeyFile: escrow.rel } : {}) }));
}

/** NewClient, then one link per topic (each pushes the topic key), then the inventory entry. */
async function registerDevice(o: ProvisionOptions, inv: FleetInventory, p: PreparedDevice): Promise<InventoryClient> {
  await o.c2.newClient(p.d.name, p.key);
  for (const t of o.topics) await o.c2.linkClientTopic(p.d.name, t);
  const rotate = o.method !== 'prekeyed';
  const entry: InventoryClient = {
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
  };
  upsertClient(inv, entry);
  return entry;
}

/**
 * `concurrency` lanes make the C2 calls, as a bare loop would; devices are prepared a group at a time,
 * the next group as soon as a lane enters the current one, so a lane never waits for files once the
 * pipeline is full.
 */
async function runLanes(items: readonly DeviceToProvision[], concurrency: number, groupSize: number, prepare: (ds: readonly DeviceToProvision[]) => Promise<PreparedDevice[]>,
  register: (p: PreparedDevice) => Promise<void>, signal?: AbortSignal): Promise<void> {
  const groups = new Map<number, Promise<PreparedDevice[]>>();
  const start = (g: number) => {
    if (groups.has(g) || g * groupSize >= items.length || signal?.aborted) return;
    const group = prepare(items.slice(g * groupSize, (g + 1) * groupSize));
    group.catch(() => undefined); // reported when a lane awaits it
    groups.set(g, group);
  };
  let next = 0;
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, items.length)) }, async () => {
    while (next < items.length && !signal?.aborted) {
      const i = next++;
      const g = Math.floor(i / groupSize);
      start(g);
      start(g + 1);
      const p = (await groups.get(g)!)[i - g * groupSize];
      if (signal?.aborted) return;
      await register(p);
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
  // What killed runs left: finished devices go into the inventory now; unfinished ones are ours to redo.
  const left = readLeftOverJournals(o.inventoryFile);
  if (left.done.length && !o.dryRun) await updateInventoryFile(o.inventoryFile, (fresh) => { for (const e of left.done) upsertClient(fresh, e); });
  const inv = openProvisioningInventory(o.inventoryFile);
  if (o.dryRun) for (const e of left.done) upsertClient(inv, e);
  const escrowTo = settleEscrowRecipients(inv, o.escrowRecipients ?? []);
  const unfinished = new Set(left.unfinished);
  const plan = planDevices(inv, o.devices, await o.c2.registeredAmong(o.devices.map((d) => d.name)), o.force ?? false, unfinished);
  const report: ProvisionReport = {
    provisioned: [], unchanged: plan.unchanged, replaced: [], createdTopics: toCreate,
    ...(o.outDir ? { bundleDir: o.outDir } : {}), inventoryFile: o.inventoryFile, dryRun: !!o.dryRun, seconds: 0,
    ...(left.files.length ? { resumed: { fromJournal: left.done.length, again: plan.create.filter((d) => unfinished.has(d.name)).length } } : {}),
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
  const journal = openProvisionJournal(o.inventoryFile);
  // Unfinished devices of dead runs that this run does not redo stay in a journal: a later run still knows them.
  const carried: JournalRecord[] = left.unfinished.filter((n) => !plan.create.some((d) => d.name === n)).map((name) => ({ op: 'prepared', name }));
  await Promise.all(carried.map((r) => journal.append(r)));
  for (const f of left.files) fs.rmSync(f, { force: true });
  const preparedHere = new Set<string>();
  const writer = openDeviceFileWriter();
  const ctx: RunContext = {
    o: { ...o, topics }, inv, escrowTo, writer, journal,
    ...(o.method !== 'prekeyed' ? { firstUseRecipient: ensureFirstUseKeyPair(inv).publicKey } : {}),
    run: `${new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '')}-${process.pid}`,
    groups: 0,
  };
  let runError: unknown;
  try {
    const concurrency = o.concurrency ?? 4;
    await runLanes(plan.create, concurrency, ESCROW_GROUP, async (ds) => {
      const ps = await prepareGroup(ctx, ds);
      for (const d of ds) preparedHere.add(d.name);
      return ps;
    }, async (p) => {
      const entry = await registerDevice(ctx.o, inv, p);
      void journal.append({ op: 'done', entry }, { durable: false }); // a failed write is journal.error, thrown below
      preparedHere.delete(p.d.name);
      unsaved.push(p.d.name);
      (plan.replace.has(p.d.name) ? report.replaced : report.provisioned).push(p.d.name);
      o.onProgress?.(report.provisioned.length + report.replaced.length, plan.create.length);
      // A checkpoint every 5 s, or less often when the inventory is large (never over ~2% of the run): the
      // journal covers a kill in between; checkpoints let a running first-use watcher see new devices.
      if (Date.now() - lastSave > Math.max(5000, 50 * saveMs)) {
        lastSave = Date.now();
        const t = Date.now();
        await save(true);
        saveMs = Date.now() - t;
        lastSave = Date.now();
      }
    }, o.signal);
  } catch (e) {
    runError = e;
  }
  await save(false);
  // Once the inventory holds every finished device, the journal is needed only for unfinished ones.
  await journal.close([...carried, ...[...preparedHere].map((name): JournalRecord => ({ op: 'prepared', name }))]);
  if (runError) throw runError;
  if (journal.error) throw journal.error;
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
