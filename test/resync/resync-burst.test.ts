// A device linked to 100 topics gets one SetTopicKey per topic from a resync. Mosquitto 2.0 sends at
// most max_inflight_messages QoS 1/2 messages to a client at once, queues up to max_queued_messages
// more and drops the rest. Behind a broker with a deliberately small queue (10), an e4go v1.1.0
// device online during the resync, and a persistent-session one offline during it (its queue
// overflows: 90 of its 100 commands are dropped) and back while --follow runs, both end up holding
// all 100 fresh keys: the follow re-sends them paced within the inflight window.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import crypto from 'node:crypto';
import fs from 'node:fs';
import mqtt from 'mqtt';
import path from 'node:path';
import { c2BinaryAvailable, c2BinaryDir } from '../../lib/servers/c2.ts';
import { createResyncC2 } from '../../backups/resync/c2-resync-adapter.ts';
import { resyncTopicKeys } from '../../backups/resync/resync-topic-keys.ts';
import { parseInventory, renderInventory } from '../../lib/fleet-inventory/fleet-inventory.ts';
import { createMemoryLogger } from '../../lib/log.ts';
import { startRestoredFleet, type RestoredFleet } from './restored-fleet.ts';

const TOPICS = Array.from({ length: 100 }, (_, i) => `burst/t-${String(i).padStart(3, '0')}`);

describe('a device linked to 100 topics through a resync (e4go v1.1.0, small broker queue)', () => {
  let f: RestoredFleet;
  beforeAll(async () => {
    if (!c2BinaryAvailable()) throw new Error(`the C2 binary is not built (looked in ${c2BinaryDir()}): run bash scripts/build-c2.sh first`);
    f = await startRestoredFleet([
      { name: 'wide', topics: TOPICS, cleanSession: true, key: crypto.randomBytes(32) },
      { name: 'wide-away', topics: TOPICS, cleanSession: false, key: crypto.randomBytes(32) },
    ], TOPICS, {
      broker: { maxInflightMessages: 20, maxQueuedMessages: 10 },
    });
  }, 240_000);
  afterAll(async () => { await f?.stop(); });

  it('both hold every fresh key and read C2 on every topic', async () => {
    const before = (await f.devices.report('wide')).topicKeys;
    const watcher = await mqtt.connectAsync(f.broker.url, { clientId: 'warning-watch' });
    const warnings: string[] = [];
    watcher.on('message', (_t, m) => warnings.push(m.toString()));
    await watcher.subscribeAsync('$SYS/broker/log/#');
    await f.devices.offline('wide-away');
    const inventory = parseInventory(renderInventory({ version: 1, cryptoMode: 'symkey', clients: [{ name: 'wide', topics: TOPICS }, { name: 'wide-away', topics: TOPICS }] }), 'inv.yaml', f.dir);
    const { c2, api } = createResyncC2({ baseUrl: f.c2.baseUrl, ca: f.c2.ca.certPem });
    const journal = path.join(f.dir, 'burst.jsonl');
    const running = resyncTopicKeys({
      c2, journalFile: journal, automationEnginePaused: true, inventory, presence: f.presence, followMs: 30_000,
      expected: { clients: 2, topics: TOPICS.length, source: 'test' }, concurrency: 8, logger: createMemoryLogger(),
    });
    const mainPassOver = () => fs.existsSync(journal) && fs.readFileSync(journal, 'utf8').includes('"type":"finish"');
    for (let i = 0; i < 1200 && !mainPassOver(); i++) await new Promise((r) => setTimeout(r, 100));
    await f.devices.online('wide-away');
    const report = await running;
    api.close();
    expect(report.ok).toBe(true);
    expect(report.devices!.served).toBe(2);
    expect(report.devices!.follow).toMatchObject({ reconnectsServed: 1, commandsPerReconnect: TOPICS.length });
    // the broker did drop commands for the device away (its queue holds 10): the follow made up for them
    expect(warnings.join('\n')).toMatch(/Outgoing messages are being dropped for client wide-away/);
    await watcher.endAsync();
    for (const name of ['wide', 'wide-away']) {
      const after = await f.devices.waitFor(name, (r) => TOPICS.every((t) => r.topicKeys[t] && r.topicKeys[t] !== before[t]), 20_000);
      expect(after.commandsFailed).toBe(0);
      await f.devices.clear(name);
    }
    for (const t of TOPICS) await f.api.sendMessage(t, `c2 on ${t}`);
    for (const name of ['wide', 'wide-away']) {
      const read = await f.devices.waitFor(name, (r) => r.messages.length >= TOPICS.length, 20_000);
      expect({ name, read: read.messages.filter((m) => m.payload?.startsWith('c2 on ')).length }).toEqual({ name, read: TOPICS.length });
    }
  }, 120_000);
});
