// The shared presence watch reports subscriptions (what first-use waits for) from the real Mosquitto
// running the rendered mosquitto.conf; the parser handles timestamps and client ids with spaces.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import mqtt from 'mqtt';
import { renderMosquittoConf } from '../../lib/render/mosquitto-conf.ts';
import { startThrowawayMosquitto, type ThrowawayMosquitto } from '../../lib/servers/mosquitto.ts';
import { watchBrokerPresence, parseMosquittoSubscribeNotice, type BrokerPresence, type SubscribeNotice } from '../../lib/broker-presence/broker-presence.ts';

describe('subscribe notices from the rendered mosquitto.conf', () => {
  let broker: ThrowawayMosquitto;
  let presence: BrokerPresence;
  beforeAll(async () => {
    broker = await startThrowawayMosquitto({ confText: renderMosquittoConf({ listeners: [{ port: '{{PORT}}', address: '{{HOST}}' }], persistenceDir: '{{DIR}}', allowAnonymous: true }) });
    presence = await watchBrokerPresence({ url: broker.url, flavor: 'mosquitto', subscriptions: true });
  });
  afterAll(async () => {
    await presence?.close();
    await broker?.stop();
  });

  it('a device subscribing to its command topic is reported with its client id and topic', async () => {
    const seen: SubscribeNotice[] = [];
    const off = presence.onSubscribe((s) => seen.push(s));
    const dev = await mqtt.connectAsync(broker.url, { clientId: 'sensor-0001', reconnectPeriod: 0 });
    await dev.subscribeAsync('e4/0123456789abcdef0123456789abcdef', { qos: 1 });
    for (let i = 0; i < 100 && !seen.length; i++) await new Promise((r) => setTimeout(r, 50));
    expect(seen).toEqual([expect.objectContaining({ clientId: 'sensor-0001', topic: 'e4/0123456789abcdef0123456789abcdef' })]);
    off();
    await dev.endAsync();
  });

  it('parses timestamped lines and client ids with spaces; other lines give nothing', () => {
    expect(parseMosquittoSubscribeNotice('2026-12-02T20:00:00: dev 1 2 e4/abc')).toMatchObject({ clientId: 'dev 1', topic: 'e4/abc' });
    expect(parseMosquittoSubscribeNotice('1796242316: dev-1 1 plant/#')).toEqual({ clientId: 'dev-1', topic: 'plant/#', atMs: 1796242316000 });
    expect(parseMosquittoSubscribeNotice('New client connected from 127.0.0.1 as x (p2, c1, k60).')).toBeUndefined();
  });
});
