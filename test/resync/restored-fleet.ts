// A fleet of real e4go v1.1.0 devices around a C2 whose database gets restored from an older backup:
// the "backup" database is the state at setup; C2 then runs on a copy of it ("live") where topics are
// rotated, identity keys changed and a client added; the restore points C2 back at the backup
// database. Mosquitto runs the rendered mosquitto.conf (presence notices on), and a presence watch
// runs from before the first device connects, as a long-lived watch on a real broker would.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import { startC2, startC2TestStack, type C2TestStack, type RunningC2 } from '../../lib/servers/c2.ts';
import { startThrowawayMosquitto, type ThrowawayMosquitto } from '../../lib/servers/mosquitto.ts';
import { chownTo } from '../../lib/servers/daemon.ts';
import { renderMosquittoConf, type MosquittoConfSettings } from '../../lib/render/mosquitto-conf.ts';
import { createC2Api, type C2Api } from '../../lib/c2/c2-api.ts';
import { createCertificateAuthority } from '../../lib/c2/tls-material.ts';
import { watchBrokerPresence, type BrokerPresence } from '../../lib/broker-presence/broker-presence.ts';
import { startE4goDevices, type E4goDevices, type E4goDeviceReport } from '../e4go-devices/e4go-devices.ts';
import { createPgClient } from '../../lib/pg/pg-client.ts';

export interface FleetDevice {
  name: string;
  topics: string[];
  cleanSession: boolean;
  key: Buffer;
}

export interface RestoredFleet {
  dir: string;
  broker: ThrowawayMosquitto;
  presence: BrokerPresence;
  devices: E4goDevices;
  stack: C2TestStack;
  /** The C2 now running (after restore(): on the backup database). */
  c2: RunningC2;
  api: C2Api;
  spec: Map<string, FleetDevice>;
  /** Start C2 on a copy of the backup database: the life between backup and restore happens there. */
  goLive(): Promise<void>;
  /** Point C2 back at the backup database (what a restore from that backup leaves). */
  restore(): Promise<void>;
  /** Topics a device subscribes to but is not linked to (it must never read them). */
  unlinkedTopic: string;
  stop(): Promise<void>;
}

const UNLINKED = 'secret/not-linked';

async function startBroker(dir: string, overrides: Partial<MosquittoConfSettings>): Promise<ThrowawayMosquitto> {
  fs.mkdirSync(path.join(dir, 'mqtt'), { recursive: true });
  chownTo(path.join(dir, 'mqtt'), 'mosquitto');
  return startThrowawayMosquitto({
    confText: renderMosquittoConf({ listeners: [{ port: '{{PORT}}', address: '{{HOST}}' }], persistenceDir: path.join(dir, 'mqtt'), allowAnonymous: true, ...overrides }),
  });
}

/** Set up C2 (backup database), the broker, the presence watch and the devices, all registered and linked. */
export async function startRestoredFleet(devices: FleetDevice[], topics: string[], opts: { broker?: Partial<MosquittoConfSettings> } = {}): Promise<RestoredFleet> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-resync-fleet-'));
  const broker = await startBroker(dir, opts.broker ?? {});
  const presence = await watchBrokerPresence({ url: broker.url, flavor: 'mosquitto' });
  // one CA for every C2 start (a C2's own scratch dir, where it would keep its CA, goes with it)
  const ca = createCertificateAuthority({ dir: path.join(dir, 'ca'), commonName: 'e4ops resync test CA' });
  const stack = await startC2TestStack({ c2: { mqttBroker: broker.url, logLevel: 'warn', ca } });
  let c2 = stack.c2;
  let api = createC2Api({ baseUrl: c2.baseUrl, ca: c2.ca.certPem });
  for (const d of devices) await api.newClient(d.name, d.key);
  for (const t of topics) await api.newTopic(t);
  const fleet = await startE4goDevices(broker.url);
  for (const d of devices) {
    await fleet.add({ name: d.name, identityKey: d.key, topics: [...d.topics, UNLINKED], cleanSession: d.cleanSession });
    for (const t of d.topics) await api.linkClientTopic(d.name, t);
  }
  for (const d of devices) await fleet.waitFor(d.name, (r) => Object.keys(r.topicKeys).length === d.topics.length, 30_000);
  const admin = () => createPgClient({ connectionString: stack.postgres.url('postgres') });
  const switchTo = async (database: string) => {
    api.close();
    await c2.stop();
    c2 = await startC2({ db: { host: stack.postgres.host, database, username: 'postgres' }, passphrase: stack.passphrase, mqttBroker: broker.url, ca, logLevel: 'warn' });
    api = createC2Api({ baseUrl: c2.baseUrl, ca: c2.ca.certPem });
    self.c2 = c2;
    self.api = api;
  };
  const self: RestoredFleet = {
    dir, broker, presence, devices: fleet, stack, c2, api, spec: new Map(devices.map((d) => [d.name, d])), unlinkedTopic: UNLINKED,
    async goLive() {
      await c2.stop();
      const db = admin();
      await db.connect();
      await db.query(`CREATE DATABASE live TEMPLATE ${stack.database}`);
      await db.end();
      await switchTo('live');
    },
    async restore() { await switchTo(stack.database); },
    async stop() {
      await fleet.stop();
      api.close();
      await presence.close();
      if (c2 !== stack.c2) await c2.stop();
      await stack.stop();
      await broker.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  return self;
}

/** Capture the protected bytes a device publishes (to replay a pre-restore message later). */
export async function captureNextMessage(brokerUrl: string, topic: string, publish: () => Promise<void>): Promise<Buffer> {
  const sniffer = await mqtt.connectAsync(brokerUrl, { clientId: `sniffer-${crypto.randomBytes(4).toString('hex')}` });
  const got = new Promise<Buffer>((resolve) => sniffer.on('message', (_t, m) => resolve(Buffer.from(m))));
  await sniffer.subscribeAsync(topic, { qos: 1 });
  await publish();
  const msg = await got;
  await sniffer.endAsync();
  return msg;
}

export async function replay(brokerUrl: string, topic: string, payload: Buffer): Promise<void> {
  const c = await mqtt.connectAsync(brokerUrl, { clientId: `replayer-${crypto.randomBytes(4).toString('hex')}` });
  await c.publishAsync(topic, payload, { qos: 1 });
  await c.endAsync();
}

/**
 * What a device reads now: for each of its topics a message from a peer (e4go, the peer's key) and
 * one from C2 (POST /e4/message), plus C2's message on a topic it is not linked to.
 */
export async function whatItReads(f: RestoredFleet, name: string, peers: Map<string, string>): Promise<{ read: string[]; unread: string[]; unlinkedRead: boolean; report: E4goDeviceReport }> {
  const d = f.spec.get(name)!;
  await f.devices.clear(name);
  const expected: string[] = [];
  for (const t of d.topics) {
    const peer = peers.get(t);
    if (peer && peer !== name) { await f.devices.publish(peer, t, `peer ${peer} on ${t}`); expected.push(`peer ${peer} on ${t}`); }
    await f.api.sendMessage(t, `c2 on ${t}`);
    expected.push(`c2 on ${t}`);
  }
  await f.api.sendMessage(f.unlinkedTopic, 'c2 secret').catch(() => undefined); // the topic may not exist in C2
  const report = await f.devices.waitFor(name, (r) => r.messages.length >= expected.length, 15_000).catch(async () => f.devices.report(name));
  const payloads = new Set(report.messages.filter((m) => m.payload !== undefined).map((m) => m.payload!));
  return {
    read: expected.filter((e) => payloads.has(e)),
    unread: expected.filter((e) => !payloads.has(e)),
    unlinkedRead: report.messages.some((m) => m.topic === f.unlinkedTopic && m.payload !== undefined),
    report,
  };
}
