// AES-SIV as specified by RFC 5297 (S2V over AES-CMAC, then AES-CTR), the AEAD E4 uses everywhere
// (e4go calls miscreant's NewAESCMACSIV). No maintained npm package implements RFC 5297: `miscreant`
// is archived and async-only, and @noble/ciphers' `siv` is AES-GCM-SIV (RFC 8452), a different
// construction. So this file composes Node's own AES (ECB for single blocks, CBC for the CMAC chain,
// CTR for encryption); RFC 5297's test vectors A.1 and A.2 are in test/e4/aes-siv.test.ts.
//
// Output layout (as RFC 5297 and miscreant): 16-byte synthetic IV (the tag) ‖ ciphertext.
import { createCipheriv, type Cipher } from 'node:crypto';

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
  /** ECB encryptor under the CTR key (the same object as `ecb` when both halves are equal) */
  ctrEcb: Cipher;
  sameHalves: boolean;
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

let lastKey: Uint8Array | undefined;
let lastDoubled = false;
let lastState: KeyState | undefined;

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Key state for `key`, or for `key ‖ key` when doubled (E4's use), cached by key bytes. */
function keyState(key: Uint8Array, doubled = false): KeyState {
  // Fast path: the same key as the previous call (a device reading one topic, a drill reading one DB).
  if (lastState && lastDoubled === doubled && lastKey && sameBytes(lastKey, key)) return lastState;
  const id = (doubled ? 'd' : 's') + Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('latin1');
  let st = cache.get(id);
  if (!st) {
    st = newKeyState(doubled ? Buffer.concat([key, key]) : key);
    if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value as string);
    cache.set(id, st);
  }
  lastKey = Uint8Array.prototype.slice.call(key);
  lastDoubled = doubled;
  lastState = st;
  return st;
}

/** Drop every cached key schedule (and the copies of keys it holds), e.g. at the end of a drill. */
export function forgetSivKeys(): void {
  cache.clear();
  lastKey?.fill(0);
  lastKey = undefined;
  lastState = undefined;
}

function newKeyState(key: Uint8Array): KeyState {
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
  const sameHalves = macKey.equals(ctrKey);
  const ctrEcb = sameHalves ? ecb : createCipheriv(`${algo}-ecb`, ctrKey, null).setAutoPadding(false);
  const st: KeyState = { algo, macKey, ctrKey, ecb, cbc, cbcState: Buffer.alloc(BLOCK), k1, k2, cmacZero: Buffer.alloc(0), ctrEcb, sameHalves };
  st.cmacZero = cmac(st, ZERO_BLOCK);
  return st;
}

/** AES-CMAC (RFC 4493) with the MAC half of the key. */
function cmac(st: KeyState, msg: Uint8Array): Buffer {
  if (msg.length <= BLOCK) return st.ecb.update(cmacSingleBlockInput(st, msg));
  return cmacMulti(st, msg);
}

/** For a message of at most one block, CMAC is one AES call on this prepared block. */
function cmacSingleBlockInput(st: KeyState, msg: Uint8Array): Buffer {
  const n = msg.length;
  const last = Buffer.alloc(BLOCK);
  last.set(msg);
  if (n === BLOCK) xorInto(last, st.k1);
  else {
    last[n] = 0x80;
    xorInto(last, st.k2);
  }
  return last;
}

/** CMAC of a message longer than one block; `xorEnd`, when given, is XORed into its last 16 bytes first (S2V's xorend). */
function cmacMulti(st: KeyState, msg: Uint8Array, xorEnd?: Uint8Array): Buffer {
  const n = msg.length;
  // Several blocks: CBC-MAC through the long-lived CBC cipher. Its chaining value is the last
  // ciphertext block it produced, so XOR that into the first block to get a zero IV.
  const full = n % BLOCK === 0;
  const padded = full ? n : n + BLOCK - (n % BLOCK);
  const buf = Buffer.allocUnsafe(padded);
  buf.set(msg);
  buf.fill(0, n);
  if (xorEnd) xorInto(buf, xorEnd, n - BLOCK);
  if (!full) buf[n] = 0x80;
  xorInto(buf, full ? st.k1 : st.k2, padded - BLOCK);
  xorInto(buf, st.cbcState, 0);
  const out = st.cbc.update(buf);
  const tag = Buffer.from(out.subarray(out.length - BLOCK));
  st.cbcState = tag;
  return tag;
}

/**
 * S2V from RFC 5297 section 2.4 over the associated-data items and the plaintext.
 * `adMacs[i]`, when present, is the already computed CMAC of associated-data item i.
 */
function s2v(st: KeyState, ad: readonly Uint8Array[], plaintext: Uint8Array, adMacs: (Buffer | undefined)[] = []): Buffer {
  let d = st.cmacZero;
  for (let i = 0; i < ad.length; i++) {
    d = dbl(d);
    xorInto(d, adMacs[i] ?? cmac(st, ad[i]));
  }
  if (plaintext.length > BLOCK) return cmacMulti(st, plaintext, d);
  if (plaintext.length === BLOCK) {
    const t = Buffer.from(plaintext);
    xorInto(t, d);
    return cmac(st, t);
  }
  const t = dbl(d);
  xorInto(t, plaintext);
  t[plaintext.length] ^= 0x80;
  return cmac(st, t);
}

/** Write `count` CTR counter blocks starting at V with bits 63 and 31 cleared (RFC 5297 section 2.5). */
function writeCounters(v: Uint8Array, out: Buffer, offset: number, count: number): void {
  const vv = new DataView(v.buffer, v.byteOffset, BLOCK);
  const ov = new DataView(out.buffer, out.byteOffset + offset, count * BLOCK);
  let w0 = vv.getUint32(0);
  let w1 = vv.getUint32(4);
  let w2 = vv.getUint32(8) & 0x7fffffff;
  let w3 = vv.getUint32(12) & 0x7fffffff;
  for (let o = 0; o < count * BLOCK; o += BLOCK) {
    ov.setUint32(o, w0);
    ov.setUint32(o + 4, w1);
    ov.setUint32(o + 8, w2);
    ov.setUint32(o + 12, w3);
    // 128-bit big-endian increment
    w3 = (w3 + 1) >>> 0;
    if (w3 === 0) {
      w2 = (w2 + 1) >>> 0;
      if (w2 === 0) {
        w1 = (w1 + 1) >>> 0;
        if (w1 === 0) w0 = (w0 + 1) >>> 0;
      }
    }
  }
}

/** out[i] = a[i] ^ b[bOffset + i] for i < out.length, four bytes at a time. */
function xorStream(out: Uint8Array, a: Uint8Array, b: Uint8Array, bOffset: number): void {
  const n = out.length;
  const words = n >>> 2;
  if (((out.byteOffset | a.byteOffset | (b.byteOffset + bOffset)) & 3) === 0) {
    const o32 = new Int32Array(out.buffer, out.byteOffset, words);
    const a32 = new Int32Array(a.buffer, a.byteOffset, words);
    const b32 = new Int32Array(b.buffer, b.byteOffset + bOffset, words);
    for (let i = 0; i < words; i++) o32[i] = a32[i] ^ b32[i];
    for (let i = words * 4; i < n; i++) out[i] = a[i] ^ b[bOffset + i];
    return;
  }
  const ov = new DataView(out.buffer, out.byteOffset, n);
  const av = new DataView(a.buffer, a.byteOffset, n);
  const bv = new DataView(b.buffer, b.byteOffset + bOffset, n);
  for (let i = 0; i < words * 4; i += 4) ov.setInt32(i, av.getInt32(i) ^ bv.getInt32(i));
  for (let i = words * 4; i < n; i++) out[i] = a[i] ^ b[bOffset + i];
}

/**
 * AES-CTR under the CTR key, with the keystream made by one ECB call over the counter blocks.
 * `extra` single blocks (already prepared) can ride along in the same ECB call when the MAC and
 * CTR keys are equal, as in E4; their encryptions are returned separately. One native call instead
 * of two or three matters for small messages, where per-call overhead dominates.
 */
function ctrWithExtra(st: KeyState, v: Uint8Array, data: Uint8Array, extra: Buffer[]): { out: Buffer; extraOut: Buffer[] } {
  const nBlocks = Math.ceil(data.length / BLOCK);
  const ride = st.sameHalves ? extra.length : 0;
  const input = Buffer.allocUnsafe((ride + nBlocks) * BLOCK);
  for (let i = 0; i < ride; i++) extra[i].copy(input, i * BLOCK);
  writeCounters(v, input, ride * BLOCK, nBlocks);
  const enc = st.ctrEcb.update(input);
  const extraOut: Buffer[] = [];
  for (let i = 0; i < extra.length; i++) {
    extraOut.push(i < ride ? enc.subarray(i * BLOCK, (i + 1) * BLOCK) : st.ecb.update(extra[i]));
  }
  const out = Buffer.allocUnsafe(data.length);
  if (data.length > 0) xorStream(out, data, enc, ride * BLOCK);
  return { out, extraOut };
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
  return seal(keyState(key), plaintext, associatedData);
}

/** sivSeal with the 64-byte key K ‖ K built from one 32-byte key K, as E4 always does. */
export function sivSealWithDoubledKey(key: Uint8Array, plaintext: Uint8Array, associatedData: readonly Uint8Array[]): Buffer {
  return seal(keyState(key, true), plaintext, associatedData);
}

/** sivOpen with the 64-byte key K ‖ K built from one 32-byte key K, as E4 always does. */
export function sivOpenWithDoubledKey(key: Uint8Array, sealed: Uint8Array, associatedData: readonly Uint8Array[]): Buffer {
  return open(keyState(key, true), sealed, associatedData);
}

function seal(st: KeyState, plaintext: Uint8Array, associatedData: readonly Uint8Array[]): Buffer {
  checkAd(associatedData);
  const v = s2v(st, associatedData, plaintext);
  const { out } = ctrWithExtra(st, v, plaintext, []);
  return Buffer.concat([v, out], BLOCK + out.length);
}

/** Verify and decrypt tag ‖ ciphertext from sivSeal; throws SivAuthenticationError if it does not authenticate. */
export function sivOpen(key: Uint8Array, sealed: Uint8Array, associatedData: readonly Uint8Array[]): Buffer {
  return open(keyState(key), sealed, associatedData);
}

function open(st: KeyState, sealed: Uint8Array, associatedData: readonly Uint8Array[]): Buffer {
  checkAd(associatedData);
  if (sealed.length < BLOCK) {
    throw new SivAuthenticationError(`AES-SIV input is ${sealed.length} bytes, shorter than the 16-byte tag`);
  }
  const v = sealed.subarray(0, BLOCK);
  let pt: Buffer;
  let t: Buffer;
  if (associatedData.length === 1 && associatedData[0].length <= BLOCK) {
    // E4's shape (one short item: the timestamp, or C2's empty item): its CMAC rides with the keystream
    const { out, extraOut } = ctrWithExtra(st, v, sealed.subarray(BLOCK), [cmacSingleBlockInput(st, associatedData[0])]);
    pt = out;
    t = s2v(st, associatedData, pt, extraOut);
  } else {
    // CMACs of short associated-data items ride along with the CTR keystream.
    const shortIdx: number[] = [];
    const shortIn: Buffer[] = [];
    associatedData.forEach((item, i) => {
      if (item.length <= BLOCK) {
        shortIdx.push(i);
        shortIn.push(cmacSingleBlockInput(st, item));
      }
    });
    const { out, extraOut } = ctrWithExtra(st, v, sealed.subarray(BLOCK), shortIn);
    const adMacs: (Buffer | undefined)[] = [];
    shortIdx.forEach((adIndex, k) => (adMacs[adIndex] = extraOut[k]));
    pt = out;
    t = s2v(st, associatedData, pt, adMacs);
  }
  if (!equal16(t, v)) {
    pt.fill(0);
    throw new SivAuthenticationError();
  }
  return pt;
}

/** Constant-time comparison of two 16-byte tags. */
function equal16(a: Uint8Array, b: Uint8Array): boolean {
  let diff = 0;
  for (let i = 0; i < BLOCK; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

// ---- Batches: many values under one key and one associated-data list (C2's key store) ----
// Every AES step is vectorised across the batch, so a batch of any size costs a handful of native
// calls (one per CMAC block round, one for all CTR keystreams) instead of two or three per value.

/** S2V's running value D after the associated data, the same for every value of a batch. */
function s2vPrefix(st: KeyState, ad: readonly Uint8Array[]): Buffer {
  let d = st.cmacZero;
  for (const item of ad) {
    d = dbl(d);
    xorInto(d, cmac(st, item));
  }
  return d;
}

/** CMAC of many messages of the same length, one ECB call per block position. */
function cmacBatch(st: KeyState, msgs: Uint8Array[], len: number): Buffer {
  const count = msgs.length;
  const nb = len === 0 ? 1 : Math.ceil(len / BLOCK);
  const full = len > 0 && len % BLOCK === 0;
  let state = Buffer.alloc(count * BLOCK);
  for (let j = 0; j < nb; j++) {
    const last = j === nb - 1;
    const input = Buffer.alloc(count * BLOCK);
    const from = j * BLOCK;
    const take = Math.min(BLOCK, len - from);
    for (let i = 0; i < count; i++) {
      input.set(msgs[i].subarray(from, from + take), i * BLOCK);
      if (last && !full) input[i * BLOCK + take] = 0x80;
    }
    xorStream(input, input, state, 0);
    if (last) {
      const sub = Buffer.allocUnsafe(count * BLOCK);
      for (let i = 0; i < count; i++) (full ? st.k1 : st.k2).copy(sub, i * BLOCK);
      xorStream(input, input, sub, 0);
    }
    state = st.ecb.update(input);
  }
  return state;
}

/** S2V tags (16 bytes each, concatenated) of same-length plaintexts after the prefix D. */
function s2vBatch(st: KeyState, d: Buffer, plaintexts: Uint8Array[], len: number): Buffer {
  if (len >= BLOCK) {
    const ts = plaintexts.map((p) => {
      const t = Buffer.from(p);
      xorInto(t, d, len - BLOCK);
      return t;
    });
    return cmacBatch(st, ts, len);
  }
  const dd = dbl(d);
  const ts = plaintexts.map((p) => {
    const t = Buffer.from(dd);
    xorInto(t, p);
    t[len] ^= 0x80;
    return t;
  });
  return cmacBatch(st, ts, BLOCK);
}

/** CTR over same-length inputs, each with its own synthetic IV, in one ECB call. */
function ctrBatch(st: KeyState, ivs: Uint8Array[], data: Uint8Array[], len: number): Buffer[] {
  const nBlocks = Math.ceil(len / BLOCK);
  if (nBlocks === 0) return data.map(() => Buffer.alloc(0));
  const counters = Buffer.allocUnsafe(data.length * nBlocks * BLOCK);
  ivs.forEach((iv, i) => writeCounters(iv, counters, i * nBlocks * BLOCK, nBlocks));
  const ks = st.ctrEcb.update(counters);
  return data.map((d, i) => {
    const out = Buffer.allocUnsafe(len);
    xorStream(out, d, ks, i * nBlocks * BLOCK);
    return out;
  });
}

function groupByLength(items: readonly Uint8Array[], minus: number): Map<number, number[]> {
  const groups = new Map<number, number[]>();
  items.forEach((it, i) => {
    const n = it.length - minus;
    let g = groups.get(n);
    if (!g) groups.set(n, (g = []));
    g.push(i);
  });
  return groups;
}

function sealBatch(st: KeyState, plaintexts: readonly Uint8Array[], ad: readonly Uint8Array[]): Buffer[] {
  checkAd(ad);
  const d = s2vPrefix(st, ad);
  const out: Buffer[] = new Array(plaintexts.length);
  for (const [len, idx] of groupByLength(plaintexts, 0)) {
    const pts = idx.map((i) => plaintexts[i]);
    const tags = s2vBatch(st, d, pts, len);
    const ivs = idx.map((_, k) => tags.subarray(k * BLOCK, (k + 1) * BLOCK));
    const cts = ctrBatch(st, ivs, pts, len);
    idx.forEach((i, k) => (out[i] = Buffer.concat([ivs[k], cts[k]], BLOCK + len)));
  }
  return out;
}

/** 32-bit word view of a buffer (copied when Node handed out an unaligned slice of its pool). */
function words32(b: Buffer): Uint32Array {
  if (b.byteOffset % 4 === 0) return new Uint32Array(b.buffer, b.byteOffset, b.length >> 2);
  return new Uint32Array(new Uint8Array(b).buffer);
}

/**
 * openBatch for the group of 32-byte plaintexts (C2's sealed keys: tag16 ‖ ct32), the hot path of a
 * key-store check. With two complete blocks S2V's final CMAC is X1 = E(M1), V' = E(X1 ^ M2 ^ D ^ K1),
 * so the whole group costs three ECB passes (keystream, X1, V'), with every XOR done on 32-bit words
 * of one contiguous buffer instead of per-value Buffers.
 */
function openBatchTwoBlocks(st: KeyState, d: Buffer, sealed: readonly Uint8Array[], idx: number[], out: (Buffer | null)[]): void {
  const n = idx.length;
  const all = new Uint8Array(n * 48);
  for (let j = 0; j < n; j++) all.set(sealed[idx[j]], j * 48);
  const { plain, ok } = openPackedTwoBlocks(st, d, all, n);
  for (let j = 0; j < n; j++) if (ok[j]) out[idx[j]] = Buffer.from(plain.buffer, j * 32, 32);
}

/**
 * The core of openBatchTwoBlocks on n values already packed end to end (48 bytes each, 4-byte aligned):
 * plaintexts (wiped where a value fails) and one flag per value (1 = authenticates).
 */
function openPackedTwoBlocks(st: KeyState, d: Buffer, all: Uint8Array, n: number): { plain: Uint8Array; ok: Uint8Array } {
  const allW = new Uint32Array(all.buffer, all.byteOffset, n * 12);
  // 1. CTR keystream, two blocks per value, from the stored synthetic IV.
  const ctr = Buffer.allocUnsafe(n * 2 * BLOCK);
  for (let j = 0; j < n; j++) writeCounters(all.subarray(j * 48, j * 48 + BLOCK), ctr, j * 2 * BLOCK, 2);
  const ksW = words32(st.ctrEcb.update(ctr));
  const plain = new Uint8Array(n * 32);
  const plainW = new Uint32Array(plain.buffer);
  for (let j = 0; j < n; j++) {
    const p = j * 8, c = j * 12 + 4;
    for (let w = 0; w < 8; w++) plainW[p + w] = allW[c + w] ^ ksW[p + w];
  }
  // 2. S2V over M1 ‖ (M2 ^ D): X1 = E(M1), then V' = E(X1 ^ M2 ^ D ^ K1).
  const m1W = new Uint32Array(n * 4);
  for (let j = 0; j < n; j++) for (let w = 0; w < 4; w++) m1W[j * 4 + w] = plainW[j * 8 + w];
  const x1W = words32(st.ecb.update(Buffer.from(m1W.buffer)));
  const dk = Buffer.from(d);
  xorInto(dk, st.k1);
  const dkW = new Uint32Array(new Uint8Array(dk).buffer);
  for (let j = 0; j < n; j++) for (let w = 0; w < 4; w++) x1W[j * 4 + w] ^= plainW[j * 8 + 4 + w] ^ dkW[w];
  const vW = words32(st.ecb.update(Buffer.from(x1W.buffer, x1W.byteOffset, x1W.byteLength)));
  // 3. Compare with the stored tag; failed plaintexts are wiped.
  const ok = new Uint8Array(n);
  for (let j = 0; j < n; j++) {
    const t = j * 12, q = j * 4;
    const diff = (vW[q] ^ allW[t]) | (vW[q + 1] ^ allW[t + 1]) | (vW[q + 2] ^ allW[t + 2]) | (vW[q + 3] ^ allW[t + 3]);
    if (diff === 0) ok[j] = 1;
    else plain.fill(0, j * 32, j * 32 + 32);
  }
  return { plain, ok };
}

/**
 * Which of n sealed 32-byte values, packed end to end in `packed` (48 bytes each: tag16 ‖ ct32), authenticate
 * under a double-length key and one associated-data list: one flag per value (1 = yes). The plaintexts are
 * wiped before returning (a key-store check needs only the answer). `packed` must be 4-byte aligned.
 */
export function sivCheckPacked32WithDoubledKey(key: Uint8Array, packed: Uint8Array, n: number, associatedData: readonly Uint8Array[]): Uint8Array {
  if (packed.length < n * 48) throw new Error(`sivCheckPacked32: ${n} values need ${n * 48} bytes, got ${packed.length}`);
  if (packed.byteOffset % 4 !== 0) throw new Error('sivCheckPacked32: the packed values must start 4-byte aligned');
  checkAd(associatedData);
  const st = keyState(key, true);
  const { plain, ok } = openPackedTwoBlocks(st, s2vPrefix(st, associatedData), packed, n);
  plain.fill(0);
  return ok;
}

function openBatch(st: KeyState, sealed: readonly Uint8Array[], ad: readonly Uint8Array[]): (Buffer | null)[] {
  checkAd(ad);
  const d = s2vPrefix(st, ad);
  const out: (Buffer | null)[] = new Array(sealed.length).fill(null);
  for (const [len, idx] of groupByLength(sealed, BLOCK)) {
    if (len < 0) continue; // shorter than a tag: stays null
    if (len === 2 * BLOCK) {
      openBatchTwoBlocks(st, d, sealed, idx, out);
      continue;
    }
    const ivs = idx.map((i) => sealed[i].subarray(0, BLOCK));
    const pts = ctrBatch(st, ivs, idx.map((i) => sealed[i].subarray(BLOCK)), len);
    const tags = s2vBatch(st, d, pts, len);
    idx.forEach((i, k) => {
      if (equal16(tags.subarray(k * BLOCK, (k + 1) * BLOCK), ivs[k])) out[i] = pts[k];
      else pts[k].fill(0);
    });
  }
  return out;
}

/** sivSeal of many plaintexts under one key and one associated-data list. */
export function sivSealBatch(key: Uint8Array, plaintexts: readonly Uint8Array[], associatedData: readonly Uint8Array[]): Buffer[] {
  return sealBatch(keyState(key), plaintexts, associatedData);
}
/** sivOpen of many values; an entry is null where that value does not authenticate. */
export function sivOpenBatch(key: Uint8Array, sealed: readonly Uint8Array[], associatedData: readonly Uint8Array[]): (Buffer | null)[] {
  return openBatch(keyState(key), sealed, associatedData);
}
export function sivSealBatchWithDoubledKey(key: Uint8Array, plaintexts: readonly Uint8Array[], associatedData: readonly Uint8Array[]): Buffer[] {
  return sealBatch(keyState(key, true), plaintexts, associatedData);
}
export function sivOpenBatchWithDoubledKey(key: Uint8Array, sealed: readonly Uint8Array[], associatedData: readonly Uint8Array[]): (Buffer | null)[] {
  return openBatch(keyState(key, true), sealed, associatedData);
}
