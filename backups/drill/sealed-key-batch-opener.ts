// Opening C2's sealed keys in bulk for the drill's "every key decrypts" check. C2 seals each 32-byte
// key as AES-SIV (RFC 5297) with the key dbKey‖dbKey and one empty associated-data item, so the CMAC
// and CTR halves use the same AES-256 key, the associated-data part of S2V is a constant, and every
// AES call of N values can run as ONE aes-256-ecb pass over N blocks (three passes in all) instead of
// several cipher objects per value. Same result as lib/e4/keystore.ts openDbValue for each value
// (test/drill/sealed-key-batch-opener.test.ts checks both ways); other lengths fall back to it.
// When lib/e4/keystore.ts grows an openDbValuesBatch, the drill uses that instead.
import crypto from 'node:crypto';
import { openDbValue } from '../../lib/e4/keystore.ts';

const BLOCK = 16;

function ecb(key: Uint8Array, data: Buffer): Buffer {
  const c = crypto.createCipheriv('aes-256-ecb', key, null);
  c.setAutoPadding(false);
  return c.update(data);
}

/** 32-bit word view of a buffer (copied when Node handed out an unaligned slice of its pool). */
function words(b: Buffer): Uint32Array {
  if (b.byteOffset % 4 === 0) return new Uint32Array(b.buffer, b.byteOffset, b.length >> 2);
  return new Uint32Array(new Uint8Array(b).buffer);
}

/** GF(2^128) doubling (RFC 5297 dbl). */
function dbl(b: Buffer): Buffer {
  const out = Buffer.alloc(BLOCK);
  let carry = 0;
  for (let i = BLOCK - 1; i >= 0; i--) {
    out[i] = ((b[i] << 1) | carry) & 0xff;
    carry = b[i] >> 7;
  }
  if (b[0] & 0x80) out[BLOCK - 1] ^= 0x87;
  return out;
}

function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.alloc(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] ^ b[i];
  return out;
}

/** Per-key constants: CMAC subkey K1, and D = dbl(CMAC(<zero>)) xor CMAC(<empty AD>) from S2V. */
function constants(dbKey: Uint8Array): { k1: Buffer; dFinal: Buffer } {
  const l = ecb(dbKey, Buffer.alloc(BLOCK));
  const k1 = dbl(l);
  const k2 = dbl(k1);
  const cmacZero = ecb(dbKey, k1); // one complete zero block: E(0 xor K1)
  const pad = Buffer.alloc(BLOCK);
  pad[0] = 0x80;
  const cmacEmpty = ecb(dbKey, xor(pad, k2)); // empty message: E(pad xor K2)
  return { k1, dFinal: xor(dbl(cmacZero), cmacEmpty) };
}

/** Open many sealed 48-byte values; null where the value does not authenticate under dbKey. */
export function openSealedKeysBatch(dbKey: Uint8Array, sealed: Uint8Array[]): (Uint8Array | null)[] {
  if (dbKey.length !== 32) throw new Error(`DB key must be 32 bytes (from deriveDbKey), got ${dbKey.length}`);
  const out: (Uint8Array | null)[] = new Array(sealed.length).fill(null);
  const idx: number[] = [];
  for (let i = 0; i < sealed.length; i++) {
    if (sealed[i].length === 48) idx.push(i);
    else {
      try { out[i] = openDbValue(dbKey, sealed[i]); } catch { out[i] = null; }
    }
  }
  const n = idx.length;
  if (!n) return out;
  const { k1, dFinal } = constants(dbKey);
  // All values in one aligned buffer, so the XORs below run on 32-bit words.
  const all = new Uint8Array(n * 48);
  for (let j = 0; j < n; j++) all.set(sealed[idx[j]], j * 48);
  const allW = new Uint32Array(all.buffer);
  // 1. CTR keystream: E(Q), E(Q+1) with Q = V with bits 63 and 31 cleared (no carry can leave the last 32 bits).
  const ctr = Buffer.alloc(n * 2 * BLOCK);
  for (let j = 0; j < n; j++) {
    const o = j * 32;
    ctr.set(all.subarray(j * 48, j * 48 + BLOCK), o);
    ctr[o + 8] &= 0x7f;
    ctr[o + 12] &= 0x7f;
    ctr.copy(ctr, o + BLOCK, o, o + BLOCK);
    ctr.writeUInt32BE((ctr.readUInt32BE(o + BLOCK + 12) + 1) >>> 0, o + BLOCK + 12);
  }
  const ks = ecb(dbKey, ctr);
  const ksW = words(ks);
  const plain = new Uint8Array(n * 32);
  const plainW = new Uint32Array(plain.buffer);
  for (let j = 0; j < n; j++) {
    const p = j * 8, c = j * 12 + 4;
    for (let w = 0; w < 8; w++) plainW[p + w] = allW[c + w] ^ ksW[p + w];
  }
  // 2. S2V: V' = CMAC(M1 ‖ (M2 xor D)), two complete blocks: X1 = E(M1), V' = E(X1 xor M2 xor D xor K1).
  const m1W = new Uint32Array(n * 4);
  const m1 = Buffer.from(m1W.buffer);
  for (let j = 0; j < n; j++) for (let w = 0; w < 4; w++) m1W[j * 4 + w] = plainW[j * 8 + w];
  const x1 = ecb(dbKey, m1);
  const x1W = words(x1);
  const dkB = xor(dFinal, k1);
  const dk = new Uint32Array(new Uint8Array(dkB).buffer);
  for (let j = 0; j < n; j++) for (let w = 0; w < 4; w++) x1W[j * 4 + w] ^= plainW[j * 8 + 4 + w] ^ dk[w];
  const v = ecb(dbKey, Buffer.from(x1W.buffer, x1W.byteOffset, x1W.byteLength));
  const vW = words(v);
  // 3. Compare with the stored tag.
  for (let j = 0; j < n; j++) {
    const t = j * 12, q = j * 4;
    const diff = (vW[q] ^ allW[t]) | (vW[q + 1] ^ allW[t + 1]) | (vW[q + 2] ^ allW[t + 2]) | (vW[q + 3] ^ allW[t + 3]);
    out[idx[j]] = diff === 0 ? plain.subarray(j * 32, j * 32 + 32) : null;
  }
  return out;
}
