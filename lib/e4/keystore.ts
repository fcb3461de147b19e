// C2's key store at rest. C2 derives one DB key from `db-encryption-passphrase` and seals every `key`
// column (clients.key, topic_keys.key) with it (c2: models.*.DecryptKey → e4crypto.Decrypt(dbKey, nil, v)):
//   dbKey = Argon2i(passphrase, salt = empty, t = 1, m = 65536 KiB, p = 4, 32 bytes)
//   value = AES-SIV(dbKey ‖ dbKey, AD = [empty], key)  →  tag16 ‖ ct  (48 bytes for a 32-byte key)
import { createHash, createHmac } from 'node:crypto';
import { argon2i } from './argon2i.ts';
import {
  sivCheckPacked32WithDoubledKey, sivOpenBatchWithDoubledKey, sivOpenWithDoubledKey, sivSealBatchWithDoubledKey, sivSealWithDoubledKey, SivAuthenticationError,
} from './aes-siv.ts';
import { E4Error } from './errors.ts';
import { KEY_LEN } from './ids.ts';

/** e4go's PasswordMinLength: shorter passwords and passphrases are refused by C2 and devices. */
export const PASSWORD_MIN_BYTES = 16;
/** Argon2i parameters E4 uses for every password-derived key. */
export const E4_ARGON2I = Object.freeze({ t: 1, mKiB: 64 * 1024, p: 4 });

const EMPTY = new Uint8Array(0);

/** The sealed value did not authenticate under the DB key: the passphrase is not the one C2 used. */
export class WrongPassphraseError extends E4Error {
  constructor(what = 'C2 key-store value') {
    super(
      'WRONG_PASSPHRASE',
      `${what} does not decrypt with this DB encryption passphrase: it is not the db-encryption-passphrase ` +
        'this C2 database was written with (or the value is corrupt). Use the escrowed passphrase of this deployment.',
    );
    this.name = 'WrongPassphraseError';
  }
}

function passwordBytes(password: string | Uint8Array, what: string): Uint8Array {
  let bytes: Uint8Array;
  if (typeof password === 'string') bytes = Buffer.from(password, 'utf8');
  else {
    bytes = password;
    try {
      new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      throw new E4Error('INVALID_PASSWORD', `${what} is not valid UTF-8; E4 only accepts UTF-8 passwords`);
    }
  }
  if (bytes.length < PASSWORD_MIN_BYTES) {
    throw new E4Error(
      'INVALID_PASSWORD',
      `${what} is ${bytes.length} bytes; E4 requires at least ${PASSWORD_MIN_BYTES} bytes (C2 refuses to start otherwise)`,
    );
  }
  return bytes;
}

/** e4go crypto.DeriveSymKey: a 32-byte key from a password (>= 16 bytes), Argon2i with an empty salt. */
export function deriveKeyFromPassword(password: string | Uint8Array): Buffer {
  return argon2i(passwordBytes(password, 'password'), EMPTY, { ...E4_ARGON2I, dkLen: KEY_LEN });
}

/** The DB key C2 derives from db-encryption-passphrase (same derivation as deriveKeyFromPassword). */
export function deriveDbKey(passphrase: string | Uint8Array): Buffer {
  return argon2i(passwordBytes(passphrase, 'DB encryption passphrase'), EMPTY, { ...E4_ARGON2I, dkLen: KEY_LEN });
}

function checkDbKey(dbKey: Uint8Array): void {
  if (dbKey.length !== KEY_LEN) throw new E4Error('INVALID_KEY', `DB key must be ${KEY_LEN} bytes (from deriveDbKey), got ${dbKey.length}`);
}

/** Decrypt one sealed `key` column value; throws WrongPassphraseError when it does not authenticate. */
export function openDbValue(dbKey: Uint8Array, sealed: Uint8Array, what?: string): Buffer {
  checkDbKey(dbKey);
  try {
    return sivOpenWithDoubledKey(dbKey, sealed, [EMPTY]);
  } catch (e) {
    if (e instanceof SivAuthenticationError) throw new WrongPassphraseError(what);
    throw e;
  }
}

/** Seal a value as C2 stores it (for seeding test databases and checking restores). */
export function sealDbValue(dbKey: Uint8Array, plain: Uint8Array): Buffer {
  checkDbKey(dbKey);
  return sivSealWithDoubledKey(dbKey, plain, [EMPTY]);
}

/**
 * openDbValue over many values at once (a drill reading a million-row key store): the AES work is
 * batched into a few native calls. Entries are null where a value does not authenticate; a batch
 * of nulls on a non-empty store means the wrong passphrase.
 */
export function openDbValuesBatch(dbKey: Uint8Array, sealed: readonly Uint8Array[]): (Buffer | null)[] {
  checkDbKey(dbKey);
  return sivOpenBatchWithDoubledKey(dbKey, sealed, [EMPTY]);
}

/** Sealed length of a 32-byte key (tag16 ‖ ct32): every client and topic key C2 stores. */
export const SEALED_KEY_BYTES = 48;

/**
 * The key-store check's hot path: which of n sealed 32-byte keys, packed end to end in `packed` (48 bytes
 * each, 4-byte aligned), open under the DB key. One flag per value (1 = opens); no plaintext is kept.
 */
export function checkPackedDbKeys(dbKey: Uint8Array, packed: Uint8Array, n: number): Uint8Array {
  checkDbKey(dbKey);
  return sivCheckPacked32WithDoubledKey(dbKey, packed, n, [EMPTY]);
}

/** sealDbValue over many values at once (seeding large test databases). */
export function sealDbValuesBatch(dbKey: Uint8Array, plains: readonly Uint8Array[]): Buffer[] {
  checkDbKey(dbKey);
  return sivSealBatchWithDoubledKey(dbKey, plains, [EMPTY]);
}

const FINGERPRINT_DOMAIN = 'e4ops/passphrase-fingerprint/v1';

/**
 * Fingerprint of an already derived DB key: hex SHA-256 of HMAC-SHA256(key = dbKey, FINGERPRINT_DOMAIN).
 * The HMAC is a PRF under the DB key, so the fingerprint reveals nothing about the key; and since the
 * DB key comes out of Argon2i, testing a guessed passphrase against a fingerprint costs one full
 * Argon2i (64 MiB) derivation, the same as testing it against the database itself.
 */
export function dbKeyFingerprint(dbKey: Uint8Array): string {
  checkDbKey(dbKey);
  const mac = createHmac('sha256', dbKey).update(FINGERPRINT_DOMAIN).digest();
  return createHash('sha256').update(mac).digest('hex');
}

/** Fingerprint a drill records and later compares to confirm it holds the right passphrase (see dbKeyFingerprint). */
export function passphraseFingerprint(passphrase: string | Uint8Array): string {
  const key = deriveDbKey(passphrase);
  try {
    return dbKeyFingerprint(key);
  } finally {
    key.fill(0);
  }
}
