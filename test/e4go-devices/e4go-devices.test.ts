// The e4go v1.1.0 device program against the real C2 and Mosquitto: a device registered with C2 gets
// its topic key over MQTT, reads a peer's and C2's messages, and a clean-session device that was
// offline while two keys went out sees only the last retained command (the broker keeps one).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import crypto from 'node:crypto';
import { c2BinaryAvailable, c2BinaryDir, startC2TestStack, type C2TestStack } from '../../lib/servers/c2.ts';
import { createC2Api, type C2Api } from '../../lib/c2/c2-api.ts';
import { startE4goDevices, type E4goDevices } from './e4go-devices.ts';

describe('e4go v1.1.0 devices through the real C2 and Mosquitto', () => {
  let stack: C2TestStack;
  let api: C2Api;
  let fleet: E4goDevices;
  const keys = { a: crypto.randomBytes(32), b: crypto.randomBytes(32), c: crypto.randomBytes(32), d: crypto.randomBytes(32) };

  beforeAll(async () => {
    if (!c2BinaryAvailable()) throw new Error(`the C2 binary is not built (looked in ${c2BinaryDir()}): run bash scripts/build-c2.sh first`);
    stack = await startC2TestStack();
    api = createC2Api({ baseUrl: stack.c2.baseUrl, ca: stack.c2.ca.certPem });
    fleet = await startE4goDevices(stack.mosquitto.url);
  }, 240_000);
  afterAll(async () => {
    await fleet?.stop();
    api?.close();
    await stack?.stop();
  });

  it('devices get topic keys from C2, read each other and C2, and not a topic they lack', async () => {
    for (const [n, k] of Object.entries(keys)) await api.newClient(`dev-${n}`, k);
    await fleet.add({ name: 'dev-a', identityKey: keys.a, topics: ['room/1', 'room/2'] });
    await fleet.add({ name: 'dev-b', identityKey: keys.b, topics: ['room/1'], cleanSession: false });
    await api.newTopic('room/1');
    await api.newTopic('room/2');
    await api.linkClientTopic('dev-a', 'room/1');
    await api.linkClientTopic('dev-b', 'room/1');
    await fleet.waitFor('dev-a', (r) => r.commandsOk >= 1);
    await fleet.waitFor('dev-b', (r) => r.commandsOk >= 1);

    await fleet.publish('dev-b', 'room/1', 'from b');
    await api.sendMessage('room/1', 'from c2');
    const a = await fleet.waitFor('dev-a', (r) => r.messages.length >= 2);
    expect(a.messages.map((m) => m.payload).sort()).toEqual(['from b', 'from c2']);
    await expect(fleet.publish('dev-b', 'room/2', 'x')).rejects.toThrow(/topic key not found/);
    await api.sendMessage('room/2', 'secret');
    const a2 = await fleet.waitFor('dev-a', (r) => r.messages.some((m) => m.topic === 'room/2'));
    expect(a2.messages.find((m) => m.topic === 'room/2')!.error).toMatch(/topic key not found/);
  }, 60_000);

  it('a clean-session device offline during two pushes sees only the last; a persistent one gets both', async () => {
    await fleet.add({ name: 'dev-c', identityKey: keys.c, topics: ['room/3', 'room/4'] });
    await fleet.add({ name: 'dev-d', identityKey: keys.d, topics: ['room/3', 'room/4'], cleanSession: false });
    await fleet.offline('dev-c');
    await fleet.offline('dev-d');
    await api.newTopic('room/3');
    await api.newTopic('room/4');
    for (const d of ['dev-c', 'dev-d']) for (const t of ['room/3', 'room/4']) await api.linkClientTopic(d, t);
    await fleet.online('dev-c');
    await fleet.online('dev-d');
    const d = await fleet.waitFor('dev-d', (r) => Object.keys(r.topicKeys).length === 2);
    expect(d.commandsFailed).toBe(0);
    const c = await fleet.waitFor('dev-c', (r) => r.commandsOk >= 1);
    await new Promise((r) => setTimeout(r, 500));
    expect(Object.keys((await fleet.report('dev-c')).topicKeys)).toEqual(['room/4']);
    expect(c.commandsFailed).toBe(0);
  }, 60_000);
});
