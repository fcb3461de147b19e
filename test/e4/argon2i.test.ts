import { describe, expect, it } from 'vitest';
import { argon2i } from '../../lib/e4/argon2i.ts';

describe('Argon2i v1.3 (RFC 9106)', () => {
  // RFC 9106 section 5.2: Argon2i test vector.
  const rfc = {
    password: new Uint8Array(32).fill(0x01),
    salt: new Uint8Array(16).fill(0x02),
    opts: { t: 3, mKiB: 32, p: 4, dkLen: 32, secret: new Uint8Array(8).fill(0x03), associatedData: new Uint8Array(12).fill(0x04) },
    tag: 'c814d9d1dc7f37aa13f0d77f2494bda1c8de6b016dd388d29952a4c4672b6ce8',
  };

  for (const engine of ['js', 'wasm'] as const) {
    it(`matches the RFC 9106 Argon2i vector (${engine} kernel)`, () => {
      expect(argon2i(rfc.password, rfc.salt, { ...rfc.opts, engine }).toString('hex')).toBe(rfc.tag);
    });
  }

  it('accepts an empty salt, and the salt changes the output', () => {
    const o = { t: 2, mKiB: 64, p: 2, dkLen: 32 };
    const empty = argon2i('a password of 16+ bytes', new Uint8Array(0), o);
    const salted = argon2i('a password of 16+ bytes', new Uint8Array(8), o);
    expect(empty.length).toBe(32);
    expect(empty.equals(salted)).toBe(false);
  });

  it('js and wasm kernels agree on odd geometries (m not a multiple of 4p, several passes, long outputs)', () => {
    for (const o of [
      { t: 1, mKiB: 8, p: 1, dkLen: 4 },
      { t: 3, mKiB: 101, p: 3, dkLen: 100 },
      { t: 2, mKiB: 1024, p: 4, dkLen: 64 },
      { t: 1, mKiB: 600, p: 1, dkLen: 65 },
    ]) {
      const js = argon2i('pw', new Uint8Array(0), { ...o, engine: 'js' });
      const wasm = argon2i('pw', new Uint8Array(0), { ...o, engine: 'wasm' });
      expect(wasm.toString('hex')).toBe(js.toString('hex'));
      expect(js.length).toBe(o.dkLen);
    }
  });

  it('refuses parameters RFC 9106 does not allow, naming the option', () => {
    expect(() => argon2i('pw', new Uint8Array(0), { t: 0, mKiB: 64, p: 1, dkLen: 32 })).toThrow(/option t/);
    expect(() => argon2i('pw', new Uint8Array(0), { t: 1, mKiB: 7, p: 1, dkLen: 32 })).toThrow(/option mKiB/);
    expect(() => argon2i('pw', new Uint8Array(0), { t: 1, mKiB: 64, p: 1, dkLen: 3 })).toThrow(/option dkLen/);
  });
});
