// Keys waiting for their first-use rotation (factory-set and TOFU devices). The rotation needs the key the
// device holds now: C2's SetIDKey is sealed with it, and opening that command is how e4ops learns the new
// key C2 chose (C2's API never returns it) so it can escrow it. These keys are kept age-encrypted to a key
// pair of the first-use watcher (first-use/identity.txt, 0600, next to the inventory), never to the escrow
// recipients, and each is deleted as soon as its device is rotated: a stolen watcher identity opens only
// keys that are about to stop working.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ageDecrypt, ageEncrypt } from '../lib/age.ts';
import { KEY_LEN } from '../lib/e4/ids.ts';
import { writePrivateFile } from './device-bundle.ts';
import type { FleetInventory } from './provisioning-inventory.ts';

export const FIRST_USE_DIR = 'first-use';

function dirOf(inv: FleetInventory): string {
  return path.join(inv.baseDir, FIRST_USE_DIR);
}

/** The watcher's age key pair, created on first need. Returns its identity file and public key. */
export function ensureFirstUseKeyPair(inv: FleetInventory): { identityFile: string; publicKey: string } {
  const dir = dirOf(inv);
  const identityFile = path.join(dir, 'identity.txt');
  if (!fs.existsSync(identityFile)) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const tmp = `${identityFile}.tmp-${process.pid}`;
    fs.rmSync(tmp, { force: true });
    execFileSync('age-keygen', ['-o', tmp], { stdio: ['ignore', 'ignore', 'pipe'] });
    fs.chmodSync(tmp, 0o600);
    fs.renameSync(tmp, identityFile);
  }
  const m = /^# public key: (age1\S+)$/m.exec(fs.readFileSync(identityFile, 'utf8'));
  if (!m) throw new Error(`${identityFile} is not an age-keygen identity file (no "# public key:" line)`);
  return { identityFile, publicKey: m[1] };
}

export const firstUseKeyFile = (inv: FleetInventory, name: string) => path.join(dirOf(inv), `${name}.key.age`);

export async function storeFirstUseKey(inv: FleetInventory, name: string, key: Uint8Array): Promise<void> {
  const { publicKey } = ensureFirstUseKeyPair(inv);
  await writePrivateFile(firstUseKeyFile(inv, name), await ageEncrypt(key, [publicKey]));
}

export function hasFirstUseKey(inv: FleetInventory, name: string): boolean {
  return fs.existsSync(firstUseKeyFile(inv, name));
}

export async function readFirstUseKey(inv: FleetInventory, name: string): Promise<Buffer> {
  const file = firstUseKeyFile(inv, name);
  if (!fs.existsSync(file)) throw new Error(`no first-use key for ${name} (${file} missing): it was rotated already, or provisioned elsewhere`);
  const key = await ageDecrypt(fs.readFileSync(file), ensureFirstUseKeyPair(inv).identityFile);
  if (key.length !== KEY_LEN) throw new Error(`${file} holds ${key.length} bytes, expected ${KEY_LEN}`);
  return key;
}

export function dropFirstUseKey(inv: FleetInventory, name: string): void {
  fs.rmSync(firstUseKeyFile(inv, name), { force: true });
}
