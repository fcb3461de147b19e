import { describe, expect, it } from 'vitest';
import {
  dbKeyFingerprint, deriveDbKey, deriveKeyFromPassword, openDbValue, openDbValuesBatch, passphraseFingerprint, sealDbValue,
  sealDbValuesBatch, WrongPassphraseError,
} from '../../lib/e4/keystore.ts';
import { randomBytes } from 'node:crypto';

describe('C2 key store at rest', () => {
  const passphrase = 'correct horse battery staple';
  const dbKey = deriveDbKey(passphrase);

  it('seals a 32-byte key into 48 bytes that open with the same DB key only', () => {
    const topicKey = randomBytes(32);
    const sealed = sealDbValue(dbKey, topicKey);
    expect(sealed.length).toBe(48);
    expect(openDbValue(dbKey, sealed).equals(topicKey)).toBe(true);
    // deterministic, as C2's (no per-row salt)
    expect(sealDbValue(dbKey, topicKey).equals(sealed)).toBe(true);
    const wrong = deriveDbKey('correct horse battery stapler');
    expect(() => openDbValue(wrong, sealed, 'topic_keys.key of topic "a/b"')).toThrow(WrongPassphraseError);
    expect(() => openDbValue(wrong, sealed, 'topic_keys.key of topic "a/b"')).toThrow(/topic_keys.key of topic "a\/b".*db-encryption-passphrase/);
  });

  it('opens and seals whole key stores in batches, with the same bytes as one by one', () => {
    const keys = Array.from({ length: 1000 }, () => randomBytes(32));
    const sealed = sealDbValuesBatch(dbKey, keys);
    expect(sealed.every((s, i) => s.equals(sealDbValue(dbKey, keys[i])))).toBe(true);
    const opened = openDbValuesBatch(dbKey, sealed);
    expect(opened.every((o, i) => o !== null && o.equals(keys[i]))).toBe(true);
    const wrong = openDbValuesBatch(deriveDbKey('a different passphrase!'), sealed);
    expect(wrong.every((o) => o === null)).toBe(true);
  });

  it('derives with the password rules of e4go (>= 16 bytes)', () => {
    expect(() => deriveDbKey('too short')).toThrow(/at least 16 bytes/);
    expect(() => deriveKeyFromPassword(Buffer.from([0xff, 0xfe, ...Buffer.alloc(20, 0x41)]))).toThrow(/UTF-8/);
    expect(deriveKeyFromPassword(passphrase).equals(dbKey)).toBe(true);
  });

  it('fingerprints the passphrase without revealing the DB key', () => {
    const fp = passphraseFingerprint(passphrase);
    expect(fp).toMatch(/^[0-9a-f]{64}$/);
    expect(fp).toBe(dbKeyFingerprint(dbKey));
    expect(fp).not.toContain(dbKey.toString('hex').slice(0, 16));
    expect(dbKeyFingerprint(deriveDbKey(passphrase + '!'))).not.toBe(fp);
  });

  it('refuses DB keys of the wrong size with a clear message', () => {
    expect(() => openDbValue(Buffer.alloc(16, 1), Buffer.alloc(48))).toThrow(/DB key must be 32 bytes/);
  });
});
