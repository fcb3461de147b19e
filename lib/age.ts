// age (the `age` CLI) for small secrets: recipient checks and one-shot encrypt/decrypt of a buffer.
// Shared by backups (recipients of backup sets) and provisioning (bundles, escrowed identity keys):
// the same recipients model everywhere, public keys only on the machine that encrypts.
import { spawn } from 'node:child_process';
import { Encrypter } from 'age-encryption';

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
  // The shape alone lets a one-character typo through: backups and escrowed keys would be sealed to nobody.
  if (AGE_PUBLIC_KEY.test(v)) {
    try { decodeAgeRecipient(v); } catch (e) { throw new AgeError(`${where}: ${(e as Error).message}; copy the key again from age-keygen -y`); }
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
 * process by the age-encryption package (thousands of small keys per run would cost one CLI start
 * each); ssh recipients go through the age CLI. Tests decrypt both with the real `age`.
 */
export async function ageEncrypt(data: Uint8Array, recipients: readonly string[], opts: { ageBin?: string; cli?: boolean } = {}): Promise<Buffer> {
  if (!recipients.length) throw new AgeError('age encrypt: no recipients');
  if (!opts.cli && recipients.every((r) => AGE_PUBLIC_KEY.test(r))) {
    const encrypter = new Encrypter();
    for (const r of recipients) addRecipientChecked(encrypter, r);
    return Buffer.from(await encrypter.encrypt(data));
  }
  return runAge(['--encrypt', ...recipients.flatMap((r) => ['-r', r])], Buffer.from(data), 'age --encrypt', opts.ageBin);
}

/** An age1... recipient with its bech32 checksum verified (a typo must not escrow to nobody). */
export function decodeAgeRecipient(recipient: string): string {
  addRecipientChecked(new Encrypter(), recipient);
  return recipient;
}

function addRecipientChecked(encrypter: Encrypter, recipient: string): void {
  try {
    encrypter.addRecipient(recipient);
  } catch (e) {
    throw new AgeError(`age recipient ${recipient.slice(0, 12)}...: bad checksum (mistyped?): ${(e as Error).message.split(' in ')[0]}`);
  }
}

/** Decrypt with an identity file (age-keygen output). */
export function ageDecrypt(data: Uint8Array, identityFile: string, opts: { ageBin?: string } = {}): Promise<Buffer> {
  return runAge(['--decrypt', '-i', identityFile], Buffer.from(data), `age --decrypt -i ${identityFile}`, opts.ageBin);
}
