// Read every sealed key C2 keeps (clients.key, topic_keys.key) and check each opens with the DB
// passphrase's key. Rows stream through a server-side cursor, so memory stays flat at any size.
import pg from 'pg';
import { C2_TABLES } from './c2-schema.ts';

/** Open a sealed DB value; return null (or throw) when it does not authenticate. */
export type OpenDbValue = (sealed: Uint8Array) => Uint8Array | null;

export interface SealedKeyRow {
  table: 'clients' | 'topic_keys';
  id: number;
  /** Client name or topic. */
  label: string;
  key: Buffer;
}

export interface KeyStoreReport {
  clients: { total: number; opened: number; failed: number };
  topics: { total: number; opened: number; failed: number };
  /** First failures (at most maxFailuresListed), naming table, id and label. */
  failures: { table: string; id: number; label: string; reason: string }[];
  seconds: number;
  ok: boolean;
}

/** Stream sealed keys of one table through a cursor, batchSize rows per round trip. */
export async function* readSealedKeys(client: pg.ClientBase, table: 'clients' | 'topic_keys', batchSize = 20_000): AsyncGenerator<SealedKeyRow[]> {
  const label = table === 'clients' ? 'name' : 'topic';
  const cursor = `e4ops_keys_${table}`;
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    await client.query(`DECLARE ${cursor} NO SCROLL CURSOR FOR SELECT id, ${label} AS label, key FROM ${table === 'clients' ? C2_TABLES.clients : C2_TABLES.topics} ORDER BY id`);
    for (;;) {
      const r = await client.query<{ id: number; label: string; key: Buffer }>(`FETCH ${batchSize} FROM ${cursor}`);
      if (!r.rows.length) break;
      yield r.rows.map((row) => ({ table, id: row.id, label: row.label, key: row.key }));
    }
    await client.query('COMMIT');
  } catch (e) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw e;
  }
}

/** Open many sealed values at once; null (or a throw for the whole batch) = does not authenticate. */
export type OpenDbValuesBatch = (sealed: Uint8Array[]) => (Uint8Array | null)[];

export interface VerifyKeyStoreOptions {
  batchSize?: number;
  maxFailuresListed?: number;
  /** Faster batch opener (lib/e4/keystore.ts); used instead of `open` when given. */
  openBatch?: OpenDbValuesBatch;
}

const asBytes = (b: Buffer) => new Uint8Array(b.buffer, b.byteOffset, b.byteLength);

/** Check every sealed key in C2's database opens with `open` (built from the DB passphrase). */
export async function verifyKeyStore(db: string | pg.ClientBase, open: OpenDbValue, opts: VerifyKeyStoreOptions = {}): Promise<KeyStoreReport> {
  const t0 = Date.now();
  const own = typeof db === 'string' ? new pg.Client({ connectionString: db }) : null;
  const client = own ?? (db as pg.ClientBase);
  if (own) await own.connect();
  const max = opts.maxFailuresListed ?? 20;
  const report: KeyStoreReport = {
    clients: { total: 0, opened: 0, failed: 0 }, topics: { total: 0, opened: 0, failed: 0 }, failures: [], seconds: 0, ok: false,
  };
  try {
    for (const table of ['clients', 'topic_keys'] as const) {
      const tally = table === 'clients' ? report.clients : report.topics;
      for await (const batch of readSealedKeys(client, table, opts.batchSize)) {
        let opened: (Uint8Array | null)[] | undefined;
        if (opts.openBatch) {
          try { opened = opts.openBatch(batch.map((r) => asBytes(r.key))); } catch { opened = undefined; }
        }
        for (let i = 0; i < batch.length; i++) {
          const row = batch[i];
          tally.total++;
          let reason = '';
          if (opened) {
            if (!opened[i]) reason = 'does not authenticate';
          } else {
            try {
              const plain = open(asBytes(row.key));
              if (!plain) reason = 'does not authenticate';
            } catch (e) {
              reason = (e as Error).message || 'does not authenticate';
            }
          }
          if (reason) {
            tally.failed++;
            if (report.failures.length < max) report.failures.push({ table, id: row.id, label: row.label, reason });
          } else tally.opened++;
        }
      }
    }
  } finally {
    if (own) await own.end();
  }
  report.seconds = (Date.now() - t0) / 1000;
  report.ok = report.clients.failed === 0 && report.topics.failed === 0;
  return report;
}
