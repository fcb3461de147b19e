import { describe, it, expect } from 'vitest';
import crypto from 'node:crypto';
import { deriveDbKey, sealDbValue, openDbValue, openDbValuesBatch } from '../../lib/e4/keystore.ts';

describe('openDbValuesBatch: opening C2 sealed keys in bulk', () => {
  const dbKey = deriveDbKey('batch opener test passphrase');

  it('opens exactly what openDbValue opens, value by value, and rejects what it rejects', () => {
    const plains = Array.from({ length: 3000 }, () => crypto.randomBytes(32));
    const sealed: Uint8Array[] = plains.map((p) => sealDbValue(dbKey, p));
    // Damage: flipped tag byte, flipped ciphertext byte, a value sealed under another key, another length.
    sealed[10] = Buffer.from(sealed[10]); (sealed[10] as Buffer)[3] ^= 1;
    sealed[20] = Buffer.from(sealed[20]); (sealed[20] as Buffer)[40] ^= 0x80;
    sealed[30] = sealDbValue(crypto.randomBytes(32), plains[30]);
    sealed[40] = sealDbValue(dbKey, crypto.randomBytes(64));
    const got = openDbValuesBatch(dbKey, sealed);
    for (let i = 0; i < sealed.length; i++) {
      let want: Buffer | null;
      try { want = openDbValue(dbKey, sealed[i]); } catch { want = null; }
      if (want === null) expect(got[i], `value ${i}`).toBeNull();
      else expect(Buffer.from(got[i]!).equals(want), `value ${i}`).toBe(true);
    }
    expect(got.filter((g) => g === null).length).toBe(3);
    expect(Buffer.from(got[0]!).equals(plains[0])).toBe(true);
    expect(got[40]!.length).toBe(64);
  });

  it('handles batches of one and a few values (small buffers)', () => {
    for (const n of [1, 2, 5]) {
      const plains = Array.from({ length: n }, () => crypto.randomBytes(32));
      const got = openDbValuesBatch(dbKey, plains.map((p) => sealDbValue(dbKey, p)));
      got.forEach((g, i) => expect(Buffer.from(g!).equals(plains[i])).toBe(true));
    }
  });

  it('opens nothing under a wrong key', () => {
    const sealed = Array.from({ length: 100 }, () => sealDbValue(dbKey, crypto.randomBytes(32)));
    expect(openDbValuesBatch(deriveDbKey('some other passphrase here'), sealed).every((x) => x === null)).toBe(true);
  });
});
