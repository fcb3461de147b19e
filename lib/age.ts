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
 * process (age-encryption.org/v1; thousands of small keys per run cost one CLI start each otherwise);
 * ssh recipients go through the age CLI. Tests decrypt both with the real `age`.
 */
export function ageEncrypt(data: Uint8Array, recipients: readonly string[], opts: { ageBin?: string; cli?: boolean } = {}): Promise<Buffer> {
  if (!recipients.length) return Promise.reject(new AgeError('age encrypt: no recipients'));
  if (!opts.cli && recipients.every((r) => AGE_PUBLIC_KEY.test(r))) {
    try { return Promise.resolve(ageEncryptX25519(data, recipients)); } catch (e) { return Promise.reject(e); }
  }
  return runAge(['--encrypt', ...recipients.flatMap((r) => ['-r', r])], Buffer.from(data), 'age --encrypt', opts.ageBin);
}

// ---- age v1 with X25519 recipients (the format `age -r age1...` writes) ----
const BECH32 = 'qpzry9x8gf2tvdw0s3jn54khce6mua7l';
const X25519_SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');
const X25519_LABEL = 'age-encryption.org/v1/X25519';
const CHUNK = 64 * 1024;

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

/** age1... → the 32-byte X25519 public key; the bech32 checksum is verified (a typo must not escrow to nobody). */
export function decodeAgeRecipient(recipient: string): Buffer {
  const r = recipient.toLowerCase();
  const sep = r.lastIndexOf('1');
  const hrp = r.slice(0, sep);
  const data = [...r.slice(sep + 1)].map((c) => BECH32.indexOf(c));
  const expanded = [...[...hrp].map((c) => c.charCodeAt(0) >> 5), 0, ...[...hrp].map((c) => c.charCodeAt(0) & 31)];
  if (hrp !== 'age' || data.some((d) => d < 0) || bech32Polymod([...expanded, ...data]) !== 1) {
    throw new AgeError(`age recipient ${recipient.slice(0, 12)}...: bad checksum (mistyped?)`);
  }
  let acc = 0;
  let bits = 0;
  const out: number[] = [];
  for (const d of data.slice(0, -6)) {
    acc = (acc << 5) | d;
    bits += 5;
    if (bits >= 8) { bits -= 8; out.push((acc >> bits) & 0xff); }
  }
  if (out.length !== 32) throw new AgeError(`age recipient ${recipient.slice(0, 12)}...: not a 32-byte X25519 key`);
  return Buffer.from(out);
}

const b64 = (b: Buffer) => b.toString('base64').replace(/=+$/, '');
const hkdf = (ikm: Buffer, salt: Buffer, info: string) => Buffer.from(crypto.hkdfSync('sha256', ikm, salt, info, 32));

function chacha(key: Buffer, nonce: Buffer, plain: Buffer): Buffer {
  const c = crypto.createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
  return Buffer.concat([c.update(plain), c.final(), c.getAuthTag()]);
}

function x25519Stanza(fileKey: Buffer, recipientKey: Buffer): string {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('x25519');
  const share = publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
  const theirs = crypto.createPublicKey({ key: Buffer.concat([X25519_SPKI_PREFIX, recipientKey]), format: 'der', type: 'spki' });
  const shared = crypto.diffieHellman({ privateKey, publicKey: theirs });
  if (shared.every((b) => b === 0)) throw new AgeError('age: X25519 recipient is a low-order point');
  const wrapKey = hkdf(shared, Buffer.concat([share, recipientKey]), X25519_LABEL);
  const body = b64(chacha(wrapKey, Buffer.alloc(12), fileKey));
  return `-> X25519 ${b64(share)}\n${body.match(/.{1,64}/g)!.join('\n')}${body.length % 64 === 0 ? '\n' : ''}\n`;
}

export function ageEncryptX25519(data: Uint8Array, recipients: readonly string[]): Buffer {
  const fileKey = crypto.randomBytes(16);
  const header = `age-encryption.org/v1\n${recipients.map((r) => x25519Stanza(fileKey, decodeAgeRecipient(r))).join('')}---`;
  const mac = crypto.createHmac('sha256', hkdf(fileKey, Buffer.alloc(0), 'header')).update(header).digest();
  const nonce = crypto.randomBytes(16);
  const payloadKey = hkdf(fileKey, nonce, 'payload');
  const plain = Buffer.from(data);
  const chunks: Buffer[] = [];
  const count = Math.max(1, Math.ceil(plain.length / CHUNK));
  for (let i = 0; i < count; i++) {
    const n = Buffer.alloc(12);
    n.writeUIntBE(i, 5, 6);
    n[11] = i === count - 1 ? 1 : 0;
    chunks.push(chacha(payloadKey, n, plain.subarray(i * CHUNK, (i + 1) * CHUNK)));
  }
  return Buffer.concat([Buffer.from(`${header} ${b64(mac)}\n`), nonce, ...chunks]);
}

/** Decrypt with an identity file (age-keygen output). */
export function ageDecrypt(data: Uint8Array, identityFile: string, opts: { ageBin?: string } = {}): Promise<Buffer> {
  return runAge(['--decrypt', '-i', identityFile], Buffer.from(data), `age --decrypt -i ${identityFile}`, opts.ageBin);
}
