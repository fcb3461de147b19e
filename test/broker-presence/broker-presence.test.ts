// Broker presence from the broker's own notices: the real Mosquitto 2.0 running the rendered
// mosquitto.conf (log_dest topic) tells the watch who connects and who leaves, however they leave;
// EMQX's $SYS client events are parsed from payloads shaped as EMQX documents them (no EMQX here).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import { renderMosquittoConf } from '../../lib/render/mosquitto-conf.ts';
import { startThrowawayMosquitto, type ThrowawayMosquitto } from '../../lib/servers/mosquitto.ts';
import { chownTo } from '../../lib/servers/daemon.ts';
import {
  watchBrokerPresence, parseMosquittoLogNotice, parseEmqxPresence, PresenceBook, type BrokerPresence, type PresenceEvent,
} from '../../lib/broker-presence/broker-presence.ts';

describe('broker presence on the real Mosquitto with the rendered mosquitto.conf', () => {
  let broker: ThrowawayMosquitto;
  let presence: BrokerPresence;
  const events: PresenceEvent[] = [];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-presence-'));

  beforeAll(async () => {
    fs.mkdirSync(path.join(dir, 'data'));
    chownTo(dir, 'mosquitto');
    broker = await startThrowawayMosquitto({
      confText: renderMosquittoConf({ listeners: [{ port: '{{PORT}}', address: '{{HOST}}' }], persistenceDir: path.join(dir, 'data'), allowAnonymous: true }),
    });
    presence = await watchBrokerPresence({ url: broker.url, flavor: 'mosquitto' });
    presence.onEvent((e) => events.push(e));
  });
  afterAll(async () => {
    await presence?.close();
    await broker?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const until = async (what: () => boolean) => {
    for (let i = 0; i < 100 && !what(); i++) await new Promise((r) => setTimeout(r, 50));
    expect(what()).toBe(true);
  };

  it('sees a clean DISCONNECT, a dropped socket and a client id with spaces', async () => {
    expect(presence.state('dev 1')).toBe('unknown');
    const a = await mqtt.connectAsync(broker.url, { clientId: 'dev 1', reconnectPeriod: 0 });
    const b = await mqtt.connectAsync(broker.url, { clientId: 'dev-2', clean: false, reconnectPeriod: 0 });
    await until(() => presence.state('dev 1') === 'connected' && presence.state('dev-2') === 'connected');
    expect(presence.connected().sort()).toEqual(['dev 1', 'dev-2']);
    await a.endAsync();
    b.stream.destroy(); // no DISCONNECT packet: the broker notices the closed socket
    await until(() => presence.state('dev 1') === 'disconnected' && presence.state('dev-2') === 'disconnected');
    expect(events.filter((e) => e.clientId === 'dev-2').map((e) => e.kind)).toEqual(['connected', 'disconnected']);
    expect(presence.lastSeen('dev-2')).toBeGreaterThan(Date.now() - 60_000);
  });

  it('a take-over by the same client id leaves it connected', async () => {
    const first = await mqtt.connectAsync(broker.url, { clientId: 'dev-3', reconnectPeriod: 0 });
    await until(() => presence.state('dev-3') === 'connected');
    const second = await mqtt.connectAsync(broker.url, { clientId: 'dev-3', reconnectPeriod: 0 });
    await new Promise((r) => setTimeout(r, 300));
    expect(presence.state('dev-3')).toBe('connected');
    first.end(true);
    await second.endAsync();
    await until(() => presence.state('dev-3') === 'disconnected');
  });
});

describe('presence notice parsers', () => {
  it('reads Mosquitto notices with either timestamp format and ignores other lines', () => {
    expect(parseMosquittoLogNotice('1796242499: New client connected from 127.0.0.1:54102 as dev-d (p2, c1, k60).'))
      .toEqual({ kind: 'connected', clientId: 'dev-d', atMs: 1796242499000 });
    expect(parseMosquittoLogNotice("2026-12-02T20:15:00: New client connected from 10.0.0.7:4000 as a b (p4, c0, k30, u'dev').", 5))
      .toEqual({ kind: 'connected', clientId: 'a b', atMs: 5 });
    expect(parseMosquittoLogNotice('Client dev-d has exceeded timeout, disconnecting.', 7)).toMatchObject({ kind: 'disconnected', clientId: 'dev-d' });
    expect(parseMosquittoLogNotice('Socket error on client dev-e, disconnecting.', 7)).toMatchObject({ kind: 'disconnected', clientId: 'dev-e' });
    expect(parseMosquittoLogNotice('Client dev-f disconnected, not authorised.', 7)).toMatchObject({ kind: 'disconnected', clientId: 'dev-f' });
    expect(parseMosquittoLogNotice('1796242499: Outgoing messages are being dropped for client dev-g.')).toMatchObject({ kind: 'dropping', clientId: 'dev-g' });
    expect(parseMosquittoLogNotice('1796242499: Client dev-d already connected, closing old connection.')).toBeUndefined();
    expect(parseMosquittoLogNotice('1796242499: Client <unknown> closed its connection.')).toBeUndefined();
    expect(parseMosquittoLogNotice('1796242499: New connection from 127.0.0.1:54116 on port 18831.')).toBeUndefined();
  });

  it('reads EMQX client events (payload fields as EMQX documents them)', () => {
    const connected = JSON.stringify({
      username: 'dev', ts: 1764700000123, sockport: 1883, proto_ver: 4, proto_name: 'MQTT', keepalive: 60,
      ipaddress: '127.0.0.1', expiry_interval: 0, connected_at: 1764700000120, connack: 0, clientid: 'sensor/7', clean_start: true,
    });
    const disconnected = JSON.stringify({
      username: 'dev', ts: 1764700005000, sockport: 1883, reason: 'tcp_closed', proto_ver: 4, proto_name: 'MQTT',
      ipaddress: '127.0.0.1', disconnected_at: 1764700004990, clientid: 'sensor/7',
    });
    expect(parseEmqxPresence('$SYS/brokers/emqx@n1/clients/sensor/7/connected', connected)).toEqual({ kind: 'connected', clientId: 'sensor/7', atMs: 1764700000120 });
    expect(parseEmqxPresence('$SYS/brokers/emqx@n1/clients/sensor/7/disconnected', disconnected))
      .toEqual({ kind: 'disconnected', clientId: 'sensor/7', atMs: 1764700004990, detail: 'tcp_closed' });
    expect(parseEmqxPresence('$SYS/brokers/emqx@n1/uptime', '12 seconds')).toBeUndefined();
    const book = new PresenceBook();
    book.apply(parseEmqxPresence('$SYS/brokers/emqx@n2/clients/sensor/7/disconnected', disconnected)!);
    book.apply(parseEmqxPresence('$SYS/brokers/emqx@n1/clients/sensor/7/connected', connected)!); // older, from another node
    expect(book.state('sensor/7')).toBe('disconnected');
  });
});
