// The fleet inventory: a YAML file kept outside C2's database that says which clients and links
// should exist. After a restore from an older backup, the resync re-creates what the database lacks.
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { compileSchemaValidator } from '../json-schema.ts';
import inventorySchema from './inventory-schema.json' with { type: 'json' };

export interface InventoryClient {
  name: string;
  /** The device's MQTT client id, when it is not its name (presence notices name client ids). */
  mqttClientId?: string;
  keyFile?: string;
  topics?: string[];
  lastSeen?: string;
  identityKeyRotatedAt?: string;
  /** age-encrypted JSON object name → hex identity key holding this client's current key (e4ops provision), relative to the inventory file. */
  escrowedKeyFile?: string;
  provisioning?: InventoryProvisioning;
}

/** What e4ops provision recorded about a device (inventory-schema.json: clients[].provisioning). */
export interface InventoryProvisioning {
  method: 'prekeyed' | 'factory' | 'tofu';
  state: 'registered' | 'waitingForFirstUse' | 'rotated';
  rotateOnFirstUse?: boolean;
  serial?: string;
  provisionedAt: string;
  topicKeysDeliveredAt?: string;
}

export interface FleetInventory {
  version: 1;
  cryptoMode: 'symkey' | 'pubkey';
  topics?: string[];
  escrowRecipients?: string[];
  clients: InventoryClient[];
  /** Directory keyFile paths are relative to. */
  baseDir: string;
}

export class InventoryError extends Error {}

const inventoryValidator = compileSchemaValidator<Omit<FleetInventory, 'baseDir'>>(inventorySchema);

/** Parse and validate inventory YAML text (errors name the file and the field). */
/**
 * JSON is YAML too, and inventories e4ops writes are in that form: JSON.parse reads 10,000 clients in
 * milliseconds where the YAML parser takes seconds. Anything else goes to the YAML parser.
 */
function parseJsonOrYaml(text: string): unknown {
  if (/^\s*\{/.test(text)) {
    try { return JSON.parse(text); } catch { /* a YAML flow mapping, not JSON */ }
  }
  return YAML.parse(text);
}

export function parseInventory(text: string, file = 'inventory', baseDir = '.'): FleetInventory {
  let doc: unknown;
  try {
    doc = parseJsonOrYaml(text);
  } catch (e) {
    throw new InventoryError(`inventory ${file} is not valid YAML: ${(e as Error).message}`);
  }
  const errs = inventoryValidator.errors(doc);
  if (errs) {
    throw new InventoryError(`inventory ${file} does not match lib/fleet-inventory/inventory-schema.json: ${errs}`);
  }
  const inv = doc as Omit<FleetInventory, 'baseDir'>;
  const seen = new Set<string>();
  for (const c of inv.clients) {
    if (seen.has(c.name)) throw new InventoryError(`inventory ${file}: client "${c.name}" is listed twice; keep one entry per client`);
    seen.add(c.name);
  }
  return { ...inv, baseDir };
}

export function loadInventory(file: string): FleetInventory {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new InventoryError(`cannot read inventory ${file}: ${(e as Error).message}`);
  }
  return parseInventory(text, file, path.dirname(path.resolve(file)));
}

/** Every topic the inventory mentions (declared or linked), in first-seen order. */
export function inventoryTopics(inv: FleetInventory): string[] {
  const out = new Set<string>(inv.topics ?? []);
  for (const c of inv.clients) for (const t of c.topics ?? []) out.add(t);
  return [...out];
}

/** Read a client's key file: 64 hex characters (whitespace ignored) or 32 raw bytes. */
export function readInventoryKey(inv: FleetInventory, client: InventoryClient): Buffer | undefined {
  if (!client.keyFile) return undefined;
  const file = path.resolve(inv.baseDir, client.keyFile);
  let raw: Buffer;
  try {
    raw = fs.readFileSync(file);
  } catch (e) {
    throw new InventoryError(`inventory client "${client.name}": cannot read keyFile ${file}: ${(e as Error).message}`);
  }
  const text = raw.toString('utf8').trim();
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, 'hex');
  if (raw.length === 32) return raw;
  throw new InventoryError(`inventory client "${client.name}": keyFile ${file} must hold 32 raw bytes or 64 hex characters`);
}

/** Write an inventory (used by tests and by operators exporting one from a healthy C2). */
export function renderInventory(inv: Omit<FleetInventory, 'baseDir'> & { baseDir?: string }): string {
  const { baseDir: _b, ...doc } = inv;
  return YAML.stringify(doc);
}
