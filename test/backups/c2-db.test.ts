// lib/c2-db against a real PostgreSQL: C2-shaped seeding with keys sealed as C2 seals them, inventory
// counts, crypto-mode detection, and the key-store check that restore drills rely on.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startThrowawayPostgres, type ThrowawayPostgres } from '../../lib/servers/postgres.ts';
import { seedC2Database, c2ClientId, clientName } from '../../lib/c2-db/seed-database.ts';
import { readC2Inventory, detectCryptoMode, C2SchemaMissingError } from '../../lib/c2-db/inventory.ts';
import { verifyKeyStore, type KeyStoreReport } from '../../lib/c2-db/key-store.ts';
import { verifyKeyStoreInParallel, keyBlockRanges, defaultKeyCheckWorkers } from '../../lib/c2-db/key-store-parallel.ts';
import { deriveDbKey, sealDbValue, openDbValue, openDbValuesBatch, sealDbValuesBatch, checkPackedDbKeys } from '../../lib/e4/keystore.ts';
import { sha3_256 } from '@noble/hashes/sha3';
import { createPgClient } from '../../lib/pg/pg-client.ts';

describe('lib/c2-db on a real PostgreSQL', () => {
  let server: ThrowawayPostgres;
  let url: string;
  const dbKey = deriveDbKey('seed passphrase for tests, 16+ bytes');
  const otherKey = deriveDbKey('some other passphrase, also long');
  beforeAll(async () => {
    server = await startThrowawayPostgres();
    url = await server.createDatabase('c2');
  });
  afterAll(async () => { await server?.stop(); });

  it('seeds clients, topics and links whose keys open with the DB key, and counts them', async () => {
    const r = await seedC2Database(url, { clients: 3000, topics: 300, links: 15000, sealBatch: (p) => sealDbValuesBatch(dbKey, p) });
    expect(r.keysSealed).toBe(true);
    const inv = await readC2Inventory(url);
    expect(inv).toEqual({ clients: 3000, topics: 300, topicLinks: 15000, clientLinks: 0 });
    const c = createPgClient({ connectionString: url });
    await c.connect();
    try {
      const row = (await c.query('SELECT e4_id, name, key FROM clients WHERE id = 42')).rows[0];
      // C2's id rule: first 16 bytes of SHA3-256(name) (checked against an independent SHA3).
      expect(Buffer.from(row.e4_id).equals(Buffer.from(sha3_256(new TextEncoder().encode(clientName(42))).subarray(0, 16)))).toBe(true);
      expect(c2ClientId(row.name).equals(row.e4_id)).toBe(true);
      expect(row.key.length).toBe(48);
      expect(openDbValue(dbKey, row.key).length).toBe(32);
      // The batch sealer writes exactly what C2's per-value sealing would.
      const plain = openDbValue(dbKey, row.key);
      expect(sealDbValue(dbKey, plain).equals(row.key)).toBe(true);
      // Every client links 5 distinct topics; new rows get ids after the seeded ones (sequence moved).
      const per = (await c.query('SELECT min(n) AS lo, max(n) AS hi FROM (SELECT count(DISTINCT topic_key_id) n FROM clients_topickeys GROUP BY client_id) x')).rows[0];
      expect([+per.lo, +per.hi]).toEqual([5, 5]);
      const next = (await c.query(`INSERT INTO clients (e4_id, name, key) VALUES ('\\x00', 'new', '\\x00') RETURNING id`)).rows[0].id;
      expect(next).toBe(3001);
      await c.query(`DELETE FROM clients WHERE name = 'new'`);
    } finally { await c.end(); }
  });

  it('verifyKeyStore opens every key with the right passphrase and names rows that do not open', async () => {
    const good = await verifyKeyStore(url, (s) => openDbValue(dbKey, s), { batchSize: 700 });
    expect(good.ok).toBe(true);
    expect(good.clients).toEqual({ total: 3000, opened: 3000, failed: 0 });
    expect(good.topics).toEqual({ total: 300, opened: 300, failed: 0 });

    const wrong = await verifyKeyStore(url, (s) => openDbValue(otherKey, s), { maxFailuresListed: 3 });
    expect(wrong.ok).toBe(false);
    expect(wrong.clients.failed).toBe(3000);
    expect(wrong.failures).toHaveLength(3);

    const c = createPgClient({ connectionString: url });
    await c.connect();
    try {
      // One topic key tampered with: only that row is reported.
      await c.query(`UPDATE topic_keys SET key = set_byte(key, 20, get_byte(key, 20) # 1) WHERE id = 7`);
      const one = await verifyKeyStore(c, (s) => openDbValue(dbKey, s));
      expect(one.ok).toBe(false);
      expect(one.topics.failed).toBe(1);
      expect(one.failures).toEqual([expect.objectContaining({ table: 'topic_keys', id: 7, label: 'fleet/topic-000007' })]);
      // The batch opener (lib/e4 openDbValuesBatch) gives the same answer.
      const batched = await verifyKeyStore(c, () => { throw new Error('unused'); }, { openBatch: (xs) => openDbValuesBatch(dbKey, xs) });
      expect(batched.topics.failed).toBe(1);
      expect(batched.clients.opened).toBe(3000);
    } finally { await c.end(); }
  });

  describe('the key check spread over worker threads (verifyKeyStoreInParallel)', () => {
    let par: string;
    const single = (db: string, key = dbKey, max?: number) => verifyKeyStore(db, (s) => openDbValue(key, s), { openBatch: (xs) => openDbValuesBatch(key, xs), maxFailuresListed: max });
    const strip = ({ seconds: _s, ...r }: KeyStoreReport) => r;
    // 3,000 clients fill about 45 heap blocks: 22 blocks per range cut clients in two (topics fit in one).
    const twoClientRanges = { workers: 2, inProcessBelowBlocks: 0, blocksPerRange: 22 };
    beforeAll(async () => {
      par = await server.createDatabase('c2par');
      await seedC2Database(par, { clients: 3000, topics: 300, links: 3000, sealBatch: (p) => sealDbValuesBatch(dbKey, p) });
    });

    it('cuts each table into block ranges, the last open-ended', () => {
      expect(keyBlockRanges(45, 2, 22)).toEqual([{ fromBlock: 0, toBlock: 22 }, { fromBlock: 22, toBlock: 44 }, { fromBlock: 44 }]);
      expect(keyBlockRanges(0, 2)).toEqual([{ fromBlock: 0 }]);
      expect(keyBlockRanges(10_000, 2)).toHaveLength(8);
    });

    it('two workers, each with its own COPY of a block range, give the single-threaded report', async () => {
      const seen: { table: string; index: number; worker: number; total: number }[] = [];
      const r = await verifyKeyStoreInParallel(par, dbKey, { ...twoClientRanges, onRange: (x) => seen.push({ table: x.table, index: x.index, worker: x.worker, total: x.tally.total }) });
      expect(r.ok).toBe(true);
      expect(r.clients).toEqual({ total: 3000, opened: 3000, failed: 0 });
      expect(r.topics).toEqual({ total: 300, opened: 300, failed: 0 });
      expect(strip(r)).toEqual(strip(await single(par)));
      // Clients in two ranges that share the rows between them, topics in one; both workers used.
      const clientRanges = seen.filter((x) => x.table === 'clients');
      expect(clientRanges.map((x) => x.index).sort()).toEqual([0, 1]);
      expect(clientRanges.every((x) => x.total > 0)).toBe(true);
      expect(clientRanges.reduce((n, x) => n + x.total, 0)).toBe(3000);
      expect(seen.filter((x) => x.table === 'topic_keys').map((x) => x.total)).toEqual([300]);
      expect(new Set(seen.map((x) => x.worker))).toEqual(new Set([0, 1]));
      // A store this small is cheaper to check on one thread (the default threshold): same report, no ranges handed out.
      let ranges = 0;
      expect(strip(await verifyKeyStoreInParallel(par, dbKey, { workers: 2, onRange: () => { ranges++; } }))).toEqual(strip(r));
      expect(ranges).toBe(0);
    });

    it('one corrupted key in the second range, checked by the second worker, is reported with its row', async () => {
      const c = createPgClient({ connectionString: par });
      await c.connect();
      try {
        // An updated row is written at the end of the table: in the second (last) range of blocks.
        await c.query(`UPDATE clients SET key = set_byte(key, 30, get_byte(key, 30) # 4) WHERE id = 2222`);
        const seen: { index: number; worker: number; failed: number }[] = [];
        // Two client ranges and two workers: each worker takes one of the two ranges.
        const r = await verifyKeyStoreInParallel(par, dbKey, { ...twoClientRanges, tables: ['clients'], onRange: (x) => seen.push({ index: x.index, worker: x.worker, failed: x.tally.failed }) });
        expect(r.ok).toBe(false);
        expect(r.clients).toEqual({ total: 3000, opened: 2999, failed: 1 });
        expect(r.failures).toEqual([{ table: 'clients', id: 2222, label: clientName(2222), reason: 'does not authenticate' }]);
        expect(seen.sort((a, b) => a.index - b.index)).toEqual([{ index: 0, worker: 0, failed: 0 }, { index: 1, worker: 1, failed: 1 }]);
        // Both tables, default ranges: the same report as the single-threaded check.
        expect(strip(await verifyKeyStoreInParallel(par, dbKey, { workers: 2, inProcessBelowBlocks: 0 }))).toEqual(strip(await single(par)));
      } finally {
        await c.query(`UPDATE clients SET key = set_byte(key, 30, get_byte(key, 30) # 4) WHERE id = 2222`);
        await c.end();
      }
      expect((await verifyKeyStoreInParallel(par, dbKey, twoClientRanges)).ok).toBe(true);
    });

    it('a truncated key, a NULL key and the wrong passphrase fail exactly as they do single-threaded', async () => {
      const c = createPgClient({ connectionString: par });
      await c.connect();
      const saved = (await c.query('SELECT id, key FROM topic_keys WHERE id IN (10, 250) ORDER BY id')).rows;
      try {
        await c.query(`UPDATE topic_keys SET key = substring(key from 1 for 47) WHERE id = 250`);
        await c.query(`ALTER TABLE topic_keys ALTER COLUMN key DROP NOT NULL`).catch(() => undefined);
        await c.query(`UPDATE topic_keys SET key = NULL WHERE id = 10`);
        const r = await verifyKeyStoreInParallel(par, dbKey, { workers: 2, inProcessBelowBlocks: 0, blocksPerRange: 2 });
        expect(r.topics).toEqual({ total: 300, opened: 298, failed: 2 });
        expect(r.failures.map((f) => [f.table, f.id, f.label]).sort()).toEqual([['topic_keys', 10, 'fleet/topic-000010'], ['topic_keys', 250, 'fleet/topic-000250']]);
        expect(strip(r)).toEqual(strip(await single(par)));
        const wrong = await verifyKeyStoreInParallel(par, otherKey, { ...twoClientRanges, maxFailuresListed: 3 });
        expect(wrong.clients).toEqual({ total: 3000, opened: 0, failed: 3000 });
        expect(wrong.failures).toHaveLength(3);
        expect(wrong.failures[0].label).toBe(clientName(wrong.failures[0].id));
        expect(strip(wrong)).toEqual(strip(await single(par, otherKey, 3)));
      } finally {
        for (const row of saved) await c.query('UPDATE topic_keys SET key = $1 WHERE id = $2', [row.key, row.id]);
        await c.end();
      }
    });

    it('the packed check opens exactly the 48-byte values that authenticate', () => {
      const plains = Array.from({ length: 5 }, (_, i) => Buffer.alloc(32, i + 1));
      const sealed = sealDbValuesBatch(dbKey, plains);
      sealed[3][40] ^= 1;
      const packed = new Uint8Array(Buffer.concat(sealed));
      expect([...checkPackedDbKeys(dbKey, packed, 5)]).toEqual([1, 1, 1, 0, 1]);
      expect([...checkPackedDbKeys(otherKey, packed, 5)]).toEqual([0, 0, 0, 0, 0]);
    });

    it('E4OPS_KEY_CHECK_WORKERS sets the worker threads; a value that is not a count names the variable', () => {
      expect(defaultKeyCheckWorkers({})).toBe(Math.max(1, os.availableParallelism()));
      expect(defaultKeyCheckWorkers({ E4OPS_KEY_CHECK_WORKERS: '1' })).toBe(1);
      expect(defaultKeyCheckWorkers({ E4OPS_KEY_CHECK_WORKERS: '3' })).toBe(3);
      for (const bad of ['0', 'two', '1.5', '-2']) expect(() => defaultKeyCheckWorkers({ E4OPS_KEY_CHECK_WORKERS: bad })).toThrow(/E4OPS_KEY_CHECK_WORKERS=.*whole number of worker threads/);
    });
  });

  it('detects the crypto mode from config.yaml, else from client links, else says unknown', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-cfg-'));
    try {
      const inv = await readC2Inventory(url);
      expect(detectCryptoMode(inv).mode).toBe('unknown');
      fs.writeFileSync(path.join(dir, 'config.yaml'), 'db-type: postgres\ncrypto-mode: pubkey\n');
      expect(detectCryptoMode(inv, dir)).toMatchObject({ mode: 'pubkey', source: 'config' });
      expect(detectCryptoMode(inv, dir, { E4C2_CRYPTO_MODE: 'symkey' }).mode).toBe('symkey');
      fs.writeFileSync(path.join(dir, 'config.yaml'), 'db-type: postgres\n');
      expect(detectCryptoMode(inv, dir).mode).toBe('symkey'); // C2's default

      const pk = await server.createDatabase('c2pub');
      await seedC2Database(pk, { clients: 20, topics: 5, links: 40, clientLinks: 30 });
      const pinv = await readC2Inventory(pk);
      expect(pinv.clientLinks).toBe(30);
      expect(detectCryptoMode(pinv)).toMatchObject({ mode: 'pubkey', source: 'database' });
    } finally { fs.rmSync(dir, { recursive: true, force: true }); }
  });

  it('refuses a database that is not C2\'s, naming the missing table', async () => {
    const empty = await server.createDatabase('notc2');
    await expect(readC2Inventory(empty)).rejects.toBeInstanceOf(C2SchemaMissingError);
    await expect(readC2Inventory(empty)).rejects.toThrow(/table clients not found/);
  });
});
