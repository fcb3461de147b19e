import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runC2Cli, startC2TestStack, type C2TestStack } from '../../lib/servers/c2.ts';
import { createC2Api, type C2Api } from '../../lib/c2/c2-api.ts';
import { createFleet, type Fleet } from '../../lib/fleet/fleet.ts';
import { deriveDbKey, deriveKeyFromPassword, openDbValue } from '../../lib/e4/keystore.ts';
import { protectSymKey } from '../../lib/e4/protect.ts';
import { skipWithoutC2 } from '../c2/c2-stack.ts';

const TOPIC = 'factory/line-1/telemetry';
const N = 24;

describe.skipIf(skipWithoutC2)('simulated devices driven by the real C2', () => {
  let stack: C2TestStack;
  let api: C2Api;
  let fleet: Fleet;
  let dbKey: Buffer;
  const names = Array.from({ length: N }, (_, i) => `sensor-${i}`);
  const outsider = 'sensor-unlinked';

  /** The topic key C2 holds right now, read straight from PostgreSQL and opened with the passphrase. */
  const c2TopicKey = (topic: string) => {
    const hex = stack.postgres.psql(`select encode(key,'hex') from topic_keys where topic = '${topic}'`, stack.database).trim();
    return openDbValue(dbKey, Buffer.from(hex, 'hex'), `topic_keys.key of ${topic}`);
  };
  const c2ClientKey = (name: string) => {
    const hex = stack.postgres.psql(`select encode(key,'hex') from clients where name = '${name}'`, stack.database).trim();
    return openDbValue(dbKey, Buffer.from(hex, 'hex'), `clients.key of ${name}`);
  };

  beforeAll(async () => {
    stack = await startC2TestStack();
    api = createC2Api({ baseUrl: stack.c2.baseUrl, ca: stack.c2.ca.certPem });
    dbKey = deriveDbKey(stack.passphrase);
    fleet = await createFleet({
      brokerUrl: stack.mosquitto.url,
      devices: [...names, outsider].map((name) => ({ name, mode: 'symkey' as const })),
    });
    for (const d of fleet.devices()) await api.newClient(d.name, d.keyForC2);
    await api.newTopic(TOPIC);
    for (const n of names) await api.linkClientTopic(n, TOPIC);
    await fleet.subscribe([...names, outsider], TOPIC);
  });
  afterAll(async () => {
    await fleet?.close();
    api?.close();
    await stack?.stop();
  });

  it('every linked device receives SetTopicKey with the key C2 stores; the unlinked one gets none', async () => {
    await fleet.waitFor((f) => names.every((n) => f.device(n).topicKey(TOPIC)), { what: 'SetTopicKey on every linked device' });
    const key = c2TopicKey(TOPIC);
    for (const n of names) expect(fleet.device(n).topicKey(TOPIC)?.equals(key)).toBe(true);
    expect(fleet.device(outsider).topicKey(TOPIC)).toBeUndefined();
    expect(fleet.stats().commandErrors).toBe(0);
  });

  it('linked devices exchange readable messages; the unlinked device cannot read them', async () => {
    await fleet.publish('sensor-3', TOPIC, 'temp=21.5');
    await fleet.publish('sensor-7', TOPIC, 'temp=22.0');
    await fleet.waitFor((f) => names.every((n) => f.readable(n, TOPIC).length >= 2), { what: 'both messages everywhere' });
    for (const n of names) expect(fleet.readable(n, TOPIC).map(String).sort()).toEqual(['temp=21.5', 'temp=22.0']);
    await fleet.waitFor((f) => f.received(outsider, TOPIC).length >= 2, { what: 'outsider receives ciphertext' });
    expect(fleet.readable(outsider, TOPIC)).toEqual([]);
    expect(fleet.received(outsider, TOPIC)[0].error).toMatch(/no key for topic/);
  });

  it('C2 SendMessage: C2 protects with the topic key and every linked device reads it', async () => {
    await api.sendMessage(TOPIC, 'from-c2');
    await fleet.waitFor((f) => names.every((n) => f.readable(n, TOPIC).some((p) => String(p) === 'from-c2')), { what: 'C2 message' });
  });

  it('rotation: NewTopic on an existing topic replaces the key in C2; this C2 build pushes it only when the link is re-sent', async () => {
    const before = c2TopicKey(TOPIC);
    const snapshot = fleet.snapshot();
    const processed = fleet.stats().commandsProcessed;
    await api.newTopic(TOPIC);
    const after = c2TopicKey(TOPIC);
    expect(after.equals(before)).toBe(false);
    // The 2019-09 C2 (the only version the module proxy serves) does not notify linked clients on rotation.
    await new Promise((r) => setTimeout(r, 1500));
    expect(fleet.stats().commandsProcessed).toBe(processed);
    for (const n of names) expect(fleet.device(n).topicKey(TOPIC)?.equals(before)).toBe(true);

    // Re-sending the link (PUT, repeatable) pushes the current key: every device moves to it.
    for (const n of await api.allClientsForTopic(TOPIC)) await api.linkClientTopic(n, TOPIC);
    await fleet.waitFor((f) => names.every((n) => f.device(n).topicKey(TOPIC)?.equals(after)), { what: 'new key on every device' });

    // The previous key stays usable for the 60-minute grace: a message sealed with it is still readable.
    const late = protectSymKey(Buffer.from('sealed-with-old-key'), before);
    const raw = await import('mqtt');
    const pub = await raw.default.connectAsync(stack.mosquitto.url);
    await pub.publishAsync(TOPIC, late, { qos: 1 });
    await fleet.waitFor((f) => names.every((n) => f.received(n, TOPIC).some((m) => String(m.payload) === 'sealed-with-old-key' && m.usedPreviousKey)), { what: 'old-key message via grace' });
    await pub.endAsync();

    // Snapshot/restore: devices can be put back to the keys of the moment before the rotation.
    fleet.restore(snapshot);
    for (const n of names) expect(fleet.device(n).topicKey(TOPIC)?.equals(before)).toBe(true);
    for (const n of names) await api.linkClientTopic(n, TOPIC);
    await fleet.waitFor((f) => names.every((n) => f.device(n).topicKey(TOPIC)?.equals(after)), { what: 'resync after restore' });
  });

  it('NewClientKey, ResetClient and unlink reach the device as SetIdKey, ResetTopics and RemoveTopic', async () => {
    const d = fleet.device('sensor-0');
    const oldId = Buffer.from(d.identityKey);
    await api.newClientKey('sensor-0');
    await fleet.waitFor(() => d.counts.SetIdKey === 1, { what: 'SetIdKey' });
    expect(d.identityKey.equals(oldId)).toBe(false);
    expect(d.identityKey.equals(c2ClientKey('sensor-0'))).toBe(true);

    // Commands now come sealed with the new identity key and still open.
    await api.resetClient('sensor-0');
    await fleet.waitFor(() => d.counts.ResetTopics === 1, { what: 'ResetTopics' });
    expect(d.topicKey(TOPIC)).toBeUndefined();

    await api.linkClientTopic('sensor-1', 'factory/line-1/alarms').catch(() => undefined); // topic does not exist yet
    await api.newTopic('factory/line-1/alarms');
    await api.linkClientTopic('sensor-1', 'factory/line-1/alarms');
    const d1 = fleet.device('sensor-1');
    await fleet.waitFor(() => d1.topicKey('factory/line-1/alarms') !== undefined, { what: 'alarms key' });
    await api.unlinkClientTopic('sensor-1', 'factory/line-1/alarms');
    await fleet.waitFor(() => d1.counts.RemoveTopic === 1, { what: 'RemoveTopic' });
    expect(d1.topicKey('factory/line-1/alarms')).toBeUndefined();
    expect(d1.topicKey(TOPIC)).toBeDefined();
    expect(fleet.stats().commandErrors).toBe(0);
  });

  it('a client created by c2cli from a password (Argon2i in Go) opens C2\'s commands with the key our Argon2i derives', async () => {
    const password = 'device-password-0123456789';
    runC2Cli(stack.c2, ['client', 'create', '--name', 'pw-device', '--password', password]);
    expect(runC2Cli(stack.c2, ['client', 'list'])).toContain('pw-device');
    expect(c2ClientKey('pw-device').equals(deriveKeyFromPassword(password))).toBe(true);
    const small = await createFleet({ brokerUrl: stack.mosquitto.url, devices: [{ name: 'pw-device', identityKey: deriveKeyFromPassword(password) }] });
    try {
      await api.linkClientTopic('pw-device', TOPIC);
      await small.waitFor((f) => f.device('pw-device').topicKey(TOPIC) !== undefined, { what: 'SetTopicKey for pw-device' });
      expect(small.device('pw-device').topicKey(TOPIC)?.equals(c2TopicKey(TOPIC))).toBe(true);
      expect(small.stats().commandErrors).toBe(0);
    } finally {
      await small.close();
    }
  });
});
