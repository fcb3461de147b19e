// lib/c2-db against a real PostgreSQL: C2-shaped seeding with keys sealed as C2 seals them, inventory
// counts, crypto-mode detection, and the key-store check that restore drills rely on.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { startThrowawayPostgres, type ThrowawayPostgres } from '../../lib/servers/postgres.ts';
import { seedC2Database, c2ClientId, clientName } from '../../lib/c2-db/seed-database.ts';
import { readC2Inventory, detectCryptoMode, C2SchemaMissingError } from '../../lib/c2-db/inventory.ts';
import { verifyKeyStore } from '../../lib/c2-db/key-store.ts';
import { deriveDbKey, sealDbValue, openDbValue, openDbValuesBatch, sealDbValuesBatch } from '../../lib/e4/keystore.ts';
import { sha3_256 } from '@noble/hashes/sha3';

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
    const c = new pg.Client({ connectionString: url });
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

    const c = new pg.Client({ connectionString: url });
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
