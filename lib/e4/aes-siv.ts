// AES-SIV as specified by RFC 5297 (S2V over AES-CMAC, then AES-CTR), the AEAD E4 uses everywhere
// (e4go calls miscreant's NewAESCMACSIV). No maintained npm package implements RFC 5297: `miscreant`
// is archived and async-only, and @noble/ciphers' `siv` is AES-GCM-SIV (RFC 8452), a different
// construction. So this file composes Node's own AES (ECB for single blocks, CBC for the CMAC chain,
// CTR for encryption); RFC 5297's test vectors A.1 and A.2 are in test/e4/aes-siv.test.ts.
//
// Output layout (as RFC 5297 and miscreant): 16-byte synthetic IV (the tag) ‖ ciphertext.
import { createCipheriv, timingSafeEqual, type Cipher } from 'node:crypto';

const BLOCK = 16;
const ZERO_BLOCK = Buffer.alloc(BLOCK);

/** Thrown when a sealed value does not authenticate under the key and associated data given. */
export class SivAuthenticationError extends Error {
  constructor(message = 'AES-SIV authentication failed: wrong key, wrong associated data, or tampered data') {
    super(message);
    this.name = 'SivAuthenticationError';
  }
}

interface KeyState {
  /** AES cipher name for one half of the key. */
  algo: string;
  macKey: Buffer;
  ctrKey: Buffer;
  /** Long-lived ECB encryptor for single blocks under the MAC key (stateless per block). */
  ecb: Cipher;
  /** Long-lived CBC encryptor under the MAC key; its chaining value is `cbcState`. */
  cbc: Cipher;
  cbcState: Buffer;
  k1: Buffer; // CMAC subkeys
  k2: Buffer;
  /** CMAC(macKey, 0^128): the constant first step of every S2V. */
  cmacZero: Buffer;
}

/** doubling in GF(2^128) with the RFC 5297 / CMAC polynomial, in place on a copy. */
function dbl(block: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(BLOCK);
  let carry = 0;
  for (let i = BLOCK - 1; i >= 0; i--) {
    const b = block[i];
    out[i] = ((b << 1) | carry) & 0xff;
    carry = b >>> 7;
  }
  if (block[0] & 0x80) out[BLOCK - 1] ^= 0x87;
  return out;
}

function xorInto(dst: Uint8Array, src: Uint8Array, dstOffset = 0): void {
  for (let i = 0; i < src.length; i++) dst[dstOffset + i] ^= src[i];
}

const cache = new Map<string, KeyState>();
const CACHE_MAX = 64;

function keyState(key: Uint8Array): KeyState {
  const id = Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('latin1');
  let st = cache.get(id);
  if (st) return st;
  if (key.length !== 32 && key.length !== 48 && key.length !== 64) {
    throw new Error(`AES-SIV key must be 32, 48 or 64 bytes (two AES keys: MAC ‖ CTR), got ${key.length}`);
  }
  const half = key.length / 2;
  const algo = `aes-${half * 8}`;
  const macKey = Buffer.from(key.subarray(0, half));
  const ctrKey = Buffer.from(key.subarray(half));
  const ecb = createCipheriv(`${algo}-ecb`, macKey, null).setAutoPadding(false);
  const cbc = createCipheriv(`${algo}-cbc`, macKey, ZERO_BLOCK).setAutoPadding(false);
  const L = ecb.update(ZERO_BLOCK);
  const k1 = dbl(L);
  const k2 = dbl(k1);
  st = { algo, macKey, ctrKey, ecb, cbc, cbcState: Buffer.alloc(BLOCK), k1, k2, cmacZero: Buffer.alloc(0) };
  st.cmacZero = cmac(st, ZERO_BLOCK);
  if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value as string);
  cache.set(id, st);
  return st;
}

/** AES-CMAC (RFC 4493) with the MAC half of the key. */
function cmac(st: KeyState, msg: Uint8Array): Buffer {
  const n = msg.length;
  if (n <= BLOCK) {
    const last = Buffer.alloc(BLOCK);
    last.set(msg);
    if (n === BLOCK) xorInto(last, st.k1);
    else {
      last[n] = 0x80;
      xorInto(last, st.k2);
    }
    return st.ecb.update(last);
  }
  // Several blocks: CBC-MAC through the long-lived CBC cipher. Its chaining value is the last
  // ciphertext block it produced, so XOR that into the first block to get a zero IV.
  const full = n % BLOCK === 0;
  const padded = full ? n : n + BLOCK - (n % BLOCK);
  const buf = Buffer.alloc(padded);
  buf.set(msg);
  if (!full) buf[n] = 0x80;
  xorInto(buf, full ? st.k1 : st.k2, padded - BLOCK);
  xorInto(buf, st.cbcState, 0);
  const out = st.cbc.update(buf);
  const tag = Buffer.from(out.subarray(out.length - BLOCK));
  st.cbcState = tag;
  return tag;
}

/** S2V from RFC 5297 section 2.4 over the associated-data items and the plaintext. */
function s2v(st: KeyState, ad: readonly Uint8Array[], plaintext: Uint8Array): Buffer {
  let d = st.cmacZero;
  for (const item of ad) {
    d = dbl(d);
    xorInto(d, cmac(st, item));
  }
  if (plaintext.length >= BLOCK) {
    const t = Buffer.from(plaintext);
    xorInto(t, d, t.length - BLOCK);
    return cmac(st, t);
  }
  const t = dbl(d);
  xorInto(t, plaintext);
  t[plaintext.length] ^= 0x80;
  return cmac(st, t);
}

function ctr(st: KeyState, v: Uint8Array, data: Uint8Array): Buffer {
  const q = Buffer.from(v);
  q[8] &= 0x7f;
  q[12] &= 0x7f;
  return createCipheriv(`${st.algo}-ctr`, st.ctrKey, q).update(data);
}

function checkAd(ad: readonly Uint8Array[]): void {
  if (!Array.isArray(ad)) throw new Error('AES-SIV associated data must be an array of byte strings');
  // RFC 5297 allows at most 126 associated-data items (S2V's 127 vectors minus the plaintext).
  if (ad.length > 126) throw new Error(`AES-SIV accepts at most 126 associated-data items, got ${ad.length}`);
}

/**
 * Encrypt and authenticate `plaintext` under a double-length key (MAC key ‖ CTR key; 64 bytes for
 * AES-256-SIV as E4 uses it). Returns tag(16) ‖ ciphertext. Deterministic: same inputs, same output.
 */
export function sivSeal(key: Uint8Array, plaintext: Uint8Array, associatedData: readonly Uint8Array[]): Buffer {
  checkAd(associatedData);
  const st = keyState(key);
  const v = s2v(st, associatedData, plaintext);
  const ct = ctr(st, v, plaintext);
  return Buffer.concat([v, ct], BLOCK + ct.length);
}

/** Verify and decrypt tag ‖ ciphertext from sivSeal; throws SivAuthenticationError if it does not authenticate. */
export function sivOpen(key: Uint8Array, sealed: Uint8Array, associatedData: readonly Uint8Array[]): Buffer {
  checkAd(associatedData);
  if (sealed.length < BLOCK) {
    throw new SivAuthenticationError(`AES-SIV input is ${sealed.length} bytes, shorter than the 16-byte tag`);
  }
  const st = keyState(key);
  const v = sealed.subarray(0, BLOCK);
  const pt = ctr(st, v, sealed.subarray(BLOCK));
  const t = s2v(st, associatedData, pt);
  if (!timingSafeEqual(t, v)) {
    pt.fill(0);
    throw new SivAuthenticationError();
  }
  return pt;
}
