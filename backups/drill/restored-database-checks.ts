// Checks run on a restored C2 database: the schema C2 expects, inventory counts against the
// manifest, every sealed key opening with the escrowed passphrase, and orphan links (C2 never
// creates the foreign key on the topic side of clients_topickeys).
import pg from 'pg';
import { C2_TABLES, c2SchemaDdl } from '../../lib/c2/db-schema.ts';
import { readC2Inventory, type C2Inventory } from '../../lib/c2-db/inventory.ts';
import { verifyKeyStore, type OpenDbValue, type OpenDbValuesBatch, type KeyStoreReport } from '../../lib/c2-db/key-store.ts';
import { compareSchemas, dumpSchemaAsync } from '../../lib/c2/db-schema.ts';

export interface DrillCheck { name: string; ok: boolean; detail: string }

export type ExpectedSchema = Map<string, Map<string, string>>;

const TYPE_ALIASES: [RegExp, string][] = [
  [/^bigserial$/, 'bigint'], [/^serial8$/, 'bigint'], [/^serial4?$/, 'integer'], [/^int4?$/, 'integer'], [/^int8$/, 'bigint'],
  [/^varchar\s*\((\d+)\)$/, 'character varying($1)'], [/^varchar$/, 'character varying'],
  [/^timestamptz$/, 'timestamp with time zone'], [/^bool$/, 'boolean'],
];

export function normalizeSqlType(t: string): string {
  let s = t.trim().toLowerCase().replace(/\s+/g, ' ');
  for (const [re, to] of TYPE_ALIASES) if (re.test(s)) { s = s.replace(re, to); break; }
  return s;
}

/** Tables and columns (name → normalised type) that a DDL text (pg_dump --schema-only or hand-written) creates. */
export function parseExpectedSchema(ddl: string): ExpectedSchema {
  const out: ExpectedSchema = new Map();
  const re = /CREATE TABLE\s+(?:IF NOT EXISTS\s+)?(?:"?[\w]+"?\.)?"?(\w+)"?\s*\(([\s\S]*?)\n\);/gi;
  for (const m of ddl.matchAll(re)) {
    const cols = new Map<string, string>();
    for (const raw of m[2].split(/,\s*\n/)) {
      const line = raw.trim();
      if (!line || /^(CONSTRAINT|PRIMARY|UNIQUE|FOREIGN|CHECK|EXCLUDE)\b/i.test(line)) continue;
      const cm = /^"?(\w+)"?\s+(.+?)(?:\s+(?:NOT NULL|NULL|DEFAULT|PRIMARY KEY|UNIQUE|REFERENCES|CONSTRAINT|COLLATE|CHECK)\b.*)?$/i.exec(line);
      if (cm) cols.set(cm[1].toLowerCase(), normalizeSqlType(cm[2]));
    }
    out.set(m[1].toLowerCase(), cols);
  }
  return out;
}

/**
 * Compare the restored database's schema with the one C2 creates. With lib/c2/db-schema.sql (captured
 * from a real C2) every statement of it must be in `pg_dump --schema-only` of the restored database
 * (tables, columns, keys, indexes); extra statements are reported but allowed (gorm adds, never drops).
 * Without that file, tables and columns are compared against the built-in DDL.
 */
export async function checkRestoredSchema(client: pg.ClientBase, url: string, ddl = c2SchemaDdl()): Promise<DrillCheck> {
  const source = ddl.source === 'captured' ? 'lib/c2/db-schema.sql (captured from a real C2)' : 'the built-in C2 DDL (lib/c2/db-schema.sql not present)';
  const expected = parseExpectedSchema(ddl.sql);
  if (!expected.size) return { name: 'schema', ok: false, detail: `no CREATE TABLE found in ${source}` };
  // Tables and columns with their types...
  const r = await client.query<{ table: string; column: string; type: string }>(
    `SELECT c.relname AS table, a.attname AS column, format_type(a.atttypid, a.atttypmod) AS type
       FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped AND n.nspname = ANY(current_schemas(false))`);
  const actual = new Map<string, Map<string, string>>();
  for (const row of r.rows) {
    if (!actual.has(row.table)) actual.set(row.table, new Map());
    actual.get(row.table)!.set(row.column, normalizeSqlType(row.type));
  }
  const problems: string[] = [];
  for (const [table, cols] of expected) {
    const got = actual.get(table);
    if (!got) { problems.push(`table ${table} is missing`); continue; }
    for (const [col, type] of cols) {
      const have = got.get(col);
      if (have === undefined) problems.push(`${table}.${col} is missing`);
      else if (have !== type) problems.push(`${table}.${col} is ${have}, C2 expects ${type}`);
    }
  }
  // ...and, with the captured file, every other statement (keys, unique indexes, sequences).
  let extra = 0;
  if (ddl.source === 'captured') {
    const diff = compareSchemas(ddl.sql, await dumpSchemaAsync(url));
    for (const l of diff.missing) if (!/^\s+\w+ [\w ()]+,?$/.test(l) && !/^CREATE TABLE/.test(l) && l.trim() !== ');') problems.push(`missing: ${l.trim()}`);
    extra = diff.unexpected.length;
  }
  return problems.length
    ? { name: 'schema', ok: false, detail: `restored schema differs from ${source}: ${problems.slice(0, 10).join('; ')}` }
    : { name: 'schema', ok: true, detail: `${expected.size} tables with every column, key and index C2 expects, per ${source}${extra ? ` (${extra} extra statement(s) allowed: gorm adds, never drops)` : ''}` };
}

export interface ManifestCounts { clients: number; topics: number; links: number }

export async function checkInventoryCounts(client: pg.ClientBase, expected: ManifestCounts | undefined): Promise<{ check: DrillCheck; inventory: C2Inventory }> {
  const inventory = await readC2Inventory(client);
  return { inventory, check: inventoryCountsCheck({ clients: inventory.clients, topics: inventory.topics, links: inventory.topicLinks }, expected) };
}

/** The inventory-counts check of counts read elsewhere (the drill takes clients and topics from its key pass). */
export function inventoryCountsCheck(got: ManifestCounts, expected: ManifestCounts | undefined): DrillCheck {
  if (!expected) return { name: 'inventory-counts', ok: false, detail: `the manifest records no inventory counts to compare with (restored: ${JSON.stringify(got)})` };
  const diffs = (['clients', 'topics', 'links'] as const).filter((k) => expected[k] !== got[k]).map((k) => `${k}: manifest ${expected[k]}, restored ${got[k]}`);
  return diffs.length
    ? { name: 'inventory-counts', ok: false, detail: `restored counts differ from the manifest: ${diffs.join('; ')}` }
    : { name: 'inventory-counts', ok: true, detail: `${got.clients} clients, ${got.topics} topics, ${got.links} links, as the manifest records` };
}

/**
 * Every link counted, and those whose topic is gone, in one scan of the links (a hash join on the topics):
 * what checkInventoryCounts' link count and countLinksMissingTopic would read in two.
 */
export async function countLinksAndMissingTopic(client: pg.ClientBase): Promise<{ links: number; missingTopic: number }> {
  const r = await client.query<{ links: string; missing: string }>(
    `SELECT count(*) AS links, count(*) FILTER (WHERE t.id IS NULL) AS missing
       FROM ${C2_TABLES.topicLinks} l LEFT JOIN ${C2_TABLES.topics} t ON t.id = l.topic_key_id`);
  return { links: +r.rows[0].links, missingTopic: +r.rows[0].missing };
}

/** Links whose topic is gone (C2 never constrains that side); one anti-join over every link. */
export async function countLinksMissingTopic(client: pg.ClientBase): Promise<number> {
  const r = await client.query<{ n: string }>(
    `SELECT count(*) AS n FROM ${C2_TABLES.topicLinks} l WHERE NOT EXISTS (SELECT 1 FROM ${C2_TABLES.topics} t WHERE t.id = l.topic_key_id)`);
  return +r.rows[0].n;
}

/**
 * Orphan links, reported (not fatal). `missingTopic` may be counted beforehand with countLinksMissingTopic
 * (the drill does, while the restore still validates foreign keys); it is counted here otherwise.
 */
export async function checkOrphanLinks(client: pg.ClientBase, opts: { missingTopic?: number } = {}): Promise<{ check: DrillCheck; orphans: { missingTopic: number; missingClient: number; sample: { clientId: number; topicKeyId: number }[] } }> {
  const L = C2_TABLES.topicLinks;
  // A validated foreign key on client_id (C2 creates that one) already rules out links to missing clients:
  // then only the topic side, which C2 never constrains, needs the anti-join over every link.
  const fk = await client.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_constraint WHERE conrelid = to_regclass($1) AND contype = 'f' AND convalidated
        AND conkey = ARRAY[(SELECT attnum FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = 'client_id')]::int2[]`, [L]);
  const clientSide = fk.rows[0].n > 0
    ? '0'
    : `(SELECT count(*) FROM ${L} l WHERE NOT EXISTS (SELECT 1 FROM ${C2_TABLES.clients} c WHERE c.id = l.client_id))`;
  const missingTopic = opts.missingTopic ?? await countLinksMissingTopic(client);
  const r = await client.query<{ missing_client: string }>(`SELECT ${clientSide} AS missing_client`);
  const missingClient = +r.rows[0].missing_client;
  const sample = missingTopic + missingClient
    ? (await client.query<{ client_id: number; topic_key_id: number }>(
      `SELECT l.client_id, l.topic_key_id FROM ${L} l LEFT JOIN ${C2_TABLES.topics} t ON t.id = l.topic_key_id
        LEFT JOIN ${C2_TABLES.clients} c ON c.id = l.client_id WHERE t.id IS NULL OR c.id IS NULL ORDER BY 1, 2 LIMIT 10`)).rows.map((x) => ({ clientId: x.client_id, topicKeyId: x.topic_key_id }))
    : [];
  // Orphans are reported, not fatal: C2 itself creates them (no foreign key on the topic side).
  return {
    orphans: { missingTopic, missingClient, sample },
    check: {
      name: 'orphan-links', ok: true,
      detail: missingTopic + missingClient
        ? `${missingTopic} link(s) point at a missing topic and ${missingClient} at a missing client (C2 does not enforce this foreign key; harmless for devices, remove them with DELETE ... WHERE topic_key_id NOT IN (SELECT id FROM topic_keys)); first: ${sample.map((s) => `(${s.clientId},${s.topicKeyId})`).join(' ')}`
        : 'no link points at a missing client or topic',
    },
  };
}

/** Every sealed key opens with the passphrase; the passphrase's fingerprint matches the manifest. */
export async function checkSealedKeys(client: pg.ClientBase, open: OpenDbValue, fingerprint: { ours: string; manifest?: string }, openBatch?: OpenDbValuesBatch): Promise<{ checks: DrillCheck[]; report: KeyStoreReport }> {
  // With a batch opener (the fast path for big databases) every batch opens in a few AES passes.
  const report = await verifyKeyStore(client, open, { openBatch });
  return { checks: sealedKeyChecks(report, fingerprint), report };
}

/** The two key checks from a key-store report and the passphrase fingerprints. */
export function sealedKeyChecks(report: KeyStoreReport, fingerprint: { ours: string; manifest?: string }): DrillCheck[] {
  const checks: DrillCheck[] = [];
  if (fingerprint.manifest === undefined) checks.push({ name: 'passphrase-fingerprint', ok: false, detail: 'the manifest records no passphrase fingerprint' });
  else if (fingerprint.manifest !== fingerprint.ours) checks.push({ name: 'passphrase-fingerprint', ok: false, detail: 'the passphrase from --passphrase-file does not match the fingerprint in the manifest: wrong passphrase file (use the one escrowed for this C2 database)' });
  else checks.push({ name: 'passphrase-fingerprint', ok: true, detail: 'the passphrase matches the fingerprint recorded in the manifest' });
  const failed = report.clients.failed + report.topics.failed;
  const total = report.clients.total + report.topics.total;
  const rate = report.seconds > 0 ? Math.round(total / report.seconds) : total;
  checks.push(failed
    ? { name: 'keys-decrypt', ok: false, detail: `${failed} of ${total} sealed keys do not open with the passphrase (wrong passphrase, or damaged rows); first: ${report.failures.slice(0, 5).map((f) => `${f.table} ${f.label}`).join(', ')}` }
    : { name: 'keys-decrypt', ok: true, detail: `all ${report.clients.total} client keys and ${report.topics.total} topic keys open with the passphrase${total >= 10_000 ? ` (${rate} keys/s)` : ''}` });
  return checks;
}
