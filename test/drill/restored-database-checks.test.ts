import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import type pg from 'pg';
import { startThrowawayPostgres, type ThrowawayPostgres } from '../../lib/servers/postgres.ts';
import { seedC2Database } from '../../lib/c2-db/seed-database.ts';
import { deriveDbKey, sealDbValue, openDbValue, openDbValuesBatch, dbKeyFingerprint } from '../../lib/e4/keystore.ts';
import {
  checkRestoredSchema, checkInventoryCounts, checkOrphanLinks, checkSealedKeys, parseExpectedSchema, countLinksMissingTopic,
} from '../../backups/drill/restored-database-checks.ts';
import { READ_ONLY_CHECKS_MAY_START } from '../../backups/drill/restore-drill.ts';
import { checkRestoredConfigs } from '../../backups/drill/restored-config-checks.ts';
import { assertScratchIsNotProduction } from '../../backups/drill/scratch-database-guard.ts';
import { createPgClient } from '../../lib/pg/pg-client.ts';

const PASS = 'drill-test passphrase, long enough';

describe('restore drill checks on a restored C2 database (real PostgreSQL)', () => {
  let pgs: ThrowawayPostgres;
  let client: pg.Client;
  const dbKey = deriveDbKey(PASS);
  const seal = (k: Uint8Array) => sealDbValue(dbKey, k);
  const open = (s: Uint8Array) => openDbValue(dbKey, s);

  beforeAll(async () => {
    pgs = await startThrowawayPostgres();
    const url = await pgs.createDatabase('restored');
    await seedC2Database(url, { clients: 300, topics: 40, links: 900, seal });
    client = createPgClient({ connectionString: url });
    await client.connect();
  });
  afterAll(async () => {
    await client?.end();
    await pgs?.stop();
  });

  it('accepts the schema C2 expects and names a missing column', async () => {
    const ok = await checkRestoredSchema(client, pgs.url('restored'));
    expect(ok.ok, ok.detail).toBe(true);
    const other = await pgs.createDatabase('damaged');
    await seedC2Database(other, { clients: 2, topics: 1, links: 1, seal });
    const c = createPgClient({ connectionString: other });
    await c.connect();
    try {
      await c.query('ALTER TABLE topic_keys DROP COLUMN key');
      const bad = await checkRestoredSchema(c, other);
      expect(bad.ok).toBe(false);
      expect(bad.detail).toContain('topic_keys.key is missing');
      await c.query('DROP INDEX uix_clients_name');
      expect((await checkRestoredSchema(c, other)).detail).toContain('missing: CREATE UNIQUE INDEX uix_clients_name');
    } finally { await c.end(); }
  });

  it('parses pg_dump-style DDL with schema-qualified names and constraints', () => {
    const s = parseExpectedSchema(`CREATE TABLE public.clients (\n    id integer NOT NULL,\n    name character varying(256),\n    key bytea,\n    CONSTRAINT x CHECK (id > 0)\n);\n`);
    expect([...s.get('clients')!.entries()]).toEqual([['id', 'integer'], ['name', 'character varying(256)'], ['key', 'bytea']]);
  });

  it('compares inventory counts with the manifest and names the differing count', async () => {
    const good = await checkInventoryCounts(client, { clients: 300, topics: 40, links: 900 });
    expect(good.check.ok, good.check.detail).toBe(true);
    const bad = await checkInventoryCounts(client, { clients: 300, topics: 41, links: 900 });
    expect(bad.check.ok).toBe(false);
    expect(bad.check.detail).toContain('topics: manifest 41, restored 40');
  });

  it('opens every sealed key with the right passphrase and fails with a wrong one', async () => {
    const fp = dbKeyFingerprint(dbKey);
    const good = await checkSealedKeys(client, open, { ours: fp, manifest: fp });
    expect(good.checks.every((c) => c.ok), JSON.stringify(good.checks)).toBe(true);
    expect(good.report.clients.opened + good.report.topics.opened).toBe(340);

    // The COPY (FORMAT binary) fast path with the batch opener gives the same answer.
    const fast = await checkSealedKeys(client, open, { ours: fp, manifest: fp }, (sealed) => openDbValuesBatch(dbKey, sealed));
    expect(fast.report.clients.opened + fast.report.topics.opened).toBe(340);
    await client.query(`UPDATE topic_keys SET key = set_byte(key, 5, get_byte(key, 5) # 1) WHERE id = 7`);
    try {
      const damaged = await checkSealedKeys(client, open, { ours: fp, manifest: fp }, (sealed) => openDbValuesBatch(dbKey, sealed));
      const c = damaged.checks.find((x) => x.name === 'keys-decrypt')!;
      expect(c.ok).toBe(false);
      expect(c.detail).toMatch(/^1 of 340 sealed keys do not open.*topic_keys fleet\/topic-000007/);
    } finally {
      await client.query(`UPDATE topic_keys SET key = set_byte(key, 5, get_byte(key, 5) # 1) WHERE id = 7`);
    }

    const wrongKey = deriveDbKey('not the escrowed passphrase!!');
    const bad = await checkSealedKeys(client, (s) => openDbValue(wrongKey, s), { ours: dbKeyFingerprint(wrongKey), manifest: fp });
    const byName = Object.fromEntries(bad.checks.map((c) => [c.name, c]));
    expect(byName['passphrase-fingerprint'].ok).toBe(false);
    expect(byName['passphrase-fingerprint'].detail).toContain('wrong passphrase file');
    expect(byName['keys-decrypt'].ok).toBe(false);
    expect(byName['keys-decrypt'].detail).toContain('340 of 340 sealed keys do not open');
  });

  it('reports links that point at a missing topic (C2 does not enforce that foreign key)', async () => {
    const before = await checkOrphanLinks(client);
    expect(before.orphans.missingTopic).toBe(0);
    await client.query('INSERT INTO clients_topickeys (client_id, topic_key_id) VALUES (1, 99999)');
    try {
      const after = await checkOrphanLinks(client);
      expect(after.orphans.missingTopic).toBe(1);
      expect(after.check.detail).toContain('(1,99999)');
      // The drill counts the topic side early (during the restore) and hands the count over.
      const missingTopic = await countLinksMissingTopic(client);
      expect(missingTopic).toBe(1);
      expect((await checkOrphanLinks(client, { missingTopic })).check.detail).toBe(after.check.detail);
    } finally {
      await client.query('DELETE FROM clients_topickeys WHERE topic_key_id = 99999');
    }
  });

  it('the drill starts its read-only checks only after pg_restore has loaded every table and added every primary key', () => {
    // Readers during ALTER TABLE ... ADD PRIMARY KEY (ACCESS EXCLUSIVE) would stall the restore: the
    // trigger must come after all of them, from real pg_restore --verbose output of a C2 database.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-restore-order-'));
    try {
      const dump = path.join(dir, 'c2.pgdump');
      execFileSync('pg_dump', ['--format=custom', '--file', dump, '--dbname', pgs.url('restored')]);
      const into = `order_${Date.now()}`;
      pgs.psql(`CREATE DATABASE ${into}`);
      const r = spawnSync('pg_restore', ['--no-owner', '--verbose', '--exit-on-error', '--dbname', pgs.url(into), dump], { encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      const lines = r.stderr.split('\n');
      const trigger = lines.findIndex((l) => READ_ONLY_CHECKS_MAY_START.test(l));
      expect(trigger, 'pg_restore --verbose printed no line the drill recognises as "indexes and foreign keys from here on"').toBeGreaterThan(0);
      const lastBlocking = Math.max(...lines.map((l, i) => (/processing data for table|creating CONSTRAINT /.test(l) ? i : -1)));
      expect(lines.filter((l) => /creating CONSTRAINT /.test(l)).length).toBeGreaterThanOrEqual(3); // clients, links, topic keys
      expect(lastBlocking).toBeLessThan(trigger);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a scratch URL that names the production database under another spelling', async () => {
    await expect(assertScratchIsNotProduction('postgres://u:p@localhost/c2', 'postgresql://c2@127.0.0.1:5432/c2?sslmode=disable'))
      .rejects.toThrow(/points at the production database/);
    await expect(assertScratchIsNotProduction('postgres://u@127.0.0.1:5432/c2_drill', 'postgres://u@127.0.0.1:5432/c2')).resolves.toBeUndefined();
    await expect(assertScratchIsNotProduction('postgres://u@127.0.0.1:5433/c2', 'postgres://u@127.0.0.1:5432/c2')).resolves.toBeUndefined();
  });
});

describe('restored config checks', () => {
  it('parses YAML/JSON configs, flags broken ones, and fails on an expired certificate', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-drill-cfg-'));
    try {
      fs.writeFileSync(path.join(dir, 'config.yaml'), 'crypto-mode: symkey\ndb-type: postgres\n');
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '30', '-subj', '/CN=c2.test',
        '-keyout', path.join(dir, 'c2-http.key'), '-out', path.join(dir, 'c2-http.crt')], { stdio: 'ignore' });
      const now = new Date();
      const ok = checkRestoredConfigs(dir, { now });
      expect(ok.checks.every((c) => c.ok), JSON.stringify(ok.checks)).toBe(true);
      expect(ok.certificates[0].daysLeft).toBeGreaterThanOrEqual(29);

      const later = checkRestoredConfigs(dir, { now: new Date(now.getTime() + 60 * 86_400_000) });
      const cert = later.checks.find((c) => c.name === 'certificates-valid')!;
      expect(cert.ok).toBe(false);
      expect(cert.detail).toMatch(/c2-http\.crt .*expired/);

      fs.writeFileSync(path.join(dir, 'broken.yaml'), 'a: [1, 2\n');
      const broken = checkRestoredConfigs(dir, { now }).checks.find((c) => c.name === 'configs-parse')!;
      expect(broken.ok).toBe(false);
      expect(broken.detail).toContain('broken.yaml');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
