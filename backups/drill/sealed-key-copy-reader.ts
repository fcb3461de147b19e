// Every sealed key of a restored C2 database, read with COPY ... (FORMAT binary) and opened in
// batches: about five times faster than fetching rows through a cursor (no per-row protocol
// messages, no hex decoding of bytea), which keeps the drill's "every key decrypts" check a small
// part of its RTO on a million-client database. Same report shape as lib/c2-db/key-store.ts.
import type pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { C2_TABLES } from '../../lib/c2-db/c2-schema.ts';
import type { KeyStoreReport, OpenDbValuesBatch } from '../../lib/c2-db/key-store.ts';

const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');

interface Row { id: number; label: string; key: Buffer }

/** Parse PostgreSQL's binary COPY stream of (int4 id, text label, bytea key) rows, in batches. */
async function* copyRows(client: pg.ClientBase, sql: string, batchSize: number): AsyncGenerator<Row[]> {
  const stream = client.query(copyTo(sql));
  let buf: Buffer = Buffer.alloc(0);
  let p = 0;
  let header = false;
  let batch: Row[] = [];
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    buf = p < buf.length ? Buffer.concat([buf.subarray(p), chunk]) : chunk;
    p = 0;
    if (!header) {
      if (buf.length < 19) continue;
      if (!buf.subarray(0, 11).equals(SIGNATURE)) throw new Error('COPY binary stream has no PGCOPY signature');
      p = 19 + buf.readUInt32BE(15);
      header = true;
    }
    for (;;) {
      if (buf.length - p < 2) break;
      const fields = buf.readInt16BE(p);
      if (fields === -1) { p = buf.length; break; }
      if (fields !== 3) throw new Error(`COPY binary row has ${fields} fields, expected 3`);
      // Walk the three fields; stop (and wait for more bytes) if the row is incomplete.
      let q = p + 2;
      const spans: [number, number][] = [];
      for (let f = 0; f < 3; f++) {
        if (buf.length - q < 4) break;
        const len = buf.readInt32BE(q);
        if (len < 0) { spans.push([q + 4, -1]); q += 4; continue; }
        if (buf.length - q - 4 < len) break;
        spans.push([q + 4, len]);
        q += 4 + len;
      }
      if (spans.length < 3) break;
      const [idS, labelS, keyS] = spans;
      batch.push({
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

/** Check every sealed key (clients.key, topic_keys.key) opens; failures name table, id and label. */
export async function verifySealedKeysByCopy(client: pg.ClientBase, openBatch: OpenDbValuesBatch, opts: { batchSize?: number; maxFailuresListed?: number; tables?: ('clients' | 'topic_keys')[] } = {}): Promise<KeyStoreReport> {
  const t0 = Date.now();
  const max = opts.maxFailuresListed ?? 20;
  const report: KeyStoreReport = {
    clients: { total: 0, opened: 0, failed: 0 }, topics: { total: 0, opened: 0, failed: 0 }, failures: [], seconds: 0, ok: false,
  };
  for (const table of opts.tables ?? (['clients', 'topic_keys'] as const)) {
    const tally = table === 'clients' ? report.clients : report.topics;
    const sql = table === 'clients'
      ? `COPY (SELECT id, name, key FROM ${C2_TABLES.clients}) TO STDOUT (FORMAT binary)`
      : `COPY (SELECT id, topic, key FROM ${C2_TABLES.topics}) TO STDOUT (FORMAT binary)`;
    for await (const rows of copyRows(client, sql, opts.batchSize ?? 50_000)) {
      let opened: (Uint8Array | null)[] | undefined;
      try { opened = openBatch(rows.map((r) => r.key)); } catch { opened = undefined; }
      rows.forEach((row, i) => {
        tally.total++;
        if (opened?.[i]) { tally.opened++; return; }
        tally.failed++;
        if (report.failures.length < max) report.failures.push({ table, id: row.id, label: row.label, reason: 'does not authenticate' });
      });
    }
  }
  report.seconds = (Date.now() - t0) / 1000;
  report.ok = report.clients.failed === 0 && report.topics.failed === 0;
  return report;
}

/** One report out of per-table reports (the drill checks tables as soon as each is restored). */
export function mergeKeyStoreReports(reports: KeyStoreReport[], maxFailuresListed = 20): KeyStoreReport {
  const out: KeyStoreReport = { clients: { total: 0, opened: 0, failed: 0 }, topics: { total: 0, opened: 0, failed: 0 }, failures: [], seconds: 0, ok: true };
  for (const r of reports) {
    for (const k of ['clients', 'topics'] as const) {
      out[k].total += r[k].total; out[k].opened += r[k].opened; out[k].failed += r[k].failed;
    }
    out.failures.push(...r.failures);
    out.seconds += r.seconds;
    out.ok &&= r.ok;
  }
  out.failures = out.failures.slice(0, maxFailuresListed);
  return out;
}
