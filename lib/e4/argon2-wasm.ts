// The Argon2 compression function G as a WebAssembly function, for speed: WebAssembly has native
// 64-bit add/multiply/rotate, which JavaScript emulates with pairs of 32-bit numbers. The module is
// assembled here at load time from its instruction list (no binary file in the repository, no
// assembler dependency); the instruction sequence mirrors the readable JavaScript kernel in
// argon2-kernel.ts, and tests compare the two and check both against RFC 9106.
//
// Exported function c(x, y, out, xor): byte offsets of three 1 KiB blocks in the imported memory.
//   R = X ^ Y; Q = P(rows of R) then P(columns); B[out] = Q ^ R ^ (xor ? B[out] : 0)
// Scratch: R at bytes [0, 1024), Q at [1024, 2048).

/** Memory layout shared with argon2-kernel.ts. */
export const WASM_LAYOUT = {
  R: 0,
  Q: 1024,
  ZERO: 2048,
  INPUT: 3072,
  TMP: 4096,
  ADDRESS: 5120,
  /** first byte of Argon2's block memory */
  BLOCKS: 8192,
} as const;

const OP = {
  end: 0x0b, localGet: 0x20, localSet: 0x21, localTee: 0x22, i32Const: 0x41, i64Const: 0x42,
  i64Load: 0x29, i64Store: 0x37, i64Add: 0x7c, i64Sub: 0x7d, i64Mul: 0x7e, i64And: 0x83, i64Xor: 0x85,
  i64Shl: 0x86, i64Rotr: 0x8a, i64ExtendI32U: 0xad,
} as const;

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    out.push(byte);
  } while (n > 0);
  return out;
}

function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const byte = ((n % 128) + 128) % 128;
    n = Math.floor(n / 128);
    const signBit = byte & 0x40;
    if ((n === 0 && !signBit) || (n === -1 && signBit)) {
      out.push(byte);
      return out;
    }
    out.push(byte | 0x80);
  }
}

function section(id: number, body: number[]): number[] {
  return [id, ...uleb(body.length), ...body];
}

function name(s: string): number[] {
  const b = [...Buffer.from(s, 'utf8')];
  return [...uleb(b.length), ...b];
}

/** Builds the body of c(x, y, out, xor). */
function compressBody(): number[] {
  const X = 0, Y = 1, OUT = 2, XOR = 3; // i32 params
  const V = 4; // 16 i64 locals v0..v15 at V..V+15
  const MASK = V + 16; // i64: all ones when xor, else 0
  const code: number[] = [];
  const e = (...b: number[]) => { for (const x of b) code.push(x); };
  const get = (l: number) => e(OP.localGet, ...uleb(l));
  const set = (l: number) => e(OP.localSet, ...uleb(l));
  const i32 = (n: number) => e(OP.i32Const, ...sleb(n));
  const i64 = (n: number) => e(OP.i64Const, ...sleb(n));
  const load = (offset: number) => e(OP.i64Load, 3, ...uleb(offset));
  const store = (offset: number) => e(OP.i64Store, 3, ...uleb(offset));

  // mask = 0 - (i64)xor
  i64(0); get(XOR); e(OP.i64ExtendI32U, OP.i64Sub); set(MASK);
  // R = Q = X ^ Y
  for (let k = 0; k < 128; k++) {
    i32(0); // address for the store into R
    get(X); load(8 * k);
    get(Y); load(8 * k);
    e(OP.i64Xor, OP.localTee, ...uleb(V));
    store(WASM_LAYOUT.R + 8 * k);
    i32(0); get(V); store(WASM_LAYOUT.Q + 8 * k);
  }

  // x = x + y + 2 * lo32(x) * lo32(y)
  const fBlaMka = (a: number, b: number) => {
    get(a); get(b); e(OP.i64Add);
    get(a); i64(0xffffffff); e(OP.i64And);
    get(b); i64(0xffffffff); e(OP.i64And);
    e(OP.i64Mul); i64(1); e(OP.i64Shl, OP.i64Add);
    set(a);
  };
  const xorRot = (d: number, a: number, r: number) => {
    get(d); get(a); e(OP.i64Xor); i64(r); e(OP.i64Rotr); set(d);
  };
  const G = (a: number, b: number, c: number, d: number) => {
    fBlaMka(V + a, V + b); xorRot(V + d, V + a, 32);
    fBlaMka(V + c, V + d); xorRot(V + b, V + c, 24);
    fBlaMka(V + a, V + b); xorRot(V + d, V + a, 16);
    fBlaMka(V + c, V + d); xorRot(V + b, V + c, 63);
  };
  // P on 16 words of Q at the given byte offsets
  const P = (offsets: number[]) => {
    offsets.forEach((o, i) => { i32(0); load(WASM_LAYOUT.Q + o); set(V + i); });
    G(0, 4, 8, 12); G(1, 5, 9, 13); G(2, 6, 10, 14); G(3, 7, 11, 15);
    G(0, 5, 10, 15); G(1, 6, 11, 12); G(2, 7, 8, 13); G(3, 4, 9, 14);
    offsets.forEach((o, i) => { i32(0); get(V + i); store(WASM_LAYOUT.Q + o); });
  };
  for (let r = 0; r < 8; r++) P(Array.from({ length: 16 }, (_, k) => 128 * r + 8 * k));
  for (let c = 0; c < 8; c++) {
    const offs: number[] = [];
    for (let r = 0; r < 8; r++) offs.push(128 * r + 16 * c, 128 * r + 16 * c + 8);
    P(offs);
  }
  // out = Q ^ R ^ (out & mask)
  for (let k = 0; k < 128; k++) {
    get(OUT);
    i32(0); load(WASM_LAYOUT.Q + 8 * k);
    i32(0); load(WASM_LAYOUT.R + 8 * k);
    e(OP.i64Xor);
    get(OUT); load(8 * k); get(MASK); e(OP.i64And, OP.i64Xor);
    store(8 * k);
  }
  e(OP.end);
  const locals = [1, ...uleb(17), 0x7e]; // one group: 17 x i64
  return [...locals, ...code];
}

function buildModule(): Uint8Array<ArrayBuffer> {
  const header = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
  const types = section(1, [1, 0x60, 4, 0x7f, 0x7f, 0x7f, 0x7f, 0]);
  const imports = section(2, [1, ...name('e'), ...name('m'), 0x02, 0x00, ...uleb(1)]);
  const funcs = section(3, [1, 0]);
  const exports = section(7, [1, ...name('c'), 0x00, 0]);
  const body = compressBody();
  const code = section(10, [1, ...uleb(body.length), ...body]);
  return new Uint8Array([...header, ...types, ...imports, ...funcs, ...exports, ...code]);
}

let compiled: WebAssembly.Module | undefined;

/** The compiled module (built once per process); undefined when the runtime lacks WebAssembly. */
export function argon2WasmModule(): WebAssembly.Module | undefined {
  if (typeof WebAssembly === 'undefined') return undefined;
  compiled ??= new WebAssembly.Module(buildModule());
  return compiled;
}
