// E4 public-key mode (e4go keys/publickey.go, c2 internal/crypto/keys.go):
// - devices hold an Ed25519 key; Go's 64-byte private key layout is seed(32) ‖ public(32)
// - C2 holds a Curve25519 (X25519) key pair; its private key file holds the raw 32 bytes
// - command key = SHA3-256(X25519(device Ed25519 key as X25519, C2 public)) — the same value C2
//   computes as SHA3-256(X25519(C2 private, device Ed25519 public as X25519)); commands are then
//   protected exactly as in symkey mode (protect.ts), unsigned
// - topic messages: timestamp(8) ‖ sender id(16) ‖ AES-SIV(topicKey‖topicKey, AD=[timestamp]) ‖
//   Ed25519 signature(64) over everything before it
import { ed25519 } from '@noble/curves/ed25519';
import { createHash, createPrivateKey, createPublicKey, diffieHellman, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
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

// The curve operations themselves (X25519, Ed25519 sign/verify, public-key derivation) run in Node's
// OpenSSL, an order of magnitude faster than pure JavaScript, which matters for fleets of simulated
// devices; @noble/curves converts Ed25519 public keys to X25519, which OpenSSL does not offer.
// Raw keys go in and out of OpenSSL as JWK (RFC 8037): importing DER costs ~10x more in OpenSSL 3.
// For a private OKP key Node uses only `d` and derives the public part itself; `x` is required to be
// a string, so it gets the public key when known and '' otherwise. test/e4/go-vectors.test.ts checks
// the derived public keys against Go.
type OkpCurve = 'Ed25519' | 'X25519';
const b64u = (v: Uint8Array) => Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64url');
function privateKeyObject(crv: OkpCurve, d: Uint8Array, x?: Uint8Array): KeyObject {
  return createPrivateKey({ key: { kty: 'OKP', crv, d: b64u(d), x: x ? b64u(x) : '' }, format: 'jwk' });
}
function publicKeyObject(crv: OkpCurve, x: Uint8Array): KeyObject {
  return createPublicKey({ key: { kty: 'OKP', crv, x: b64u(x) }, format: 'jwk' });
}
function rawPublic(k: KeyObject): Buffer {
  return Buffer.from(createPublicKey(k).export({ format: 'jwk' }).x as string, 'base64url');
}
/** OpenSSL key for a Go-layout private key (seed ‖ public) or a bare seed. */
function ed25519PrivateObject(priv: Uint8Array): KeyObject {
  return privateKeyObject('Ed25519', seedOf(priv), priv.length === 64 ? priv.subarray(32) : undefined);
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
  const publicKey = rawPublic(privateKeyObject('Ed25519', seed));
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
  return rawPublic(privateKeyObject('Ed25519', seedOf(priv)));
}

export function generateX25519KeyPair(): X25519KeyPair {
  const privateKey = randomBytes(32);
  return { privateKey, publicKey: x25519PublicFromPrivate(privateKey) };
}

/** C2's public key from its 32-byte private key file. */
export function x25519PublicFromPrivate(priv: Uint8Array): Buffer {
  checkLen(priv, 32, 'X25519 private key');
  return rawPublic(privateKeyObject('X25519', priv));
}

/** Ed25519 public key → X25519 (Montgomery u = (1 + y) / (1 - y)). */
export function ed25519PublicToX25519(pub: Uint8Array): Buffer {
  checkLen(pub, 32, 'Ed25519 public key');
  return Buffer.from(ed25519.utils.toMontgomery(pub));
}

/**
 * Ed25519 private key → X25519 scalar: the clamped first half of SHA-512(seed), which is the scalar
 * Ed25519 itself uses (what @noble/curves' toMontgomerySecret and Go's extra25519 compute; done with
 * Node's SHA-512 here because it is 20x faster).
 */
export function ed25519PrivateToX25519(priv: Uint8Array): Buffer {
  const h = createHash('sha512').update(seedOf(priv)).digest().subarray(0, 32);
  h[0] &= 248;
  h[31] &= 127;
  h[31] |= 64;
  return Buffer.from(h);
}

function x25519Shared(priv: Uint8Array, pub: Uint8Array): Uint8Array {
  try {
    return diffieHellman({ privateKey: privateKeyObject('X25519', priv), publicKey: publicKeyObject('X25519', pub) });
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
  return sign(null, message, ed25519PrivateObject(priv));
}

export function verifyEd25519(signature: Uint8Array, message: Uint8Array, pub: Uint8Array): boolean {
  if (signature.length !== SIGNATURE_LEN || pub.length !== 32) return false;
  try {
    return verify(null, message, publicKeyObject('Ed25519', pub), signature);
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

