// The Argon2 compression function G (RFC 9106 section 3.5, BlaMka permutation P) over a block memory.
// Blocks are 1 KiB = 128 little-endian uint64 words, held here as 256 uint32 (lo, hi) pairs.
// argon2i.ts drives the fill order; a kernel only compresses blocks by index.
import { argon2WasmModule, WASM_LAYOUT } from './argon2-wasm.ts';

export interface Argon2Kernel {
  /** the block memory, mBlocks * 256 uint32 words */
  memory(): Uint32Array;
  /** the address-generation input block Z (256 words) */
  inputBlock(): Uint32Array;
  /** the current address block (256 words), refreshed by makeAddresses */
  addressBlock(): Uint32Array;
  /** B[out] = G(B[prev], B[ref]) (xor B[out] when `xor`, as v1.3 does after the first pass) */
  compress(prev: number, ref: number, out: number, xor: boolean): void;
  /** address block = G(0, G(0, input)) */
  makeAddresses(): void;
  /** wipe and drop the memory */
  release(): void;
}

const BW = 256;

// One BlaMka G on four uint64 words at uint64 indices a, b, c, d of v (uint32 pairs).
// x = x + y + 2 * lo32(x) * lo32(y), with 64-bit wrap-around.
function gb(v: Uint32Array, a: number, b: number, c: number, d: number): void {
  let al = v[2 * a], ah = v[2 * a + 1], bl = v[2 * b], bh = v[2 * b + 1];
  let cl = v[2 * c], ch = v[2 * c + 1], dl = v[2 * d], dh = v[2 * d + 1];
  let pl: number, ph: number, s: number, tl: number, th: number;

  // a = a + b + 2ab; d = rotr(d ^ a, 32)
  pl = Math.imul(al, bl) >>> 0;
  ph = ((al * bl - pl) * 2.3283064365386963e-10 + 0.5) >>> 0;
  ph = ((ph << 1) | (pl >>> 31)) >>> 0;
  pl = (pl << 1) >>> 0;
  s = al + bl + pl;
  ah = (ah + bh + ph + ((s * 2.3283064365386963e-10) | 0)) >>> 0;
  al = s >>> 0;
  tl = dl ^ al; th = dh ^ ah;
  dl = th >>> 0; dh = tl >>> 0;
  // c = c + d + 2cd; b = rotr(b ^ c, 24)
  pl = Math.imul(cl, dl) >>> 0;
  ph = ((cl * dl - pl) * 2.3283064365386963e-10 + 0.5) >>> 0;
  ph = ((ph << 1) | (pl >>> 31)) >>> 0;
  pl = (pl << 1) >>> 0;
  s = cl + dl + pl;
  ch = (ch + dh + ph + ((s * 2.3283064365386963e-10) | 0)) >>> 0;
  cl = s >>> 0;
  tl = bl ^ cl; th = bh ^ ch;
  bl = ((tl >>> 24) | (th << 8)) >>> 0; bh = ((th >>> 24) | (tl << 8)) >>> 0;
  // a = a + b + 2ab; d = rotr(d ^ a, 16)
  pl = Math.imul(al, bl) >>> 0;
  ph = ((al * bl - pl) * 2.3283064365386963e-10 + 0.5) >>> 0;
  ph = ((ph << 1) | (pl >>> 31)) >>> 0;
  pl = (pl << 1) >>> 0;
  s = al + bl + pl;
  ah = (ah + bh + ph + ((s * 2.3283064365386963e-10) | 0)) >>> 0;
  al = s >>> 0;
  tl = dl ^ al; th = dh ^ ah;
  dl = ((tl >>> 16) | (th << 16)) >>> 0; dh = ((th >>> 16) | (tl << 16)) >>> 0;
  // c = c + d + 2cd; b = rotr(b ^ c, 63)
  pl = Math.imul(cl, dl) >>> 0;
  ph = ((cl * dl - pl) * 2.3283064365386963e-10 + 0.5) >>> 0;
  ph = ((ph << 1) | (pl >>> 31)) >>> 0;
  pl = (pl << 1) >>> 0;
  s = cl + dl + pl;
  ch = (ch + dh + ph + ((s * 2.3283064365386963e-10) | 0)) >>> 0;
  cl = s >>> 0;
  tl = bl ^ cl; th = bh ^ ch;
  bl = ((tl << 1) | (th >>> 31)) >>> 0; bh = ((th << 1) | (tl >>> 31)) >>> 0;

  v[2 * a] = al; v[2 * a + 1] = ah; v[2 * b] = bl; v[2 * b + 1] = bh;
  v[2 * c] = cl; v[2 * c + 1] = ch; v[2 * d] = dl; v[2 * d + 1] = dh;
}

// P over 16 uint64 words given by their indices.
function permute(v: Uint32Array, i: readonly number[]): void {
  gb(v, i[0], i[4], i[8], i[12]);
  gb(v, i[1], i[5], i[9], i[13]);
  gb(v, i[2], i[6], i[10], i[14]);
  gb(v, i[3], i[7], i[11], i[15]);
  gb(v, i[0], i[5], i[10], i[15]);
  gb(v, i[1], i[6], i[11], i[12]);
  gb(v, i[2], i[7], i[8], i[13]);
  gb(v, i[3], i[4], i[9], i[14]);
}

const ROWS: number[][] = [];
const COLS: number[][] = [];
for (let r = 0; r < 8; r++) ROWS.push(Array.from({ length: 16 }, (_, k) => 16 * r + k));
for (let c = 0; c < 8; c++) {
  const idx: number[] = [];
  for (let r = 0; r < 8; r++) idx.push(16 * r + 2 * c, 16 * r + 2 * c + 1);
  COLS.push(idx);
}

/** G(X, Y) into out (xor'ed into out's previous value when xor). Buffers of 256 words at offsets. */
function compressJs(
  x: Uint32Array, xo: number, y: Uint32Array, yo: number, out: Uint32Array, oo: number, xor: boolean,
  r: Uint32Array, q: Uint32Array,
): void {
  for (let i = 0; i < BW; i++) r[i] = x[xo + i] ^ y[yo + i];
  q.set(r);
  for (const row of ROWS) permute(q, row);
  for (const col of COLS) permute(q, col);
  if (xor) for (let i = 0; i < BW; i++) out[oo + i] ^= q[i] ^ r[i];
  else for (let i = 0; i < BW; i++) out[oo + i] = q[i] ^ r[i];
}

/** Pure-JavaScript kernel: the readable reference, used where WebAssembly is missing. */
export function createJsArgon2Kernel(mBlocks: number): Argon2Kernel {
  let mem = new Uint32Array(mBlocks * BW);
  const input = new Uint32Array(BW);
  const addr = new Uint32Array(BW);
  const zero = new Uint32Array(BW);
  const r = new Uint32Array(BW);
  const q = new Uint32Array(BW);
  const tmp = new Uint32Array(BW);
  return {
    memory: () => mem,
    inputBlock: () => input,
    addressBlock: () => addr,
    compress(prev, ref, out, xor) {
      compressJs(mem, prev * BW, mem, ref * BW, mem, out * BW, xor, r, q);
    },
    makeAddresses() {
      compressJs(zero, 0, input, 0, tmp, 0, false, r, q);
      compressJs(zero, 0, tmp, 0, addr, 0, false, r, q);
    },
    release() {
      mem.fill(0);
      mem = new Uint32Array(0);
    },
  };
}

/** WebAssembly kernel (argon2-wasm.ts): same results, several times faster. */
export function createWasmArgon2Kernel(mBlocks: number, module: WebAssembly.Module): Argon2Kernel {
  const L = WASM_LAYOUT;
  const bytes = L.BLOCKS + mBlocks * 1024;
  let memory: WebAssembly.Memory | undefined = new WebAssembly.Memory({ initial: Math.ceil(bytes / 65536) });
  const c = (new WebAssembly.Instance(module, { e: { m: memory } }).exports as { c: (x: number, y: number, o: number, xor: number) => void }).c;
  const buf = memory.buffer;
  const mem = new Uint32Array(buf, L.BLOCKS, mBlocks * BW);
  const input = new Uint32Array(buf, L.INPUT, BW);
  const addr = new Uint32Array(buf, L.ADDRESS, BW);
  return {
    memory: () => mem,
    inputBlock: () => input,
    addressBlock: () => addr,
    compress(prev, ref, out, xor) {
      c(L.BLOCKS + prev * 1024, L.BLOCKS + ref * 1024, L.BLOCKS + out * 1024, xor ? 1 : 0);
    },
    makeAddresses() {
      c(L.ZERO, L.INPUT, L.TMP, 0);
      c(L.ZERO, L.TMP, L.ADDRESS, 0);
    },
    release() {
      if (memory) new Uint8Array(buf).fill(0);
      memory = undefined;
    },
  };
}

/** The WebAssembly kernel unless asked for 'js' or WebAssembly is missing. */
export function createArgon2Kernel(mBlocks: number, engine?: 'js' | 'wasm'): Argon2Kernel {
  if (engine === 'js') return createJsArgon2Kernel(mBlocks);
  const module = argon2WasmModule();
  if (!module) {
    if (engine === 'wasm') throw new Error('argon2i: WebAssembly is not available in this runtime');
    return createJsArgon2Kernel(mBlocks);
  }
  return createWasmArgon2Kernel(mBlocks, module);
}
