// Fill a database with C2-shaped rows: clients, topic keys, client↔topic links (and optionally
// client↔client links, as pubkey mode has). Key columns are sealed per row by the caller's sealer (C2's
// at-rest format, lib/e4/keystore.ts sealDbValue) and streamed with COPY, so a million clients load in
// seconds with bounded memory; links carry no keys and are generated server-side.
import crypto from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { C2_TABLES, c2SchemaDdl } from '../c2/db-schema.ts';
import { createPgClient } from '../pg/pg-client.ts';

/** Seal a 32-byte key the way C2 stores it (tag16 ‖ ciphertext). */
export type SealDbValue = (plain: Uint8Array) => Uint8Array;
/** Seal many keys at once (same output as SealDbValue per item), e.g. lib/e4/keystore.ts sealDbValuesBatch. */
export type SealDbValuesBatch = (plains: Uint8Array[]) => Uint8Array[];

export interface SeedOptions {
  clients: number;
  topics: number;
  /** Client↔topic links in total; spread evenly, each client gets consecutive distinct topics. */
  links: number;
  /** Client↔client links (pubkey mode); default 0. */
  clientLinks?: number;
  /** Sealer for key columns. Without seal or sealBatch, keys are random 48-byte values that do NOT decrypt. */
  seal?: SealDbValue;
  /** Faster batch sealer; preferred over seal when given. */
  sealBatch?: SealDbValuesBatch;
  /** Create C2's tables first (default true). */
  createSchema?: boolean;
  /** Rows per COPY chunk handed to the socket (default 5000). */
  chunkRows?: number;
  /** Name prefixes (default 'device-' and 'fleet/topic-'). */
  clientPrefix?: string;
  topicPrefix?: string;
}

export interface SeedResult {
  clients: number;
  topics: number;
  links: number;
  clientLinks: number;
  keysSealed: boolean;
  seconds: number;
}

/** C2's client id: first 16 bytes of SHA3-256(name) (OpenSSL's SHA3 through node:crypto). */
export function c2ClientId(name: string): Buffer {
  return crypto.createHash('sha3-256').update(name, 'utf8').digest().subarray(0, 16);
}

/** COPY text-format rows produced lazily, one chunk of rows per read, so memory stays flat. */
function copyChunks(count: number, chunkRows: number, chunk: (from: number, to: number) => string): Readable {
  let i = 1;
  return new Readable({
    read() {
      if (i > count) { this.push(null); return; }
      const end = Math.min(count, i + chunkRows - 1);
      const text = chunk(i, end);
      i = end + 1;
      this.push(text);
    },
  });
}

/** Fresh random 32-byte keys for rows from..to, sealed in one go. */
function sealedKeys(n: number, seal: SealDbValuesBatch): string[] {
  const raw = crypto.randomBytes(32 * n);
  const plains = Array.from({ length: n }, (_, k) => raw.subarray(32 * k, 32 * k + 32));
  return seal(plains).map((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex'));
}

export function clientName(i: number, prefix = 'device-'): string {
  return `${prefix}${String(i).padStart(7, '0')}`;
}
export function topicName(i: number, prefix = 'fleet/topic-'): string {
  return `${prefix}${String(i).padStart(6, '0')}`;
}

async function copyInto(client: pg.ClientBase, sql: string, source: Readable): Promise<void> {
  await pipeline(source, client.query(copyFrom(sql)));
}

/**
 * Seed C2's tables. Uses the given connection string or client; a superuser connection loads faster
 * (foreign-key triggers are skipped during the load with session_replication_role = replica).
 */
export async function seedC2Database(db: string | pg.ClientBase, opts: SeedOptions): Promise<SeedResult> {
  const t0 = Date.now();
  const own = typeof db === 'string' ? createPgClient(db) : null;
  const client = own ?? (db as pg.ClientBase);
  if (own) await own.connect();
  try {
    if (opts.topics < 1 && opts.links > 0) throw new Error('seedC2Database: links need at least one topic');
    if (opts.clients < 1 && opts.links > 0) throw new Error('seedC2Database: links need at least one client');
    const perClient = opts.clients > 0 ? Math.ceil(opts.links / opts.clients) : 0;
    if (perClient > opts.topics) throw new Error(`seedC2Database: ${opts.links} links over ${opts.clients} clients needs ${perClient} distinct topics per client but only ${opts.topics} topics exist`);
    const ddl = c2SchemaDdl();
    if (opts.createSchema !== false) {
      await client.query(ddl.sql);
      await client.query('RESET search_path'); // pg_dump-made DDL empties it for its session
    }
    const seal: SealDbValuesBatch = opts.sealBatch
      ?? (opts.seal ? (plains) => plains.map((p) => opts.seal!(p)) : (plains) => plains.map(() => crypto.randomBytes(48)));
    const chunk = opts.chunkRows ?? 5000;
    const cp = opts.clientPrefix ?? 'device-';
    const tp = opts.topicPrefix ?? 'fleet/topic-';
    let superuser = false;
    try { await client.query('SET session_replication_role = replica'); superuser = true; } catch { /* not superuser: triggers stay */ }

    await copyInto(client, `COPY ${C2_TABLES.clients} (id, e4_id, name, key) FROM STDIN`, copyChunks(opts.clients, chunk, (from, to) => {
      const keys = sealedKeys(to - from + 1, seal);
      let out = '';
      for (let i = from; i <= to; i++) {
        const name = clientName(i, cp);
        out += `${i}\t\\\\x${c2ClientId(name).toString('hex')}\t${name}\t\\\\x${keys[i - from]}\n`;
      }
      return out;
    }));
    await copyInto(client, `COPY ${C2_TABLES.topics} (id, topic, key) FROM STDIN`, copyChunks(opts.topics, chunk, (from, to) => {
      const keys = sealedKeys(to - from + 1, seal);
      let out = '';
      for (let i = from; i <= to; i++) out += `${i}\t${topicName(i, tp)}\t\\\\x${keys[i - from]}\n`;
      return out;
    }));
    if (opts.links > 0) {
      // Client c gets topics c*k .. c*k+k-1 (mod topics): distinct per client, spread over all topics.
      await client.query(
        `INSERT INTO ${C2_TABLES.topicLinks} (client_id, topic_key_id)
         SELECT c, ((c::bigint * $2 + j) % $3) + 1
           FROM generate_series(1, $1::int) c, generate_series(0, $2::int - 1) j
          WHERE (c - 1)::bigint * $2 + j < $4`,
        [opts.clients, perClient, opts.topics, opts.links]);
    }
    const clientLinks = opts.clientLinks ?? 0;
    if (clientLinks > 0) {
      if (opts.clients < 2 || clientLinks > opts.clients * (opts.clients - 1)) throw new Error(`seedC2Database: ${clientLinks} client links need more clients than ${opts.clients}`);
      // Pubkey-mode C2 creates this join table; the 2019 C2 whose schema we capture does not.
      await client.query(`CREATE TABLE IF NOT EXISTS ${C2_TABLES.clientLinks} (client_id integer NOT NULL, clientkey_id integer NOT NULL, PRIMARY KEY (client_id, clientkey_id))`);
      await client.query(
        `INSERT INTO ${C2_TABLES.clientLinks} (client_id, clientkey_id)
         SELECT (n % $1) + 1, ((n % $1) + 1 + n / $1) % $1 + 1 FROM generate_series(0, $2::int - 1) n`,
        [opts.clients, clientLinks]);
    }
    if (superuser) await client.query('SET session_replication_role = DEFAULT');
    for (const t of [C2_TABLES.clients, C2_TABLES.topics]) {
      await client.query(`SELECT setval(pg_get_serial_sequence('${t}', 'id'), GREATEST((SELECT max(id) FROM ${t}), 1))`);
    }
    await client.query(`ANALYZE`);
    return {
      clients: opts.clients, topics: opts.topics, links: opts.links, clientLinks,
      keysSealed: !!(opts.seal || opts.sealBatch), seconds: (Date.now() - t0) / 1000,
    };
  } finally {
    if (own) await own.end();
  }
}
