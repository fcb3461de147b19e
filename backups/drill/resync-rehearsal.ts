// Rehearse the topic-key resync inside a drill: a simulated fleet holding the keys of the moment
// before the restore (a snapshot from the fleet simulator, or devices built from the restored
// identity keys whose topic keys all moved on after the backup) connects to the scratch broker;
// the resync runs against the scratch C2; then every device must hold C2's new key for each topic it
// is linked to and read a protected message on each of them.
import crypto from 'node:crypto';
import path from 'node:path';
import type pg from 'pg';
import type { Logger } from '../../lib/log.ts';
import { createMemoryLogger } from '../../lib/log.ts';
import { createFleet, type Fleet, type FleetSnapshot } from '../../lib/fleet/fleet.ts';
import type { DeviceSnapshot } from '../../lib/fleet/simulated-device.ts';
import { topicHash } from '../../lib/e4/ids.ts';
import { openDbValue } from '../../lib/e4/keystore.ts';
import { C2_TABLES } from '../../lib/c2/db-schema.ts';
import { createResyncC2 } from '../resync/c2-resync-adapter.ts';
import { resyncTopicKeys } from '../resync/resync-topic-keys.ts';
import { createSealedTopicKeyProbe } from '../resync/sealed-topic-key-probe.ts';
import type { FleetInventory } from '../../lib/fleet-inventory/fleet-inventory.ts';
import type { ScratchC2 } from './scratch-c2.ts';
import type { DrillCheck } from './restored-database-checks.ts';
import type { DrillReport } from './drill-report.ts';
import { createPgClient } from '../../lib/pg/pg-client.ts';

export interface RehearsalOptions {
  c2: ScratchC2;
  dbUrl: string;
  dbKey: Uint8Array;
  snapshot?: FleetSnapshot;
  /** Devices to sample from the restored database when no snapshot is given. */
  devices: number;
  inventory?: FleetInventory;
  backupTakenAt: Date;
  counts: { clients: number; topics: number };
  workDir: string;
  logger: Logger;
  /** Time allowed for keys and messages to reach the devices (default scales with the fleet). */
  deliveryTimeoutMs?: number;
}

export interface RehearsalResult {
  summary: NonNullable<DrillReport['resync']>;
  checks: DrillCheck[];
}

async function topicKeysOf(db: pg.Client, dbKey: Uint8Array, topics: string[]): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (let i = 0; i < topics.length; i += 5000) {
    const r = await db.query<{ topic: string; key: Buffer }>(`SELECT topic, key FROM ${C2_TABLES.topics} WHERE topic = ANY($1::text[])`, [topics.slice(i, i + 5000)]);
    for (const row of r.rows) out.set(row.topic, openDbValue(dbKey, row.key, `topic key of ${row.topic}`));
  }
  return out;
}

export async function rehearseResync(o: RehearsalOptions): Promise<RehearsalResult> {
  const checks: DrillCheck[] = [];
  const db = createPgClient(o.dbUrl);
  await db.connect();
  let fleet: Fleet | undefined;
  try {
    // Which devices, with which keys.
    let snapshots: DeviceSnapshot[];
    if (o.snapshot) {
      const pubkey = o.snapshot.devices.filter((d) => d.mode !== 'symkey');
      if (pubkey.length) throw new Error(`the rehearsal simulates symkey devices only; the snapshot has ${pubkey.length} pubkey-mode device(s)`);
      snapshots = o.snapshot.devices;
    } else {
      const rows = (await db.query<{ name: string; key: Buffer }>(`SELECT name, key FROM ${C2_TABLES.clients} ORDER BY random() LIMIT $1`, [o.devices])).rows;
      // Identity keys as restored; every topic key as if rotated after the backup (the worst case).
      const links = (await db.query<{ name: string; topic: string }>(
        `SELECT c.name, t.topic FROM ${C2_TABLES.topicLinks} l JOIN ${C2_TABLES.clients} c ON c.id = l.client_id JOIN ${C2_TABLES.topics} t ON t.id = l.topic_key_id WHERE c.name = ANY($1::text[])`,
        [rows.map((r) => r.name)])).rows;
      snapshots = rows.map((r) => ({
        name: r.name, mode: 'symkey' as const, identityKey: openDbValue(o.dbKey, r.key, `identity key of ${r.name}`).toString('hex'), pubKeys: {},
        topicKeys: Object.fromEntries(links.filter((l) => l.name === r.name).map((l) => [topicHash(l.topic).toString('hex'), { key: crypto.randomBytes(32).toString('hex') }])),
      }));
    }
    const names = snapshots.map((s) => s.name);
    const known = new Set((await db.query<{ name: string }>(`SELECT name FROM ${C2_TABLES.clients} WHERE name = ANY($1::text[])`, [names])).rows.map((r) => r.name));
    const recreatable = new Set((o.inventory?.clients ?? []).filter((c) => c.keyFile).map((c) => c.name));
    const missingDevices = names.filter((n) => !known.has(n) && !recreatable.has(n));

    // Topics the devices hold keys for that the restored database does not know: created after the backup.
    const restoredTopics = (await db.query<{ topic: string }>(`SELECT topic FROM ${C2_TABLES.topics}`)).rows.map((r) => r.topic);
    const knownHashes = new Set(restoredTopics.map((t) => topicHash(t).toString('hex')));
    const invTopics = new Map<string, string>();
    for (const c of o.inventory?.clients ?? []) for (const t of c.topics ?? []) invTopics.set(topicHash(t).toString('hex'), t);
    for (const t of o.inventory?.topics ?? []) invTopics.set(topicHash(t).toString('hex'), t);
    const unknownHashes = new Set<string>();
    for (const s of snapshots) for (const h of Object.keys(s.topicKeys)) if (!knownHashes.has(h)) unknownHashes.add(h);
    const createdAfterBackup = [...unknownHashes].map((h) => invTopics.get(h) ?? `(unnamed topic, hash ${h})`).sort();
    for (const [h, t] of invTopics) if (!knownHashes.has(h) && !unknownHashes.has(h)) createdAfterBackup.push(t);

    fleet = await createFleet({
      brokerUrl: o.c2.broker.url,
      devices: snapshots.map((s) => ({ name: s.name, mode: 'symkey' as const, identityKey: Buffer.from(s.identityKey, 'hex') })),
      clientIdPrefix: 'e4ops-drill-',
      logger: createMemoryLogger('fleet'),
    });
    fleet.restore({ takenAt: o.snapshot?.takenAt ?? new Date().toISOString(), devices: snapshots });

    // Stale before the resync: device key differs from what the restored C2 holds.
    const linksOf = async () => {
      const rows = (await db.query<{ name: string; topic: string }>(
        `SELECT c.name, t.topic FROM ${C2_TABLES.topicLinks} l JOIN ${C2_TABLES.clients} c ON c.id = l.client_id JOIN ${C2_TABLES.topics} t ON t.id = l.topic_key_id WHERE c.name = ANY($1::text[])`,
        [names])).rows;
      const m = new Map<string, string[]>();
      for (const r of rows) m.set(r.name, [...(m.get(r.name) ?? []), r.topic]);
      return m;
    };
    const before = await linksOf();
    const beforeKeys = await topicKeysOf(db, o.dbKey, [...new Set([...before.values()].flat())]);
    let stale = 0;
    let pairs = 0;
    for (const [n, ts] of before) for (const t of ts) { pairs++; if (!fleet.device(n).topicKey(t)?.equals(beforeKeys.get(t)!)) stale++; }
    o.logger.info('drill.rehearsal.fleet', { devices: names.length, links: pairs, staleBefore: stale, createdAfterBackup: createdAfterBackup.length });

    // The resync, against the scratch C2 only.
    const { c2, api } = createResyncC2({ baseUrl: o.c2.c2.baseUrl, ca: o.c2.c2.ca.certPem });
    const t0 = Date.now();
    let report;
    try {
      report = await resyncTopicKeys({
        c2, journalFile: path.join(o.workDir, 'rehearsal-journal.jsonl'), automationEnginePaused: true,
        expected: { clients: o.counts.clients, topics: o.counts.topics, source: 'the restored database' },
        inventory: o.inventory, backupTakenAt: o.backupTakenAt, logger: o.logger.child({ phase: 'rehearsal' }),
        probe: createSealedTopicKeyProbe(o.dbUrl),
      });
    } finally {
      api.close();
    }
    const resyncSeconds = (Date.now() - t0) / 1000;

    // Every device must now hold C2's key for every topic it is linked to...
    const after = await linksOf();
    const allTopics = [...new Set([...after.values()].flat())];
    const keys = await topicKeysOf(db, o.dbKey, allTopics);
    const timeout = o.deliveryTimeoutMs ?? 30_000 + pairs * 20;
    const allKeysMatch = (f: Fleet) => [...after].every(([n, ts]) => ts.every((t) => f.device(n).topicKey(t)?.equals(keys.get(t)!)));
    let keysArrived = true;
    await fleet.waitFor(allKeysMatch, { timeoutMs: timeout, what: 'every device to hold the new key of every linked topic' }).catch(() => { keysArrived = false; });

    // ...and read a protected message on each: one linked device publishes per topic.
    const f = fleet;
    await Promise.all([...after].map(([n, ts]) => Promise.all(ts.map((t) => f.subscribe(n, t, 1)))));
    const publisher = new Map<string, string>();
    for (const [n, ts] of after) for (const t of ts) if (!publisher.has(t)) publisher.set(t, n);
    const marker = `drill-${crypto.randomBytes(4).toString('hex')}`;
    for (const [t, n] of publisher) {
      try { await f.publish(n, t, `${marker} ${t}`); } catch { /* a device without a key cannot publish: counted below */ }
    }
    const reads = (n: string, t: string) => f.readable(n, t).some((p) => p.toString() === `${marker} ${t}`);
    await f.waitFor(() => [...after].every(([n, ts]) => ts.every((t) => reads(n, t))), { timeoutMs: Math.min(timeout, 120_000), what: 'every device to read every linked topic' }).catch(() => undefined);
    const notReading = [...after].filter(([n, ts]) => !ts.every((t) => reads(n, t))).map(([n]) => n);
    const devicesConsidered = names.filter((n) => !missingDevices.includes(n));
    const reading = devicesConsidered.filter((n) => !notReading.includes(n)).length;

    checks.push({
      name: 'resync-rehearsal', ok: report.topics.failed.length === 0 && keysArrived && reading === devicesConsidered.length,
      detail: `resync rotated ${report.topics.rotated} topics in ${resyncSeconds.toFixed(1)} s (${report.topics.failed.length} failed); ${stale} of ${pairs} device/topic keys were stale before; afterwards ${reading} of ${devicesConsidered.length} simulated devices read every topic they are linked to${notReading.length ? ` (not: ${notReading.slice(0, 10).join(', ')})` : ''}`,
    });
    checks.push({
      name: 'topics-created-after-backup', ok: true,
      detail: createdAfterBackup.length
        ? `${createdAfterBackup.length} topic(s) in use now are missing from the backup (their keys are lost; the resync ${o.inventory ? 're-created those the inventory names' : 'cannot re-create them without an inventory'}): ${createdAfterBackup.slice(0, 20).join(', ')}`
        : 'no device holds a key for a topic the backup lacks',
    });
    if (missingDevices.length) {
      checks.push({ name: 'devices-created-after-backup', ok: true, detail: `${missingDevices.length} device(s) are not in the backup and have no key in the inventory, so they stay unreachable after a restore: ${missingDevices.slice(0, 20).join(', ')}` });
    }
    return {
      summary: {
        ok: checks.every((c) => c.ok), rotated: report.topics.rotated, failed: report.topics.failed.length,
        topicsCreatedAfterBackup: createdAfterBackup, devices: devicesConsidered.length, devicesReadingAllTopics: reading,
      },
      checks,
    };
  } finally {
    await fleet?.close();
    await db.end();
  }
}
