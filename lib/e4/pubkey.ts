// E4 public-key mode (e4go keys/publickey.go, c2 internal/crypto/keys.go):
// - devices hold an Ed25519 key; Go's 64-byte private key layout is seed(32) ‖ public(32)
// - C2 holds a Curve25519 (X25519) key pair; its private key file holds the raw 32 bytes
// - command key = SHA3-256(X25519(device Ed25519 key as X25519, C2 public)) — the same value C2
//   computes as SHA3-256(X25519(C2 private, device Ed25519 public as X25519)); commands are then
//   protected exactly as in symkey mode (protect.ts), unsigned
// - topic messages: timestamp(8) ‖ sender id(16) ‖ AES-SIV(topicKey‖topicKey, AD=[timestamp]) ‖
//   Ed25519 signature(64) over everything before it
import { ed25519, x25519 } from '@noble/curves/ed25519';
import { randomBytes } from 'node:crypto';
import { E4Error } from './errors.ts';
import { ID_LEN, KEY_LEN, sha3_256, TAG_LEN, TIMESTAMP_LEN } from './ids.ts';
import { deriveKeyFromPassword } from './keystore.ts';
import { checkTimestamp, openWithTimestamp, sealWithTimestamp, timestampBytes, type Clock } from './protect.ts';

export const SIGNATURE_LEN = 64;

export interface Ed25519KeyPair {
  /** 64 bytes, seed ‖ public (Go's crypto/ed25519 layout, what SetIdKey carries in pubkey mode) */
  privateKey: Buffer;
  /** 32 bytes */
  publicKey: Buffer;
}

export interface X25519KeyPair {
  /** 32 raw bytes, as in C2's crypto-c2-private-key file */
  privateKey: Buffer;
  publicKey: Buffer;
}

function seedOf(priv: Uint8Array, what = 'Ed25519 private key'): Uint8Array {
  if (priv.length === 64 || priv.length === 32) {
    if (priv.every((b) => b === 0)) throw new E4Error('INVALID_KEY', `${what} is all zeros`);
    return priv.subarray(0, 32);
  }
  throw new E4Error('INVALID_KEY', `${what} must be 64 bytes (seed ‖ public) or a 32-byte seed, got ${priv.length}`);
}

function checkLen(v: Uint8Array, n: number, what: string): void {
  if (v.length !== n) throw new E4Error('INVALID_KEY', `${what} must be ${n} bytes, got ${v.length}`);
  if (v.every((b) => b === 0)) throw new E4Error('INVALID_KEY', `${what} is all zeros`);
}

export function ed25519KeyPairFromSeed(seed: Uint8Array): Ed25519KeyPair {
  checkLen(seed, 32, 'Ed25519 seed');
  const publicKey = Buffer.from(ed25519.getPublicKey(seed));
  return { privateKey: Buffer.concat([seed, publicKey]), publicKey };
}

export function generateEd25519KeyPair(): Ed25519KeyPair {
  return ed25519KeyPairFromSeed(randomBytes(32));
}

/** e4go Ed25519PrivateKeyFromPassword: the seed is the Argon2i password key. */
export function ed25519KeyPairFromPassword(password: string | Uint8Array): Ed25519KeyPair {
  return ed25519KeyPairFromSeed(deriveKeyFromPassword(password));
}

export function ed25519PublicFromPrivate(priv: Uint8Array): Buffer {
  return Buffer.from(ed25519.getPublicKey(seedOf(priv)));
}

export function generateX25519KeyPair(): X25519KeyPair {
  const privateKey = randomBytes(32);
  return { privateKey, publicKey: x25519PublicFromPrivate(privateKey) };
}

/** C2's public key from its 32-byte private key file. */
export function x25519PublicFromPrivate(priv: Uint8Array): Buffer {
  checkLen(priv, 32, 'X25519 private key');
  return Buffer.from(x25519.getPublicKey(priv));
}

/** Ed25519 public key → X25519 (Montgomery u = (1 + y) / (1 - y)). */
export function ed25519PublicToX25519(pub: Uint8Array): Buffer {
  checkLen(pub, 32, 'Ed25519 public key');
  return Buffer.from(ed25519.utils.toMontgomery(pub));
}

/** Ed25519 private key → X25519 scalar (clamped first half of SHA-512(seed)). */
export function ed25519PrivateToX25519(priv: Uint8Array): Buffer {
  return Buffer.from(ed25519.utils.toMontgomerySecret(seedOf(priv)));
}

function x25519Shared(priv: Uint8Array, pub: Uint8Array): Uint8Array {
  try {
    return x25519.getSharedSecret(priv, pub);
  } catch (e) {
    throw new E4Error('INVALID_KEY', `X25519 failed (low-order or malformed public key): ${(e as Error).message}`);
  }
}

/** Device side: the key that opens commands from C2. */
export function commandKeyFromC2(c2PublicCurve25519: Uint8Array, deviceEd25519Private: Uint8Array): Buffer {
  checkLen(c2PublicCurve25519, 32, 'C2 public key');
  return sha3_256(x25519Shared(ed25519PrivateToX25519(deviceEd25519Private), c2PublicCurve25519)).subarray(0, KEY_LEN);
}

/** C2 side: the key that protects commands for a device, from C2's private key and the device's Ed25519 public key. */
export function c2CommandKeyForDevice(c2PrivateCurve25519: Uint8Array, deviceEd25519Public: Uint8Array): Buffer {
  checkLen(c2PrivateCurve25519, 32, 'C2 private key');
  return sha3_256(x25519Shared(c2PrivateCurve25519, ed25519PublicToX25519(deviceEd25519Public))).subarray(0, KEY_LEN);
}

export function signEd25519(message: Uint8Array, priv: Uint8Array): Buffer {
  return Buffer.from(ed25519.sign(message, seedOf(priv)));
}

export function verifyEd25519(signature: Uint8Array, message: Uint8Array, pub: Uint8Array): boolean {
  try {
    return ed25519.verify(signature, message, pub, { zip215: false });
  } catch {
    return false;
  }
}

/** Signed topic message: timestamp ‖ signer id ‖ SIV(topicKey‖topicKey, AD=[timestamp]) ‖ Ed25519 signature. */
export function protectSignedMessage(
  payload: Uint8Array, topicKey: Uint8Array, signerId: Uint8Array, signerEd25519Private: Uint8Array, now?: Clock,
): Buffer {
  if (signerId.length !== ID_LEN) throw new E4Error('INVALID_KEY', `signer id must be ${ID_LEN} bytes, got ${signerId.length}`);
  const ts = timestampBytes(now);
  const signed = Buffer.concat([ts, signerId, sealWithTimestamp(topicKey, ts, payload)]);
  return Buffer.concat([signed, signEd25519(signed, signerEd25519Private)]);
}

/** Where to find a sender's Ed25519 public key (pushed to devices by SetPubKey). */
export type PublicKeyLookup = ((signerId: Buffer) => Uint8Array | undefined) | Map<string, Uint8Array>;

export interface UnprotectedSignedMessage {
  payload: Buffer;
  signerId: Buffer;
}

/**
 * e4go pubKeyMaterial.UnprotectMessage: timestamp window, then the sender's signature
 * (E4Error UNKNOWN_SIGNER / INVALID_SIGNATURE), then decryption (NotAuthenticError).
 */
export function unprotectSignedMessage(
  protectedMsg: Uint8Array, topicKey: Uint8Array, publicKeys: PublicKeyLookup, now?: Clock,
): UnprotectedSignedMessage {
  const n = protectedMsg.length;
  if (n < TIMESTAMP_LEN + ID_LEN + TAG_LEN + SIGNATURE_LEN) {
    throw new E4Error('TOO_SHORT', `signed message is ${n} bytes; needs at least ${TIMESTAMP_LEN + ID_LEN + TAG_LEN + SIGNATURE_LEN}`);
  }
  const ts = protectedMsg.subarray(0, TIMESTAMP_LEN);
  checkTimestamp(ts, now);
  const signerId = Buffer.from(protectedMsg.subarray(TIMESTAMP_LEN, TIMESTAMP_LEN + ID_LEN));
  const pub = publicKeys instanceof Map ? publicKeys.get(signerId.toString('hex')) : publicKeys(signerId);
  if (!pub) throw new E4Error('UNKNOWN_SIGNER', `no public key for signer ${signerId.toString('hex')} (never sent by SetPubKey)`);
  const signed = protectedMsg.subarray(0, n - SIGNATURE_LEN);
  if (!verifyEd25519(protectedMsg.subarray(n - SIGNATURE_LEN), signed, pub)) {
    throw new E4Error('INVALID_SIGNATURE', `signature of signer ${signerId.toString('hex')} does not verify`);
  }
  const ct = protectedMsg.subarray(TIMESTAMP_LEN + ID_LEN, n - SIGNATURE_LEN);
  return { payload: openWithTimestamp(topicKey, ts, ct), signerId };
}

