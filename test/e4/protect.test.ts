import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  E4Error, NotAuthenticError, protectSymKey, TimestampInFutureError, TimestampTooOldError, unprotectSymKey,
} from '../../lib/e4/index.ts';

describe('symmetric protection (timestamp ‖ AES-SIV)', () => {
  const key = randomBytes(32);
  const t0 = Date.UTC(2026, 0, 1, 12, 0, 0);

  it('lays out LE64 seconds ‖ tag ‖ ciphertext and round-trips', () => {
    const p = protectSymKey(Buffer.from('hello'), key, t0 + 999);
    expect(p.length).toBe(8 + 16 + 5);
    expect(Number(p.readBigUInt64LE(0))).toBe(t0 / 1000);
    expect(unprotectSymKey(p, key, t0 + 5000).toString()).toBe('hello');
  });

  it('accepts up to 10 minutes of age and refuses older or future messages with distinct errors', () => {
    const p = protectSymKey(Buffer.from('x'), key, t0);
    expect(unprotectSymKey(p, key, t0 + 600_000).toString()).toBe('x');
    expect(() => unprotectSymKey(p, key, t0 + 600_001)).toThrow(TimestampTooOldError);
    expect(() => unprotectSymKey(p, key, t0 - 1)).toThrow(TimestampInFutureError);
    try {
      unprotectSymKey(p, key, t0 - 1000);
    } catch (e) {
      expect((e as E4Error).code).toBe('TIMESTAMP_IN_FUTURE');
    }
  });

  it('binds the timestamp: moving it makes the message fail authentication, not just the window check', () => {
    const p = protectSymKey(Buffer.from('payload'), key, t0);
    const moved = Buffer.from(p);
    moved.writeBigUInt64LE(BigInt(t0 / 1000 + 1), 0);
    expect(() => unprotectSymKey(moved, key, t0 + 2000)).toThrow(NotAuthenticError);
    expect(() => unprotectSymKey(p, randomBytes(32), t0)).toThrow(NotAuthenticError);
  });

  it('refuses what e4go refuses: short inputs, wrong-size and all-zero keys', () => {
    expect(() => unprotectSymKey(Buffer.alloc(24), key, t0)).toThrow(/needs more than 24/);
    expect(() => protectSymKey(Buffer.from('x'), Buffer.alloc(31, 1))).toThrow(/32 bytes/);
    expect(() => protectSymKey(Buffer.from('x'), Buffer.alloc(32))).toThrow(/all zeros/);
  });
});
