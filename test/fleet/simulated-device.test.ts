import { describe, expect, it } from 'vitest';
import crypto from 'node:crypto';
import { SimulatedDevice } from '../../lib/fleet/simulated-device.ts';
import { encodeCommand } from '../../lib/e4/commands.ts';
import { protectSymKey } from '../../lib/e4/protect.ts';
import { clientIdFromName, topicHash } from '../../lib/e4/ids.ts';
import { c2CommandKeyForDevice, generateX25519KeyPair, generateEd25519KeyPair } from '../../lib/e4/pubkey.ts';

const T0 = Date.parse('2026-01-01T00:00:00Z');
const MIN = 60_000;

function symDevice(name = 'dev') {
  const d = new SimulatedDevice({ name, mode: 'symkey' });
  const send = (cmd: Parameters<typeof encodeCommand>[0], at = T0) => d.handleCommand(protectSymKey(encodeCommand(cmd), d.identityKey, at), at);
  return { d, send };
}

describe('simulated symkey device', () => {
  it('keeps the previous topic key for 60 minutes after a rotation, then only the new one', () => {
    const { d, send } = symDevice();
    const k1 = crypto.randomBytes(32);
    const k2 = crypto.randomBytes(32);
    send({ type: 'SetTopicKey', key: k1, topicHash: topicHash('t') });
    const old = d.protect('t', Buffer.from('old'), T0);
    send({ type: 'SetTopicKey', key: k2, topicHash: topicHash('t') }, T0 + MIN);
    expect(d.topicKey('t')?.equals(k2)).toBe(true);
    const r = d.unprotect('t', old, T0 + 5 * MIN);
    expect(String(r.payload)).toBe('old');
    expect(r.usedPreviousKey).toBe(true);
    // A message protected at T0+61min with the old key: timestamp fresh, but the grace has expired.
    const lateOld = new SimulatedDevice({ name: 'x' });
    lateOld.apply({ type: 'SetTopicKey', key: k1, topicHash: topicHash('t') });
    const msg = lateOld.protect('t', Buffer.from('late'), T0 + 62 * MIN);
    expect(() => d.unprotect('t', msg, T0 + 62 * MIN)).toThrow();
    expect(String(d.unprotect('t', d.protect('t', Buffer.from('new'), T0 + 62 * MIN), T0 + 62 * MIN).payload)).toBe('new');
  });

  it('processes SetIdKey, RemoveTopic and ResetTopics, and refuses pubkey-only commands', () => {
    const { d, send } = symDevice();
    send({ type: 'SetTopicKey', key: crypto.randomBytes(32), topicHash: topicHash('a') });
    send({ type: 'SetTopicKey', key: crypto.randomBytes(32), topicHash: topicHash('b') });
    send({ type: 'RemoveTopic', topicHash: topicHash('a') });
    expect(d.topicKey('a')).toBeUndefined();
    expect(d.topicKey('b')).toBeDefined();
    send({ type: 'ResetTopics' });
    expect(d.topicKeys.size).toBe(0);
    const newId = crypto.randomBytes(32);
    send({ type: 'SetIdKey', key: newId });
    expect(d.identityKey.equals(newId)).toBe(true);
    expect(() => send({ type: 'ResetPubKeys' })).toThrow(/pubkey-mode command/);
    expect(d.counts).toMatchObject({ SetTopicKey: 2, RemoveTopic: 1, ResetTopics: 1, SetIdKey: 1, ResetPubKeys: 0 });
  });

  it('rejects commands sealed with another key, stale (>10 min) or from the future, and counts them', () => {
    const { d } = symDevice();
    const cmd = encodeCommand({ type: 'ResetTopics' });
    expect(() => d.handleCommand(protectSymKey(cmd, crypto.randomBytes(32), T0), T0)).toThrow();
    expect(() => d.handleCommand(protectSymKey(cmd, d.identityKey, T0), T0 + 11 * MIN)).toThrow(/old/i);
    expect(() => d.handleCommand(protectSymKey(cmd, d.identityKey, T0 + MIN), T0)).toThrow(/future/i);
    expect(d.commandErrors).toBe(3);
    expect(d.counts.ResetTopics).toBe(0);
  });

  it('snapshot/restore round-trips the whole key state', () => {
    const { d, send } = symDevice('snap');
    send({ type: 'SetTopicKey', key: crypto.randomBytes(32), topicHash: topicHash('t') });
    send({ type: 'SetTopicKey', key: crypto.randomBytes(32), topicHash: topicHash('t') });
    const snap = JSON.parse(JSON.stringify(d.snapshot()));
    const before = d.topicKey('t');
    send({ type: 'ResetTopics' });
    d.restore(snap);
    expect(d.topicKey('t')?.equals(before!)).toBe(true);
    expect(d.topicKeys.get(topicHash('t').toString('hex'))?.previous).toBeDefined();
    expect(() => new SimulatedDevice({ name: 'other' }).restore(snap)).toThrow(/cannot restore/);
  });
});

describe('simulated pubkey device', () => {
  it('opens commands with the key shared with C2, handles all eight commands and reads signed messages of known peers', () => {
    const c2 = generateX25519KeyPair();
    const alice = new SimulatedDevice({ name: 'alice', mode: 'pubkey', c2PublicKey: c2.publicKey });
    const bob = new SimulatedDevice({ name: 'bob', mode: 'pubkey', c2PublicKey: c2.publicKey });
    const send = (d: SimulatedDevice, cmd: Parameters<typeof encodeCommand>[0]) =>
      d.handleCommand(protectSymKey(encodeCommand(cmd), c2CommandKeyForDevice(c2.privateKey, d.keyForC2), T0), T0);
    const key = crypto.randomBytes(32);
    for (const d of [alice, bob]) send(d, { type: 'SetTopicKey', key, topicHash: topicHash('room') });
    send(bob, { type: 'SetPubKey', publicKey: alice.keyForC2, id: clientIdFromName('alice') });
    const signed = alice.protect('room', Buffer.from('hi bob'), T0);
    expect(String(bob.unprotect('room', signed, T0).payload)).toBe('hi bob');
    // Unknown signer is refused.
    expect(() => alice.unprotect('room', bob.protect('room', Buffer.from('x'), T0), T0)).toThrow(/no public key for signer/);
    send(bob, { type: 'RemovePubKey', id: clientIdFromName('alice') });
    expect(() => bob.unprotect('room', signed, T0)).toThrow(/no public key/);
    send(bob, { type: 'SetPubKey', publicKey: alice.keyForC2, id: clientIdFromName('alice') });
    send(bob, { type: 'ResetPubKeys' });
    expect(bob.pubKeys.size).toBe(0);
    const newIdentity = generateEd25519KeyPair().privateKey;
    send(bob, { type: 'SetIdKey', key: newIdentity });
    expect(bob.identityKey.equals(newIdentity)).toBe(true);
    const c2b = generateX25519KeyPair();
    send(bob, { type: 'SetC2Key', publicKey: c2b.publicKey });
    // From now on only commands sealed against the new C2 key open.
    expect(() => send(bob, { type: 'ResetTopics' })).toThrow();
    bob.handleCommand(protectSymKey(encodeCommand({ type: 'ResetTopics' }), c2CommandKeyForDevice(c2b.privateKey, bob.keyForC2), T0), T0);
    send(alice, { type: 'RemoveTopic', topicHash: topicHash('room') });
    expect(alice.topicKey('room')).toBeUndefined();
    expect(bob.topicKeys.size).toBe(0);
    const seen = new Set([...Object.entries(alice.counts), ...Object.entries(bob.counts)].filter(([, n]) => n > 0).map(([t]) => t));
    expect(seen.size).toBe(8);
  });
});
