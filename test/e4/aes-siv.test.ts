import { describe, expect, it } from 'vitest';
import { forgetSivKeys, sivOpen, sivOpenBatch, sivSeal, sivSealBatch, SivAuthenticationError } from '../../lib/e4/aes-siv.ts';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// RFC 5297 appendix A.
const A1 = {
  key: hex('fffefdfc fbfaf9f8 f7f6f5f4 f3f2f1f0 f0f1f2f3 f4f5f6f7 f8f9fafb fcfdfeff'),
  ad: [hex('10111213 14151617 18191a1b 1c1d1e1f 20212223 24252627')],
  plaintext: hex('11223344 55667788 99aabbcc ddee'),
  output: hex('85632d07 c6e8f37f 950acd32 0a2ecc93 40c02b96 90c4dc04 daef7f6a fe5c'),
};
const A2 = {
  key: hex('7f7e7d7c 7b7a7978 77767574 73727170 40414243 44454647 48494a4b 4c4d4e4f'),
  ad: [
    hex('00112233 44556677 8899aabb ccddeeff deaddada deaddada ffeeddcc bbaa9988 77665544 33221100'),
    hex('10203040 50607080 90a0'),
    hex('09f91102 9d74e35b d84156c5 635688c0'), // the nonce is the last associated-data item
  ],
  plaintext: hex('74686973 20697320 736f6d65 20706c61 696e7465 78742074 6f20656e 63727970 74207573 696e6720 5349562d 414553'),
  output: hex(
    '7bdb6e3b 432667eb 06f4d14b ff2fbd0f cb900f2f ddbe4043 26601965 c889bf17 dba77ceb 094fa663 b7a3f748 ba8af829 ea64ad54 4a272e9c 485b62a3 fd5c0d',
  ),
};

describe('AES-SIV (RFC 5297)', () => {
  for (const [name, v] of Object.entries({ 'A.1 deterministic': A1, 'A.2 nonce-based': A2 })) {
    it(`matches RFC 5297 ${name} in both directions`, () => {
      expect(sivSeal(v.key, v.plaintext, v.ad).toString('hex')).toBe(v.output.toString('hex'));
      expect(sivOpen(v.key, v.output, v.ad).toString('hex')).toBe(v.plaintext.toString('hex'));
    });
  }

  it('rejects a flipped bit anywhere, a wrong key and wrong associated data', () => {
    for (let i = 0; i < A2.output.length; i++) {
      const bad = Buffer.from(A2.output);
      bad[i] ^= 0x01;
      expect(() => sivOpen(A2.key, bad, A2.ad)).toThrow(SivAuthenticationError);
    }
    const otherKey = Buffer.from(A2.key);
    otherKey[20] ^= 0x80; // the CTR half
    expect(() => sivOpen(otherKey, A2.output, A2.ad)).toThrow(SivAuthenticationError);
    expect(() => sivOpen(A2.key, A2.output, A2.ad.slice(0, 2))).toThrow(SivAuthenticationError);
    expect(() => sivOpen(A2.key, A2.output, [A2.ad[1], A2.ad[0], A2.ad[2]])).toThrow(SivAuthenticationError);
  });

  it('round-trips every length 0..100 bytes with 64-byte keys, across interleaved keys', () => {
    const k1 = Buffer.alloc(64, 7);
    const k2 = Buffer.alloc(64, 9);
    for (let n = 0; n <= 100; n++) {
      const pt = Buffer.alloc(n, n);
      const ad = [Buffer.alloc(n % 20, 1), Buffer.alloc(0)];
      const s1 = sivSeal(k1, pt, ad);
      const s2 = sivSeal(k2, pt, ad);
      expect(s1.length).toBe(16 + n);
      expect(s1.equals(s2)).toBe(false);
      expect(sivOpen(k1, s1, ad).equals(pt)).toBe(true);
      expect(sivOpen(k2, s2, ad).equals(pt)).toBe(true);
      expect(() => sivOpen(k2, s1, ad)).toThrow(SivAuthenticationError);
    }
  });

  it('opens sealed data at any byte alignment inside a larger buffer (MQTT payload slices)', () => {
    const key = Buffer.alloc(64, 3);
    const pt = Buffer.from('x'.repeat(1000));
    const sealed = sivSeal(key, pt, [Buffer.from('ts')]);
    for (let shift = 0; shift < 8; shift++) {
      const big = Buffer.alloc(sealed.length + 16);
      sealed.copy(big, shift);
      expect(sivOpen(key, big.subarray(shift, shift + sealed.length), [Buffer.from('ts')]).equals(pt)).toBe(true);
    }
  });

  it('batch seal/open equal the one-by-one results for mixed lengths, with null for bad values', () => {
    for (const key of [A1.key, Buffer.alloc(64, 5), Buffer.concat([Buffer.alloc(32, 6), Buffer.alloc(32, 6)])]) {
      const ad = [Buffer.alloc(0), Buffer.from('ad')];
      const plains = Array.from({ length: 60 }, (_, i) => Buffer.alloc(i % 41, i));
      const sealed = sivSealBatch(key, plains, ad);
      sealed.forEach((s, i) => expect(s.equals(sivSeal(key, plains[i], ad))).toBe(true));
      const damaged = sealed.map((s, i) => {
        const c = Buffer.from(s);
        if (i % 7 === 3) c[c.length - 1] ^= 0x40;
        return c;
      });
      damaged.push(Buffer.alloc(5));
      const opened = sivOpenBatch(key, damaged, ad);
      expect(opened.length).toBe(61);
      opened.forEach((o, i) => {
        if (i === 60 || i % 7 === 3) expect(o).toBeNull();
        else expect(o!.equals(plains[i])).toBe(true);
      });
    }
    // RFC 5297 A.2 through the batch path too
    expect(sivSealBatch(A2.key, [A2.plaintext], A2.ad)[0].equals(A2.output)).toBe(true);
  });

  it('gives the same results after the key cache is dropped, and for the same key in a different buffer', () => {
    const before = sivSeal(A1.key, A1.plaintext, A1.ad);
    forgetSivKeys();
    expect(sivSeal(Buffer.from(A1.key), A1.plaintext, A1.ad).equals(before)).toBe(true);
    expect(sivOpen(A1.key, before, A1.ad).equals(A1.plaintext)).toBe(true);
  });

  it('refuses keys of the wrong size and inputs shorter than the tag', () => {
    expect(() => sivSeal(Buffer.alloc(31), Buffer.alloc(1), [])).toThrow(/32, 48 or 64 bytes/);
    expect(() => sivOpen(Buffer.alloc(64, 1), Buffer.alloc(15), [])).toThrow(SivAuthenticationError);
  });
});
