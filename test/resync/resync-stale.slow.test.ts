// Slow (E4OPS_SLOW_TESTS=1, about 12 minutes): devices away for longer than the 10 minutes after
// which E4 devices reject commands as stale. A persistent-session e4go v1.1.0 device gets its queued
// SetTopicKey commands when it is back, and rejects every one of them; a clean-session one sees only
// the last retained one, also stale. The resync's --follow serves both when they connect, with
// fresh commands, and they read every topic again.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { c2BinaryAvailable } from '../../lib/servers/c2.ts';
import { createResyncC2 } from '../../backups/resync/c2-resync-adapter.ts';
import { resyncTopicKeys } from '../../backups/resync/resync-topic-keys.ts';
import { parseInventory, renderInventory } from '../../lib/fleet-inventory/fleet-inventory.ts';
import { createMemoryLogger } from '../../lib/log.ts';
import { startRestoredFleet, whatItReads, type RestoredFleet } from './restored-fleet.ts';

const TOPICS = ['stale/a', 'stale/b', 'stale/c'];
const AWAY_MS = 10.5 * 60_000;
const missing = [!process.env.E4OPS_SLOW_TESTS && 'E4OPS_SLOW_TESTS=1', !c2BinaryAvailable() && 'the C2 binary (scripts/build-c2.sh)'].filter(Boolean);

describe.skipIf(missing.length > 0)(`devices away longer than 10 minutes${missing.length ? ` (needs ${missing.join(', ')})` : ''}`, () => {
  let f: RestoredFleet;
  beforeAll(async () => {
    f = await startRestoredFleet([
      { name: 'peer', topics: TOPICS, cleanSession: true, key: crypto.randomBytes(32) },
      { name: 'away-persist', topics: TOPICS, cleanSession: false, key: crypto.randomBytes(32) },
      { name: 'away-clean', topics: TOPICS, cleanSession: true, key: crypto.randomBytes(32) },
    ], TOPICS);
  }, 240_000);
  afterAll(async () => { await f?.stop(); });

  it('--follow serves both with fresh commands when they are back; the queued ones were rejected as stale', async () => {
    await f.devices.offline('away-persist');
    await f.devices.offline('away-clean');
    const before = await f.devices.report('away-persist');
    const inventory = parseInventory(renderInventory({ version: 1, cryptoMode: 'symkey', clients: ['peer', 'away-persist', 'away-clean'].map((name) => ({ name, topics: TOPICS })) }), 'inv.yaml', f.dir);
    const { c2, api } = createResyncC2({ baseUrl: f.c2.baseUrl, ca: f.c2.ca.certPem });
    const journal = path.join(f.dir, 'stale.jsonl');
    const running = resyncTopicKeys({
      c2, journalFile: journal, automationEnginePaused: true, inventory, presence: f.presence, followMs: 15 * 60_000,
      expected: { clients: 3, topics: TOPICS.length, source: 'test' }, logger: createMemoryLogger(),
    });
    const mainPassOver = () => fs.existsSync(journal) && fs.readFileSync(journal, 'utf8').includes('"type":"finish"');
    for (let i = 0; i < 1200 && !mainPassOver(); i++) await new Promise((r) => setTimeout(r, 100));
    await new Promise((r) => setTimeout(r, AWAY_MS));
    await f.devices.online('away-persist');
    await f.devices.online('away-clean');
    const report = await running;
    api.close();
    expect(report.devices!.notServed).toEqual([]);
    const persist = await f.devices.report('away-persist');
    expect(persist.commandsFailed - before.commandsFailed).toBeGreaterThanOrEqual(TOPICS.length); // the queued ones: too old
    expect(persist.commandErrors!.join(' ')).toMatch(/too old|timestamp/i);
    for (const name of ['away-persist', 'away-clean']) {
      const r = await whatItReads(f, name, new Map(TOPICS.map((t) => [t, 'peer'])));
      expect({ name, unread: r.unread, unlinkedRead: r.unlinkedRead }).toEqual({ name, unread: [], unlinkedRead: false });
    }
  }, 20 * 60_000);
});
