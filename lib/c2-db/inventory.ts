// What a C2 database holds, in numbers an operator recognises: clients, topics, links, and which
// crypto mode C2 runs in. Backups record it in the manifest; the restore drill compares against it.
import fs from 'node:fs';
import path from 'node:path';
import type pg from 'pg';
import YAML from 'yaml';
import { C2_TABLES } from '../c2/db-schema.ts';
import { withClientOrUrl } from '../pg/pg-client.ts';

export interface C2Inventory {
  clients: number;
  topics: number;
  /** clients_topickeys rows. */
  topicLinks: number;
  /** clients_clientkeys rows (pubkey mode only). */
  clientLinks: number;
}

export type C2CryptoMode = 'symkey' | 'pubkey' | 'unknown';
export interface CryptoModeFinding {
  mode: C2CryptoMode;
  /** Where the answer came from. */
  source: 'config' | 'database' | 'none';
  detail: string;
}

export class C2SchemaMissingError extends Error {
  constructor(public table: string) {
    super(`table ${table} not found: is this C2's database (its db-database / db-schema settings)?`);
  }
}

/**
 * Count C2's rows. Pass a client inside a REPEATABLE READ transaction to count exactly what a
 * pg_dump sharing its snapshot sees.
 */
export async function readC2Inventory(db: string | pg.ClientBase): Promise<C2Inventory> {
  return withClientOrUrl(db, async (c) => {
    const present = await c.query<{ name: string; present: boolean }>(
      `SELECT t AS name, to_regclass(t) IS NOT NULL AS present FROM unnest($1::text[]) t`, [Object.values(C2_TABLES)]);
    const has = new Map(present.rows.map((r) => [r.name, r.present]));
    // C2 before pubkey mode (the 2019 build the harness runs) has no clients_clientkeys table.
    for (const t of [C2_TABLES.clients, C2_TABLES.topics, C2_TABLES.topicLinks]) if (!has.get(t)) throw new C2SchemaMissingError(t);
    const r = await c.query<{ clients: string; topics: string; topic_links: string; client_links: string }>(
      `SELECT (SELECT count(*) FROM ${C2_TABLES.clients}) AS clients,
              (SELECT count(*) FROM ${C2_TABLES.topics}) AS topics,
              (SELECT count(*) FROM ${C2_TABLES.topicLinks}) AS topic_links,
              ${has.get(C2_TABLES.clientLinks) ? `(SELECT count(*) FROM ${C2_TABLES.clientLinks})` : '0'} AS client_links`);
    const row = r.rows[0];
    return { clients: +row.clients, topics: +row.topics, topicLinks: +row.topic_links, clientLinks: +row.client_links };
  });
}

/** crypto-mode from C2's config.yaml in configsDir (E4C2_CRYPTO_MODE in the given env wins, as in C2). */
export function cryptoModeFromConfig(configsDir: string, env: NodeJS.ProcessEnv = {}): C2CryptoMode | undefined {
  const fromEnv = env.E4C2_CRYPTO_MODE;
  if (fromEnv === 'symkey' || fromEnv === 'pubkey') return fromEnv;
  const file = path.join(configsDir, 'config.yaml');
  if (!fs.existsSync(file)) return undefined;
  let doc: unknown;
  try { doc = YAML.parse(fs.readFileSync(file, 'utf8')); } catch { return undefined; }
  const v = doc && typeof doc === 'object' ? (doc as Record<string, unknown>)['crypto-mode'] : undefined;
  if (v === 'symkey' || v === 'pubkey') return v;
  if (v === undefined || v === null || v === '') return 'symkey'; // C2's default
  return undefined;
}

/**
 * C2's crypto mode: C2's own config says it best; otherwise client↔client links exist only in
 * pubkey mode. Symkey and pubkey client keys are both 32 bytes sealed, so an empty link table
 * proves nothing and the answer is 'unknown'.
 */
export function detectCryptoMode(inventory: C2Inventory, configsDir?: string, env: NodeJS.ProcessEnv = {}): CryptoModeFinding {
  if (configsDir) {
    const m = cryptoModeFromConfig(configsDir, env);
    if (m) return { mode: m, source: 'config', detail: `crypto-mode in ${path.join(configsDir, 'config.yaml')}` };
  }
  if (inventory.clientLinks > 0) {
    return { mode: 'pubkey', source: 'database', detail: `${inventory.clientLinks} rows in ${C2_TABLES.clientLinks} (only pubkey mode links clients)` };
  }
  return { mode: 'unknown', source: 'none', detail: 'no config.yaml with crypto-mode and no client links in the database' };
}
