// age (the `age` CLI) for small secrets: recipient checks and one-shot encrypt/decrypt of a buffer.
// Shared by backups (recipients of backup sets) and provisioning (bundles, escrowed identity keys):
// the same recipients model everywhere, public keys only on the machine that encrypts.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';

export const AGE_PUBLIC_KEY = /^age1[02-9ac-hj-np-z]{58}$/;
const SSH_PUBLIC_KEY = /^(ssh-ed25519|ssh-rsa) [A-Za-z0-9+/=]+( .*)?$/;

export class AgeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AgeError';
  }
}

/**
 * One recipient as written by an operator: an age1... or ssh public key. A secret key given by mistake is
 * refused with the fix (the machine that encrypts must never hold one). `where` names the flag or line.
 */
export function checkAgeRecipient(value: string, where: string): string {
  const v = value.trim();
  if (/^AGE-SECRET-KEY-/i.test(v)) {
    throw new AgeError(`${where} is an age SECRET key: give its public key instead (age-keygen -y FILE) and keep the secret key off this host`);
  }
  if (!AGE_PUBLIC_KEY.test(v) && !SSH_PUBLIC_KEY.test(v)) {
    throw new AgeError(`${where} is not an age public key (age1...) nor an ssh-ed25519/ssh-rsa public key: ${v.slice(0, 20)}...`);
  }
  return v;
}

function runAge(args: string[], input: Buffer, what: string, ageBin = 'age'): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn(ageBin, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => { err = (err + d.toString()).slice(-2000); });
    child.once('error', (e) => reject(new AgeError(`${what}: cannot run ${ageBin}: ${e.message} (install the age package)`)));
    child.once('close', (code) => {
      if (code === 0) resolve(Buffer.concat(out));
      else reject(new AgeError(`${what} failed (exit ${code}): ${err.trim().split('\n').slice(-2).join(' | ') || 'no message'}`));
    });
    child.stdin.on('error', () => undefined); // reported through the exit code
    child.stdin.end(input);
  });
}

/**
 * Encrypt `data` to every recipient (binary age format). age1 (X25519) recipients are encrypted in
 * process with node:crypto (ageEncryptX25519: thousands of small keys per run would cost one CLI start
 * each, and the age-encryption package's JavaScript X25519 about 2.5 ms of CPU each); ssh recipients go
 * through the age CLI. Tests decrypt both with the real `age`.
 */
export async function ageEncrypt(data: Uint8Array, recipients: readonly string[], opts: { ageBin?: string; cli?: boolean } = {}): Promise<Buffer> {
  if (!recipients.length) throw new AgeError('age encrypt: no recipients');
  if (!opts.cli && recipients.every((r) => AGE_PUBLIC_KEY.test(r))) return ageEncryptX25519(data, recipients);
  return runAge(['--encrypt', ...recipients.flatMap((r) => ['-r', r])], Buffer.from(data), 'age --encrypt', opts.ageBin);
}

/** An age1... recipient with its bech32 checksum verified (a typo must not escrow to nobody). */
export function decodeAgeRecipient(recipient: string): string {
  x25519RecipientKey(recipient);
  return recipient;
}

// --- age v1 (age-encryption.org/v1) X25519 recipients with node:crypto, written from the format spec ---

const BECH32 = 'qpzry9x8gf2tvdw0s3jn54khce6mua7l';
const X25519_SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');
const recipientKeys = new Map<string, { key: crypto.KeyObject; raw: Buffer }>();

function bech32Polymod(values: number[]): number {
  const gen = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];
  let chk = 1;
  for (const v of values) {
    const top = chk >>> 25;
    chk = ((chk & 0x1ffffff) << 5) ^ v;
    for (let i = 0; i < 5; i++) if ((top >>> i) & 1) chk ^= gen[i];
  }
  return chk >>> 0;
}

/** The 32-byte X25519 public key of an age1... recipient, its bech32 checksum verified. */
function x25519RecipientKey(recipient: string): { key: crypto.KeyObject; raw: Buffer } {
  const known = recipientKeys.get(recipient);
  if (known) return known;
  const r = recipient.toLowerCase();
  const sep = r.lastIndexOf('1');
  const hrp = r.slice(0, sep);
  const data = [...r.slice(sep + 1)].map((c) => BECH32.indexOf(c));
  const expanded = [...hrp].map((c) => c.charCodeAt(0) >> 5).concat(0, [...hrp].map((c) => c.charCodeAt(0) & 31));
  if (hrp !== 'age' || data.some((v) => v < 0) || bech32Polymod([...expanded, ...data]) !== 1) {
    throw new AgeError(`age recipient ${recipient.slice(0, 12)}...: bad checksum (mistyped?)`);
  }
  const bytes: number[] = [];
  let acc = 0;
  let bits = 0;
  for (const v of data.slice(0, -6)) {
    acc = (acc << 5) | v;
    bits += 5;
    if (bits >= 8) { bits -= 8; bytes.push((acc >> bits) & 0xff); }
  }
  if (bytes.length !== 32) throw new AgeError(`age recipient ${recipient.slice(0, 12)}...: not an X25519 key (${bytes.length} bytes)`);
  const raw = Buffer.from(bytes);
  const entry = { key: crypto.createPublicKey({ key: Buffer.concat([X25519_SPKI_PREFIX, raw]), format: 'der', type: 'spki' }), raw };
  recipientKeys.set(recipient, entry);
  return entry;
}

const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64').replace(/=+$/, '');
const hkdf = (ikm: Uint8Array, salt: Uint8Array, info: string) => Buffer.from(crypto.hkdfSync('sha256', ikm, salt, info, 32));

function chachaSeal(key: Uint8Array, nonce: Uint8Array, plain: Uint8Array): Buffer {
  const c = crypto.createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
  return Buffer.concat([c.update(plain), c.final(), c.getAuthTag()]);
}

const PAYLOAD_CHUNK = 64 * 1024;

/** age v1 file for X25519 recipients, synchronously (node:crypto only; the age CLI decrypts it, tested). */
export function ageEncryptX25519(data: Uint8Array, recipients: readonly string[]): Buffer {
  if (!recipients.length) throw new AgeError('age encrypt: no recipients');
  const fileKey = crypto.randomBytes(16);
  let header = 'age-encryption.org/v1\n';
  for (const r of recipients) {
    const pub = x25519RecipientKey(r);
    const eph = crypto.generateKeyPairSync('x25519');
    const share = eph.publicKey.export({ format: 'der', type: 'spki' }).subarray(X25519_SPKI_PREFIX.length);
    const secret = crypto.diffieHellman({ privateKey: eph.privateKey, publicKey: pub.key });
    if (secret.every((b) => b === 0)) throw new AgeError(`age recipient ${r.slice(0, 12)}...: low-order key`);
    const wrapKey = hkdf(secret, Buffer.concat([share, pub.raw]), 'age-encryption.org/v1/X25519');
    // 32 bytes wrapped → 43 base64 characters: one body line, shorter than the 64-column wrap.
    header += `-> X25519 ${b64(share)}\n${b64(chachaSeal(wrapKey, Buffer.alloc(12), fileKey))}\n`;
  }
  header += '---';
  const mac = crypto.createHmac('sha256', hkdf(fileKey, Buffer.alloc(0), 'header')).update(header).digest();
  const nonce = crypto.randomBytes(16);
  const payloadKey = hkdf(fileKey, nonce, 'payload');
  const parts: Buffer[] = [Buffer.from(`${header} ${b64(mac)}\n`), nonce];
  // STREAM: 64 KiB chunks, nonce = 11-byte big-endian counter || 1 on the last chunk (an empty file is one empty last chunk).
  const chunks = Math.max(1, Math.ceil(data.length / PAYLOAD_CHUNK));
  for (let i = 0; i < chunks; i++) {
    const n = Buffer.alloc(12);
    n.writeUIntBE(i, 5, 6);
    if (i === chunks - 1) n[11] = 1;
    parts.push(chachaSeal(payloadKey, n, data.subarray(i * PAYLOAD_CHUNK, (i + 1) * PAYLOAD_CHUNK)));
  }
  return Buffer.concat(parts);
}

/** Decrypt with an identity file (age-keygen output). */
export function ageDecrypt(data: Uint8Array, identityFile: string, opts: { ageBin?: string } = {}): Promise<Buffer> {
  return runAge(['--decrypt', '-i', identityFile], Buffer.from(data), `age --decrypt -i ${identityFile}`, opts.ageBin);
}
