// Read every sealed key C2 keeps (clients.key, topic_keys.key) and check each opens with the DB
// passphrase's key. Rows come out of PostgreSQL with COPY ... (FORMAT binary) and are parsed in
// batches: about five times faster than a cursor (no per-row protocol messages, no hex decoding of
// bytea), and memory stays at one batch at any size. Used by backups' key-store check and the drill.
import type pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { C2_TABLES } from '../c2/db-schema.ts';
import { createPgClient } from '../pg/pg-client.ts';

/** Open a sealed DB value; return null (or throw) when it does not authenticate. */
export type OpenDbValue = (sealed: Uint8Array) => Uint8Array | null;

/** Open many sealed values at once; null (or a throw for the whole batch) = does not authenticate. */
export type OpenDbValuesBatch = (sealed: Uint8Array[]) => (Uint8Array | null)[];

export type KeyTable = 'clients' | 'topic_keys';

export interface SealedKeyRow {
  table: KeyTable;
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

/**
 * The rows stored in heap blocks fromBlock <= block < toBlock (toBlock undefined: to the end of the table).
 * Cut by physical block rather than by id: PostgreSQL (14+) reads such a range with a TID range scan, which
 * needs no index (a logical restore checks keys before its primary keys exist) and reads each page once.
 */
export interface KeyBlockRange { fromBlock: number; toBlock?: number }

function blockBound(n: number): number {
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`key range bound ${n} is not a block number`);
  return n;
}

function rangeWhere(range: KeyBlockRange | undefined): string {
  if (!range) return '';
  return ` WHERE ctid >= '(${blockBound(range.fromBlock)},0)'::tid${range.toBlock === undefined ? '' : ` AND ctid < '(${blockBound(range.toBlock)},0)'::tid`}`;
}

const PGCOPY_SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');
const PGCOPY_HEADER_BYTES = 19; // signature (11) + flags (4) + header extension length (4)

/**
 * Stream the sealed keys of one table, batchSize rows at a time, parsing PostgreSQL's binary COPY
 * format of (int4 id, text label, bytea key) rows. Keys are views into the received chunks.
 */
export async function* readSealedKeys(client: pg.ClientBase, table: KeyTable, batchSize = 50_000, range?: KeyBlockRange): AsyncGenerator<SealedKeyRow[]> {
  const where = rangeWhere(range);
  const sql = table === 'clients'
    ? `COPY (SELECT id, name, key FROM ${C2_TABLES.clients}${where}) TO STDOUT (FORMAT binary)`
    : `COPY (SELECT id, topic, key FROM ${C2_TABLES.topics}${where}) TO STDOUT (FORMAT binary)`;
  const stream = client.query(copyTo(sql));
  let buf: Buffer = Buffer.alloc(0);
  let p = 0;
  let header = false;
  let batch: SealedKeyRow[] = [];
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    buf = p < buf.length ? Buffer.concat([buf.subarray(p), chunk]) : chunk;
    p = 0;
    if (!header) {
      if (buf.length < PGCOPY_HEADER_BYTES) continue;
      if (!buf.subarray(0, PGCOPY_SIGNATURE.length).equals(PGCOPY_SIGNATURE)) throw new Error(`COPY of ${table} keys: binary stream has no PGCOPY signature`);
      p = PGCOPY_HEADER_BYTES + buf.readUInt32BE(15);
      header = true;
    }
    for (;;) {
      if (buf.length - p < 2) break;
      const fields = buf.readInt16BE(p);
      if (fields === -1) { p = buf.length; break; } // trailer
      if (fields !== 3) throw new Error(`COPY of ${table} keys: binary row has ${fields} fields, expected 3 (id, label, key)`);
      // Walk the three fields; stop (and wait for more bytes) if the row is incomplete.
      let q = p + 2;
      const spans: [number, number][] = [];
      for (let f = 0; f < 3; f++) {
        if (buf.length - q < 4) break;
        const len = buf.readInt32BE(q);
        if (len < 0) { spans.push([q + 4, -1]); q += 4; continue; } // NULL
        if (buf.length - q - 4 < len) break;
        spans.push([q + 4, len]);
        q += 4 + len;
      }
      if (spans.length < 3) break;
      const [idS, labelS, keyS] = spans;
      batch.push({
        table,
        id: buf.readInt32BE(idS[0]),
        label: labelS[1] < 0 ? '' : buf.toString('utf8', labelS[0], labelS[0] + labelS[1]),
        key: keyS[1] < 0 ? Buffer.alloc(0) : buf.subarray(keyS[0], keyS[0] + keyS[1]),
      });
      p = q;
      if (batch.length >= batchSize) { yield batch; batch = []; }
    }
  }
  if (batch.length) yield batch;
}

/** Check n sealed keys packed end to end (48 bytes each): one flag per key, 1 = opens (lib/e4 checkPackedDbKeys). */
export type CheckPackedKeys = (packed: Uint8Array, n: number) => Uint8Array;

const SEALED_32 = 48; // tag16 ‖ ct32: every key C2 seals

/**
 * One batch of (id, key) rows in read order, for the packed check: keys of the usual 48 bytes are copied end
 * to end into `packed` (slot[i] >= 0), any other key is kept apart (slot[i] = -1 - its index in `odd`).
 * No per-row objects and no labels: on a million rows that parsing costs more than the AES.
 */
export interface PackedKeyBatch { count: number; ids: Int32Array; slot: Int32Array; packed: Uint8Array; packedCount: number; odd: Uint8Array[] }

/** Stream (id, key) of one table (or block range) as PackedKeyBatch, from a binary COPY of those two columns only. */
export async function* readPackedSealedKeys(client: pg.ClientBase, table: KeyTable, batchSize = 50_000, range?: KeyBlockRange): AsyncGenerator<PackedKeyBatch> {
  const where = rangeWhere(range);
  const stream = client.query(copyTo(`COPY (SELECT id, key FROM ${table === 'clients' ? C2_TABLES.clients : C2_TABLES.topics}${where}) TO STDOUT (FORMAT binary)`));
  const fresh = (): PackedKeyBatch => ({ count: 0, ids: new Int32Array(batchSize), slot: new Int32Array(batchSize), packed: new Uint8Array(batchSize * SEALED_32), packedCount: 0, odd: [] });
  let b = fresh();
  let buf: Buffer = Buffer.alloc(0);
  let p = 0;
  let header = false;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    buf = p < buf.length ? Buffer.concat([buf.subarray(p), chunk]) : chunk;
    p = 0;
    if (!header) {
      if (buf.length < PGCOPY_HEADER_BYTES) continue;
      if (!buf.subarray(0, PGCOPY_SIGNATURE.length).equals(PGCOPY_SIGNATURE)) throw new Error(`COPY of ${table} keys: binary stream has no PGCOPY signature`);
      p = PGCOPY_HEADER_BYTES + buf.readUInt32BE(15);
      header = true;
    }
    for (;;) {
      // A row: int16 field count, int32 length + int4 id, int32 length + key bytes (or -1 for NULL).
      if (buf.length - p < 2) break;
      const fields = buf.readInt16BE(p);
      if (fields === -1) { p = buf.length; break; } // trailer
      if (fields !== 2) throw new Error(`COPY of ${table} keys: binary row has ${fields} fields, expected 2 (id, key)`);
      if (buf.length - p < 14) break;
      if (buf.readInt32BE(p + 2) !== 4) throw new Error(`COPY of ${table} keys: id is not a 4-byte integer`);
      const len = buf.readInt32BE(p + 10);
      const keyAt = p + 14;
      if (len > 0 && buf.length - keyAt < len) break;
      const i = b.count++;
      b.ids[i] = buf.readInt32BE(p + 6);
      if (len === SEALED_32) {
        b.packed.set(buf.subarray(keyAt, keyAt + SEALED_32), b.packedCount * SEALED_32);
        b.slot[i] = b.packedCount++;
      } else {
        b.slot[i] = -1 - b.odd.length;
        b.odd.push(len > 0 ? Uint8Array.from(buf.subarray(keyAt, keyAt + len)) : new Uint8Array(0));
      }
      p = keyAt + Math.max(0, len);
      if (b.count >= batchSize) { yield b; b = fresh(); }
    }
  }
  if (b.count) yield b;
}

export interface VerifyKeyStoreOptions {
  batchSize?: number;
  maxFailuresListed?: number;
  /** Faster batch opener (lib/e4/keystore.ts openDbValuesBatch); used instead of `open` when given (`open` only if it throws). */
  openBatch?: OpenDbValuesBatch;
  /** Fastest: check 48-byte keys packed end to end (lib/e4 checkPackedDbKeys); other lengths go to openBatch / open. */
  checkPacked?: CheckPackedKeys;
  /** Tables to check (default both). */
  tables?: KeyTable[];
}

const asBytes = (b: Buffer) => new Uint8Array(b.buffer, b.byteOffset, b.byteLength);

export interface KeyTally { total: number; opened: number; failed: number }
/** What one table (or one block range of it) gave: counts and its first failures, in the order read. */
export interface KeyRangeResult { tally: KeyTally; failures: KeyStoreReport['failures'] }

/** Why each key does not open ('' = it opens): openBatch first, per-key `open` when it throws or is absent. */
function reasonsFor(keys: Uint8Array[], open: OpenDbValue | undefined, openBatch: OpenDbValuesBatch | undefined): string[] {
  let opened: (Uint8Array | null)[] | undefined;
  if (openBatch) {
    try { opened = openBatch(keys); } catch { opened = undefined; }
  }
  return keys.map((k, i) => {
    if (opened) return opened[i] ? '' : 'does not authenticate';
    if (!open) return 'does not authenticate';
    try { return open(k) ? '' : 'does not authenticate'; } catch (e) { return (e as Error).message || 'does not authenticate'; }
  });
}

export interface KeyRangeCheckOptions { openBatch?: OpenDbValuesBatch; checkPacked?: CheckPackedKeys; batchSize?: number; maxFailuresListed: number; range?: KeyBlockRange }

/**
 * Open every sealed key of one table (or of one block range of it) read over `client`: the one place that
 * decides what counts as a failure, for verifyKeyStore and for the worker threads of key-store-parallel.ts.
 */
export async function checkSealedKeyRange(client: pg.ClientBase, table: KeyTable, open: OpenDbValue | undefined, opts: KeyRangeCheckOptions): Promise<KeyRangeResult> {
  if (opts.checkPacked) return checkPackedKeyRange(client, table, open, opts, opts.checkPacked);
  const tally: KeyTally = { total: 0, opened: 0, failed: 0 };
  const failures: KeyStoreReport['failures'] = [];
  for await (const batch of readSealedKeys(client, table, opts.batchSize, opts.range)) {
    const reasons = reasonsFor(batch.map((r) => asBytes(r.key)), open, opts.openBatch);
    for (let i = 0; i < batch.length; i++) {
      tally.total++;
      if (reasons[i]) {
        tally.failed++;
        if (failures.length < opts.maxFailuresListed) failures.push({ table, id: batch[i].id, label: batch[i].label, reason: reasons[i] });
      } else tally.opened++;
    }
  }
  return { tally, failures };
}

/** checkSealedKeyRange over packed batches; the labels of the (few) failures listed are read afterwards. */
async function checkPackedKeyRange(client: pg.ClientBase, table: KeyTable, open: OpenDbValue | undefined, opts: KeyRangeCheckOptions, checkPacked: CheckPackedKeys): Promise<KeyRangeResult> {
  const tally: KeyTally = { total: 0, opened: 0, failed: 0 };
  const failures: KeyStoreReport['failures'] = [];
  for await (const b of readPackedSealedKeys(client, table, opts.batchSize, opts.range)) {
    let ok: Uint8Array;
    try { ok = b.packedCount ? checkPacked(b.packed, b.packedCount) : new Uint8Array(0); } catch { ok = new Uint8Array(b.packedCount); }
    const oddReasons = b.odd.length ? reasonsFor(b.odd, open, opts.openBatch) : [];
    for (let i = 0; i < b.count; i++) {
      tally.total++;
      const s = b.slot[i];
      const reason = s >= 0 ? (ok[s] ? '' : 'does not authenticate') : oddReasons[-1 - s];
      if (reason) {
        tally.failed++;
        if (failures.length < opts.maxFailuresListed) failures.push({ table, id: b.ids[i], label: '', reason });
      } else tally.opened++;
    }
  }
  if (failures.length) {
    const sql = table === 'clients' ? `SELECT id, name AS label FROM ${C2_TABLES.clients} WHERE id = ANY($1::int4[])` : `SELECT id, topic AS label FROM ${C2_TABLES.topics} WHERE id = ANY($1::int4[])`;
    const labels = new Map((await client.query<{ id: number; label: string | null }>(sql, [failures.map((f) => f.id)])).rows.map((r) => [r.id, r.label ?? '']));
    for (const f of failures) f.label = labels.get(f.id) ?? '';
  }
  return { tally, failures };
}

/** An empty report, filled by verifyKeyStore or verifyKeyStoreInParallel. */
export function emptyKeyStoreReport(): KeyStoreReport {
  return { clients: { total: 0, opened: 0, failed: 0 }, topics: { total: 0, opened: 0, failed: 0 }, failures: [], seconds: 0, ok: false };
}

/** Add one table's (or range's) result to the report; results must arrive in table, then block order (the order one scan reads them). */
export function addKeyRangeResult(report: KeyStoreReport, table: KeyTable, r: KeyRangeResult, maxFailuresListed: number): void {
  const tally = table === 'clients' ? report.clients : report.topics;
  tally.total += r.tally.total;
  tally.opened += r.tally.opened;
  tally.failed += r.tally.failed;
  for (const f of r.failures) if (report.failures.length < maxFailuresListed) report.failures.push(f);
}

export function finishKeyStoreReport(report: KeyStoreReport, t0: number): KeyStoreReport {
  report.seconds = (Date.now() - t0) / 1000;
  report.ok = report.clients.failed === 0 && report.topics.failed === 0;
  return report;
}

export const KEY_TABLES: readonly KeyTable[] = ['clients', 'topic_keys'];

/** Check every sealed key in C2's database opens with `open` (built from the DB passphrase). */
export async function verifyKeyStore(db: string | pg.ClientBase, open: OpenDbValue, opts: VerifyKeyStoreOptions = {}): Promise<KeyStoreReport> {
  const t0 = Date.now();
  const own = typeof db === 'string' ? createPgClient(db) : null;
  const client = own ?? (db as pg.ClientBase);
  if (own) await own.connect();
  const max = opts.maxFailuresListed ?? 20;
  const report = emptyKeyStoreReport();
  try {
    for (const table of opts.tables ?? KEY_TABLES) {
      addKeyRangeResult(report, table, await checkSealedKeyRange(client, table, open, { openBatch: opts.openBatch, checkPacked: opts.checkPacked, batchSize: opts.batchSize, maxFailuresListed: max }), max);
    }
  } finally {
    if (own) await own.end();
  }
  return finishKeyStoreReport(report, t0);
}
