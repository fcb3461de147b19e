import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startThrowawayMosquitto, type ThrowawayMosquitto } from '../../lib/servers/mosquitto.ts';
import { createFleet } from '../../lib/fleet/fleet.ts';
import { createCommandPublisher } from '../../lib/fleet/command-publisher.ts';
import { generateX25519KeyPair } from '../../lib/e4/pubkey.ts';
import { topicHash } from '../../lib/e4/ids.ts';
import crypto from 'node:crypto';

// Pubkey mode over a real broker. The C2 build the module proxy serves predates pubkey mode, so commands
// here come from the command publisher (sealed exactly as C2 seals them), not from C2.
describe('pubkey-mode fleet on a real Mosquitto', () => {
  let mq: ThrowawayMosquitto;
  beforeAll(async () => { mq = await startThrowawayMosquitto(); });
  afterAll(async () => { await mq?.stop(); });

  it('devices receive retained commands, learn peers by SetPubKey and read each other\'s signed messages', async () => {
    const c2Key = generateX25519KeyPair();
    const fleet = await createFleet({
      brokerUrl: mq.url,
      devices: ['pk-a', 'pk-b', 'pk-c'].map((name) => ({ name, mode: 'pubkey' as const, c2PublicKey: c2Key.publicKey })),
    });
    const pub = await createCommandPublisher({ brokerUrl: mq.url, c2Key });
    try {
      const key = crypto.randomBytes(32);
      const [a, b, c] = ['pk-a', 'pk-b', 'pk-c'].map((n) => fleet.device(n));
      for (const d of [a, b, c]) await pub.send(d, { type: 'SetTopicKey', key, topicHash: topicHash('grid/phase') });
      for (const peer of [b, c]) await pub.send(a, { type: 'SetPubKey', publicKey: peer.keyForC2, id: peer.id });
      // Connected devices get every command live (retained only matters to late subscribers).
      await fleet.waitFor((f) => f.devices().every((d) => d.topicKey('grid/phase')) && a.pubKeys.size === 2, { what: 'keys' });
      expect(a.pubKeys.get(b.idHex)?.equals(b.keyForC2)).toBe(true);
      await fleet.subscribe(['pk-a', 'pk-b'], 'grid/phase');
      await fleet.publish('pk-c', 'grid/phase', 'phase=ok');
      await fleet.waitFor((f) => f.received('pk-a', 'grid/phase').length === 1 && f.received('pk-b', 'grid/phase').length === 1, { what: 'signed message delivered' });
      expect(String(fleet.readable('pk-a', 'grid/phase')[0])).toBe('phase=ok');
      // b never learnt c's public key: it refuses the signed message.
      expect(fleet.readable('pk-b', 'grid/phase')).toEqual([]);
      expect(fleet.received('pk-b', 'grid/phase')[0].error).toMatch(/no public key for signer/);
      expect(fleet.stats().commandErrors).toBe(0);
    } finally {
      await pub.close();
      await fleet.close();
    }
  });

  it('devices reconnect and resubscribe after the broker restarts, then process commands again', async () => {
    const broker = await startThrowawayMosquitto();
    const fleet = await createFleet({ brokerUrl: broker.url, devices: [{ name: 'rc-1' }, { name: 'rc-2' }] });
    try {
      await fleet.subscribe(['rc-1', 'rc-2'], 'after/restart');
      const port = broker.port;
      await broker.stop();
      await fleet.waitFor((f) => f.stats().connected === 0, { what: 'disconnect', timeoutMs: 10_000 });
      const again = await startThrowawayMosquitto({ port });
      try {
        await fleet.waitFor((f) => f.stats().connected === 2, { what: 'reconnect', timeoutMs: 20_000 });
        await new Promise((r) => setTimeout(r, 300)); // resubscription follows CONNACK
        const pub = await createCommandPublisher({ brokerUrl: again.url });
        const key = crypto.randomBytes(32);
        for (const d of fleet.devices()) await pub.send(d, { type: 'SetTopicKey', key, topicHash: topicHash('after/restart') });
        await pub.close();
        await fleet.waitFor((f) => f.devices().every((d) => d.topicKey('after/restart')?.equals(key)), { what: 'commands after restart' });
        // Data-topic subscriptions came back too.
        await fleet.publish('rc-1', 'after/restart', 'back');
        await fleet.waitFor((f) => f.readable('rc-2', 'after/restart').some((p) => String(p) === 'back'), { what: 'data topic after restart' });
      } finally {
        await fleet.close();
        await again.stop();
      }
    } finally {
      await fleet.close();
      await broker.stop();
    }
  });
});
