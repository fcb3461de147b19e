// Argon2i, version 0x13, as specified by RFC 9106, with BLAKE2b from @noble/hashes.
//
// Why not @noble/hashes' own argon2i: it refuses salts shorter than 8 bytes, and E4/C2 derive every
// password key with an EMPTY salt (e4go: argon2.Key(pwd, nil, 1, 64*1024, 4, 32)). Its internals are
// not exported, so the memory-filling part is written here; H0, H' and the final tag use noble's
// blake2b. The compression function runs in a WebAssembly kernel when the runtime has WebAssembly
// (lib/e4/argon2-kernel.ts); the JavaScript version below is the reference and the fallback.
import { blake2b } from '@noble/hashes/blake2b';
import { createArgon2Kernel, type Argon2Kernel } from './argon2-kernel.ts';

export interface Argon2Options {
  /** passes over memory (t >= 1) */
  t: number;
  /** memory in KiB (m >= 8p) */
  mKiB: number;
  /** lanes (p >= 1) */
  p: number;
  /** output length in bytes (>= 4) */
  dkLen: number;
  /** optional secret K (RFC 9106 "secret value") */
  secret?: Uint8Array;
  /** optional associated data X */
  associatedData?: Uint8Array;
  /** force the pure-JavaScript compression (tests compare both) */
  engine?: 'js' | 'wasm';
}

const VERSION = 0x13;
const TYPE_ARGON2I = 1;
const BLOCK_WORDS = 256; // 1 KiB block as 256 uint32 (128 uint64 little-endian lo,hi pairs)
const SYNC_POINTS = 4;

function le32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n, true);
  return b;
}

function concat(parts: Uint8Array[]): Uint8Array {
  let len = 0;
  for (const p of parts) len += p.length;
  const out = new Uint8Array(len);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** H' (RFC 9106 section 3.3): variable-length hash built from BLAKE2b. */
export function hPrime(input: Uint8Array, outLen: number): Uint8Array {
  const x = concat([le32(outLen), input]);
  if (outLen <= 64) return blake2b(x, { dkLen: outLen });
  const out = new Uint8Array(outLen);
  const r = Math.ceil(outLen / 32) - 2;
  let v = blake2b(x, { dkLen: 64 });
  out.set(v.subarray(0, 32), 0);
  for (let i = 1; i < r; i++) {
    v = blake2b(v, { dkLen: 64 });
    out.set(v.subarray(0, 32), i * 32);
  }
  v = blake2b(v, { dkLen: outLen - 32 * r });
  out.set(v, r * 32);
  return out;
}

function toBytes(v: Uint8Array | string): Uint8Array {
  return typeof v === 'string' ? new TextEncoder().encode(v) : v;
}

function checkOptions(o: Argon2Options): void {
  const int = (name: string, v: number, min: number) => {
    if (!Number.isInteger(v) || v < min || v > 0xffffffff) {
      throw new Error(`argon2i option ${name} must be an integer >= ${min}, got ${v}`);
    }
  };
  int('t', o.t, 1);
  int('p', o.p, 1);
  if (o.p > 0xffffff) throw new Error(`argon2i option p must be < 2^24, got ${o.p}`);
  int('dkLen', o.dkLen, 4);
  int('mKiB', o.mKiB, 8 * o.p);
}

/**
 * Argon2i v1.3 (RFC 9106). Unlike common JS libraries the salt may be empty, as E4 requires.
 * Returns dkLen bytes.
 */
export function argon2i(password: Uint8Array | string, salt: Uint8Array, opts: Argon2Options): Buffer {
  checkOptions(opts);
  const pwd = toBytes(password);
  const { t, p, dkLen } = opts;
  const secret = opts.secret ?? new Uint8Array(0);
  const ad = opts.associatedData ?? new Uint8Array(0);
  // m' = 4p * floor(m / 4p) blocks; q = m'/p columns per lane; segment = q/4
  const mBlocks = SYNC_POINTS * p * Math.floor(opts.mKiB / (SYNC_POINTS * p));
  const laneLen = mBlocks / p;
  const segLen = laneLen / SYNC_POINTS;

  const h0 = blake2b(
    concat([
      le32(p), le32(dkLen), le32(opts.mKiB), le32(t), le32(VERSION), le32(TYPE_ARGON2I),
      le32(pwd.length), pwd, le32(salt.length), salt, le32(secret.length), secret, le32(ad.length), ad,
    ]),
    { dkLen: 64 },
  );

  const kernel = createArgon2Kernel(mBlocks, opts.engine);
  try {
    const mem = kernel.memory();
    // First two blocks of every lane: H'^(1024)(H0 ‖ LE32(j) ‖ LE32(lane))
    for (let l = 0; l < p; l++) {
      for (let j = 0; j < 2; j++) {
        const b = hPrime(concat([h0, le32(j), le32(l)]), 1024);
        const words = new Uint32Array(b.buffer, b.byteOffset, BLOCK_WORDS);
        mem.set(words, (l * laneLen + j) * BLOCK_WORDS);
      }
    }
    for (let pass = 0; pass < t; pass++) {
      for (let slice = 0; slice < SYNC_POINTS; slice++) {
        for (let lane = 0; lane < p; lane++) {
          fillSegment(kernel, pass, lane, slice, { p, t, mBlocks, laneLen, segLen });
        }
      }
    }
    // C = XOR of the last block of every lane; tag = H'^(dkLen)(C)
    const c = new Uint32Array(BLOCK_WORDS);
    for (let l = 0; l < p; l++) {
      const off = (l * laneLen + laneLen - 1) * BLOCK_WORDS;
      for (let i = 0; i < BLOCK_WORDS; i++) c[i] ^= mem[off + i];
    }
    const out = hPrime(new Uint8Array(c.buffer), dkLen);
    c.fill(0);
    return Buffer.from(out.buffer, out.byteOffset, out.byteLength);
  } finally {
    kernel.release();
  }
}

interface Geometry {
  p: number;
  t: number;
  mBlocks: number;
  laneLen: number;
  segLen: number;
}

/** high 32 bits of the 64-bit product of two uint32 values, exactly */
function mulHi32(a: number, b: number): number {
  const a0 = a & 0xffff, a1 = a >>> 16, b0 = b & 0xffff, b1 = b >>> 16;
  const t = a0 * b0;
  const m1 = a1 * b0;
  const m2 = a0 * b1;
  const mid = (t >>> 16) + (m1 & 0xffff) + (m2 & 0xffff);
  return (a1 * b1 + (m1 >>> 16) + (m2 >>> 16) + Math.floor(mid / 65536)) >>> 0;
}

function fillSegment(k: Argon2Kernel, pass: number, lane: number, slice: number, g: Geometry): void {
  const { p, t, mBlocks, laneLen, segLen } = g;
  // Argon2i address generation: input block Z = (pass, lane, slice, m', t, type, counter, 0...)
  const input = k.inputBlock();
  input.fill(0);
  input[0] = pass;
  input[2] = lane;
  input[4] = slice;
  input[6] = mBlocks;
  input[8] = t;
  input[10] = TYPE_ARGON2I;
  const addr = k.addressBlock();
  let start = 0;
  if (pass === 0 && slice === 0) {
    start = 2;
    nextAddresses(k, input);
  }
  let cur = lane * laneLen + slice * segLen + start;
  for (let i = start; i < segLen; i++, cur++) {
    // the previous block; the first block of a lane follows the lane's last block (later passes)
    const prev = cur % laneLen === 0 ? cur + laneLen - 1 : cur - 1;
    if (i % 128 === 0) nextAddresses(k, input);
    const j1 = addr[2 * (i % 128)];
    const j2 = addr[2 * (i % 128) + 1];
    const refLane = pass === 0 && slice === 0 ? lane : j2 % p;
    const sameLane = refLane === lane;
    let area: number;
    if (pass === 0) {
      if (slice === 0) area = i - 1;
      else if (sameLane) area = slice * segLen + i - 1;
      else area = slice * segLen + (i === 0 ? -1 : 0);
    } else if (sameLane) area = laneLen - segLen + i - 1;
    else area = laneLen - segLen + (i === 0 ? -1 : 0);
    let rel = mulHi32(j1, j1);
    rel = area - 1 - mulHi32(area, rel);
    const startPos = pass !== 0 && slice !== SYNC_POINTS - 1 ? (slice + 1) * segLen : 0;
    const refIndex = (startPos + rel) % laneLen;
    k.compress(prev, refLane * laneLen + refIndex, cur, pass > 0);
  }
}

function nextAddresses(k: Argon2Kernel, input: Uint32Array): void {
  // 64-bit counter in word pair 12/13
  input[12] = (input[12] + 1) >>> 0;
  if (input[12] === 0) input[13] = (input[13] + 1) >>> 0;
  k.makeAddresses();
}
