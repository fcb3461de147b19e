import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  c2CommandKeyForDevice, clientIdFromName, commandKeyFromC2, E4Error, ed25519PublicFromPrivate, generateEd25519KeyPair,
  generateX25519KeyPair, protectSignedMessage, protectSymKey, unprotectSignedMessage, unprotectSymKey, x25519PublicFromPrivate,
} from '../../lib/e4/index.ts';

describe('pubkey mode', () => {
  it('C2 and the device arrive at the same command key, and a different device does not', () => {
    const c2 = generateX25519KeyPair();
    const dev = generateEd25519KeyPair();
    const other = generateEd25519KeyPair();
    expect(x25519PublicFromPrivate(c2.privateKey).equals(c2.publicKey)).toBe(true);
    expect(dev.privateKey.length).toBe(64);
    expect(dev.privateKey.subarray(32).equals(dev.publicKey)).toBe(true);
    expect(ed25519PublicFromPrivate(dev.privateKey).equals(dev.publicKey)).toBe(true);
    const k = c2CommandKeyForDevice(c2.privateKey, dev.publicKey);
    expect(commandKeyFromC2(c2.publicKey, dev.privateKey).equals(k)).toBe(true);
    expect(commandKeyFromC2(c2.publicKey, other.privateKey).equals(k)).toBe(false);
    const cmd = protectSymKey(Buffer.of(0x01), k);
    expect(unprotectSymKey(cmd, commandKeyFromC2(c2.publicKey, dev.privateKey))[0]).toBe(0x01);
  });

  it('signed messages: layout, sender lookup, signature and timestamp checks', () => {
    const sender = generateEd25519KeyPair();
    const id = clientIdFromName('sender');
    const topicKey = randomBytes(32);
    const now = Date.now();
    const m = protectSignedMessage(Buffer.from('temp=21'), topicKey, id, sender.privateKey, now);
    expect(m.length).toBe(8 + 16 + 16 + 7 + 64);
    expect(m.subarray(8, 24).equals(id)).toBe(true);
    const keys = new Map([[id.toString('hex'), sender.publicKey]]);
    expect(unprotectSignedMessage(m, topicKey, keys, now).payload.toString()).toBe('temp=21');
    expect(unprotectSignedMessage(m, topicKey, (sid) => (sid.equals(id) ? sender.publicKey : undefined), now).signerId.equals(id)).toBe(true);

    const impostor = generateEd25519KeyPair();
    const forged = protectSignedMessage(Buffer.from('temp=99'), topicKey, id, impostor.privateKey, now);
    expect(() => unprotectSignedMessage(forged, topicKey, keys, now)).toThrow(/does not verify/);
    const e = (() => { try { unprotectSignedMessage(m, randomBytes(32), keys, now); } catch (x) { return x as E4Error; } })();
    expect(e?.code).toBe('NOT_AUTHENTIC');
    expect(() => unprotectSignedMessage(m, topicKey, keys, now + 11 * 60_000)).toThrow(/more than the 600 s/);
    expect(() => unprotectSignedMessage(m.subarray(0, 100), topicKey, keys, now)).toThrow(/needs at least 104/);
  });
});
