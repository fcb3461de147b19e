// The fleet inventory as provisioning keeps it: the same file and schema the resync reads
// (lib/fleet-inventory/inventory-schema.json), with each device's provisioning state and its escrowed
// identity key: an age file next to the inventory, to the inventory's escrowRecipients, holding a JSON
// object name → hex key. `provision new`/`import` write one such file per group of devices
// (escrow/batch-*.keys.age: one age encryption per group, not per device); a first-use rotation writes
// escrow/NAME.key.age for the one device. Either way the device's key is under its own name.
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { loadInventory, parseInventory, type FleetInventory, type InventoryClient, type InventoryProvisioning } from '../lib/fleet-inventory/fleet-inventory.ts';
import { ageDecrypt, ageEncrypt, checkAgeRecipient } from '../lib/age.ts';
import { KEY_LEN } from '../lib/e4/ids.ts';
import { writePrivateFile } from './device-bundle.ts';
import { escrowDocument } from './device-files.ts';
import { ProvisionInputError } from './provisioning-input.ts';

export type { FleetInventory, InventoryClient, InventoryProvisioning };

export const ESCROW_DIR = 'escrow';
const fsyncAsync = promisify(fs.fsync);
const escrowDirsMade = new Set<string>();

/** The inventory at `file`, or a new empty one when the file does not exist yet. */
export function openProvisioningInventory(file: string): FleetInventory {
  if (!fs.existsSync(file)) {
    return { version: 1, cryptoMode: 'symkey', clients: [], baseDir: path.dirname(path.resolve(file)) };
  }
  try {
    return loadInventory(file);
  } catch (e) {
    throw new ProvisionInputError(`--inventory ${file}: ${(e as Error).message}`);
  }
}

/**
 * Write atomically (a kill never leaves half an inventory) and durably (flushed before the rename: a
 * checkpoint is what a later run trusts once the run's journal is gone). The final save re-validates
 * against the schema (never write what the resync would refuse); checkpoints during a long run skip that
 * second parse. The flush runs on the thread pool: a run's C2 lanes are served meanwhile.
 */
export async function saveProvisioningInventory(file: string, inv: FleetInventory, opts: { checkpoint?: boolean } = {}): Promise<void> {
  const text = renderProvisioningInventory(inv);
  if (!opts.checkpoint) parseInventory(text, file);
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeFileSync(fd, text);
    await fsyncAsync(fd);
  } finally { fs.closeSync(fd); }
  fs.renameSync(tmp, file);
}

/**
 * The inventory in YAML's JSON form (a YAML file every YAML reader, the resync's included, reads): the
 * yaml package needs seconds per save at 10,000 devices, JSON.stringify milliseconds.
 */
export function renderProvisioningInventory(inv: FleetInventory): string {
  const { baseDir: _b, ...doc } = inv;
  return `${JSON.stringify(doc, null, 2)}\n`;
}

/** Which version of a file this is: a rename of another file over it changes its inode and ctime. */
function fileVersion(file: string): string | undefined {
  try {
    const st = fs.statSync(file, { bigint: true });
    return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
  } catch { return undefined; }
}

// The inventory this process last wrote to each file, with the file's version right after: when the file
// is still that version nobody has written since, and a checkpoint need not read and validate 4 MB again
// (~60 % of a checkpoint's cost at 10,000 devices).
const lastWritten = new Map<string, { version: string; inv: FleetInventory }>();

/**
 * Read-modify-write under `<file>.lock`: `provision new` and a long-running `provision first-use` share
 * one inventory, and each must add its own changes to what is on disk now, never write back a stale copy.
 * A lock left by a process that no longer runs is taken over. The inventory returned is the one written;
 * change it only through another updateInventoryFile (this process reuses it while the file is unchanged).
 */
export async function updateInventoryFile(file: string, change: (fresh: FleetInventory) => void, opts: { checkpoint?: boolean; waitMs?: number } = {}): Promise<FleetInventory> {
  const lock = `${file}.lock`;
  const abs = path.resolve(file);
  fs.mkdirSync(path.dirname(abs), { recursive: true });
  const deadline = Date.now() + (opts.waitMs ?? 60_000);
  for (;;) {
    try {
      fs.writeFileSync(lock, String(process.pid), { flag: 'wx' });
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const owner = Number(fs.readFileSync(lock, 'utf8').trim() || 0);
      let alive = owner > 0;
      try { if (alive) process.kill(owner, 0); } catch { alive = false; }
      if (!alive) { fs.rmSync(lock, { force: true }); continue; }
      if (Date.now() > deadline) throw new ProvisionInputError(`${lock} is held by pid ${owner} for over ${Math.round((opts.waitMs ?? 60_000) / 1000)} s: is another e4ops provision stuck?`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  try {
    const mine = lastWritten.get(abs);
    const fresh = mine && mine.version === fileVersion(file) ? mine.inv : openProvisioningInventory(file);
    lastWritten.delete(abs); // until the write below has landed, the file is not known
    change(fresh);
    await saveProvisioningInventory(file, fresh, opts);
    const version = fileVersion(file);
    if (version) lastWritten.set(abs, { version, inv: fresh });
    return fresh;
  } finally {
    fs.rmSync(lock, { force: true });
  }
}

/** Recipients for escrow: given ones must match those already recorded (one model per inventory). */
export function settleEscrowRecipients(inv: FleetInventory, given: readonly string[]): string[] {
  const checked = given.map((r, i) => {
    try { return checkAgeRecipient(r, `--escrow-recipient #${i + 1}`); } catch (e) { throw new ProvisionInputError((e as Error).message); }
  });
  const recorded = inv.escrowRecipients ?? [];
  if (!checked.length) {
    if (!recorded.length) throw new ProvisionInputError('no escrow recipients: give --escrow-recipient age1... (repeatable; the public key of whoever may recover device keys, kept off this host)');
    return recorded;
  }
  if (recorded.length && [...checked].sort().join() !== [...recorded].sort().join()) {
    throw new ProvisionInputError(`--escrow-recipient differs from the inventory's escrowRecipients (${recorded.length} recorded): one inventory has one set of recipients; omit the flag to use them`);
  }
  inv.escrowRecipients = [...new Set(checked)];
  return inv.escrowRecipients;
}

function escrowFile(inv: FleetInventory, file: string): { rel: string; abs: string } {
  const rel = path.join(ESCROW_DIR, file);
  const abs = path.join(inv.baseDir, rel);
  if (!escrowDirsMade.has(path.dirname(abs))) {
    fs.mkdirSync(path.dirname(abs), { recursive: true, mode: 0o700 });
    escrowDirsMade.add(path.dirname(abs));
  }
  return { rel, abs };
}

/** One device's escrow file (first-use rotations): `rel` for the inventory, `abs` to write (its folder made, 0700). */
export function escrowKeyPath(inv: FleetInventory, name: string): { rel: string; abs: string } {
  return escrowFile(inv, `${name}.key.age`);
}

/** The escrow file of one group of devices of a run; `run` tells runs apart (time and pid), `seq` the group. */
export function escrowBatchPath(inv: FleetInventory, run: string, seq: number): { rel: string; abs: string } {
  return escrowFile(inv, `batch-${run}-${String(seq).padStart(5, '0')}.keys.age`);
}

/** Encrypt a device's current identity key to the recipients; returns the path to record (relative to the inventory). */
export async function escrowIdentityKey(inv: FleetInventory, name: string, key: Uint8Array, recipients: readonly string[]): Promise<string> {
  if (key.length !== KEY_LEN) throw new Error(`identity key of ${name} must be ${KEY_LEN} bytes`);
  const { rel, abs } = escrowKeyPath(inv, name);
  await writePrivateFile(abs, await ageEncrypt(escrowDocument([[name, key]]), recipients));
  return rel;
}

/** Recover an escrowed key with an age identity (recovery, tests): the entry under the device's name. */
export async function readEscrowedKey(inv: FleetInventory, client: InventoryClient, identityFile: string): Promise<Buffer> {
  if (!client.escrowedKeyFile) throw new ProvisionInputError(`device ${client.name} has no escrowed key`);
  const file = path.resolve(inv.baseDir, client.escrowedKeyFile);
  const doc = JSON.parse((await ageDecrypt(fs.readFileSync(file), identityFile)).toString('utf8')) as Record<string, unknown>;
  const hex = doc[client.name];
  if (typeof hex !== 'string' || !/^[0-9a-f]+$/i.test(hex)) throw new Error(`${file} holds no key for ${client.name}`);
  const key = Buffer.from(hex, 'hex');
  if (key.length !== KEY_LEN) throw new Error(`escrowed key of ${client.name} has ${key.length} bytes, expected ${KEY_LEN}`);
  return key;
}

// name → position in inv.clients, so 10,000 look-ups stay linear.
const positions = new WeakMap<FleetInventory, Map<string, number>>();
function positionsOf(inv: FleetInventory): Map<string, number> {
  let m = positions.get(inv);
  if (!m || m.size !== inv.clients.length) {
    m = new Map(inv.clients.map((c, i) => [c.name, i]));
    positions.set(inv, m);
  }
  return m;
}

export function findClient(inv: FleetInventory, name: string): InventoryClient | undefined {
  const i = positionsOf(inv).get(name);
  return i === undefined ? undefined : inv.clients[i];
}

/** Replace or add a client entry, keeping the order devices were first recorded in. */
export function upsertClient(inv: FleetInventory, entry: InventoryClient): void {
  const pos = positionsOf(inv);
  const i = pos.get(entry.name);
  if (i !== undefined) inv.clients[i] = entry;
  else { pos.set(entry.name, inv.clients.length); inv.clients.push(entry); }
  for (const t of entry.topics ?? []) if (!(inv.topics ?? []).includes(t)) inv.topics = [...(inv.topics ?? []), t];
}
