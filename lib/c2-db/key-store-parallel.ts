// verifyKeyStore on every core: each key table is cut into ranges of heap blocks, and worker threads (one
// per core, os.availableParallelism()) each read a range with a COPY of their own (a TID range scan: no
// index needed, every page read once) and open its keys. On one thread the check of a million-client
// store is parsing and AES bound; ranges spread both over the cores and over PostgreSQL backends. The
// report is verifyKeyStore's: the same counts, the same failures (table, id, label, reason), listed in
// the order one scan of each table reads them.
import os from 'node:os';
import type { Worker } from 'node:worker_threads';
import { C2_TABLES } from '../c2/db-schema.ts';
import { withClientOrUrl } from '../pg/pg-client.ts';
import { checkPackedDbKeys, openDbValue, openDbValuesBatch } from '../e4/keystore.ts';
import { startTsWorker } from '../ts-worker.ts';
import {
  addKeyRangeResult, emptyKeyStoreReport, finishKeyStoreReport, KEY_TABLES, verifyKeyStore,
  type KeyBlockRange, type KeyRangeResult, type KeyStoreReport, type KeyTable, type KeyTally,
} from './key-store.ts';
import type { KeyRangeReply, KeyRangeTask } from './key-store-worker.ts';

/** Ranges per worker and table: enough that a slow range (or a busy core) does not leave a worker idle at the end. */
const RANGES_PER_WORKER = 4;
/** Below this many blocks (8 KiB each, about 80 C2 rows) a range is not worth a COPY and a connection of its own. */
const MIN_BLOCKS_PER_RANGE = 256;
/** Below this many blocks in all (~100k keys), handing out ranges costs more than one thread checking them all. */
const IN_PROCESS_BELOW_BLOCKS = 1280;
/** TID range scans (ctid >= ... AND ctid < ...) arrived in PostgreSQL 14; before, each range would scan the whole table. */
const TID_RANGE_SCAN_SINCE = 140000;

export interface ParallelKeyCheckOptions {
  /** Worker threads (default os.availableParallelism(); 1 = in-process, as verifyKeyStore). */
  workers?: number;
  /** Heap blocks per range (default: about RANGES_PER_WORKER ranges per worker and table, at least MIN_BLOCKS_PER_RANGE). */
  blocksPerRange?: number;
  /** Check in-process when the tables hold fewer blocks than this in all (default IN_PROCESS_BELOW_BLOCKS; 0 = always use the workers). */
  inProcessBelowBlocks?: number;
  batchSize?: number;
  maxFailuresListed?: number;
  tables?: KeyTable[];
  /** Called as each range is done (which worker checked it, and what it found). */
  onRange?: (r: { table: KeyTable; range: KeyBlockRange; index: number; worker: number; tally: KeyTally }) => void;
}

/**
 * Worker threads for a key check: E4OPS_KEY_CHECK_WORKERS when set (1 = on the caller's thread), else one per
 * core. On a host whose cores are busy with other work, fewer threads than cores may finish sooner.
 */
export function defaultKeyCheckWorkers(env: NodeJS.ProcessEnv = process.env): number {
  const v = env.E4OPS_KEY_CHECK_WORKERS;
  if (v === undefined || v === '') return Math.max(1, os.availableParallelism());
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 256) throw new Error(`E4OPS_KEY_CHECK_WORKERS=${v}: give a whole number of worker threads from 1 to 256 (1 = check on the main thread), or unset it for one per core`);
  return n;
}

interface PoolWorker { index: number; worker: Worker; ready: Promise<void>; current?: { taskId: number; resolve: (r: KeyRangeResult) => void; reject: (e: Error) => void } }

/** Worker threads that check key ranges; started once (ahead of need with warmKeyCheckWorkers) and reused. */
export class KeyCheckPool {
  private workers: PoolWorker[] = [];
  private nextTask = 1;
  private idleTimer?: NodeJS.Timeout;
  private closed = false;

  /** undefined when worker threads cannot run our modules here (no tsx): callers check in-process. */
  static start(size: number, idleMs = 30_000): KeyCheckPool | undefined {
    const pool = new KeyCheckPool(idleMs);
    for (let i = 0; i < size; i++) {
      const w = startTsWorker(new URL('./key-store-worker.ts', import.meta.url), null, `e4ops-key-check-${i}`);
      if (!w) { void pool.close(); return undefined; }
      pool.add(i, w);
    }
    pool.armIdleTimer(); // a pool started ahead of need that is never used goes away too
    return pool;
  }

  private constructor(private readonly idleMs: number) {}

  get size(): number { return this.workers.length; }

  private add(index: number, worker: Worker): void {
    worker.unref(); // an idle pool never keeps the process alive
    let readyResolve!: () => void;
    let readyReject!: (e: Error) => void;
    const pw: PoolWorker = { index, worker, ready: new Promise<void>((res, rej) => { readyResolve = res; readyReject = rej; }) };
    pw.ready.catch(() => undefined);
    worker.on('message', (m: KeyRangeReply | { bootError: string }) => {
      if ('bootError' in m) { readyReject(new Error(`key-check worker did not start: ${m.bootError}`)); return; }
      if ('ready' in m) { readyResolve(); return; }
      const cur = pw.current;
      if (!cur || cur.taskId !== m.taskId) return;
      pw.current = undefined;
      if ('error' in m) cur.reject(new Error(m.error)); else cur.resolve(m.result);
    });
    const fail = (e: Error) => {
      readyReject(e);
      pw.current?.reject(e);
      pw.current = undefined;
      this.workers = this.workers.filter((x) => x !== pw);
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`key-check worker ${index} exited (code ${code})`)));
    this.workers.push(pw);
  }

  /** Every worker has loaded its modules (or one could not: then the error). */
  async ready(): Promise<void> { await Promise.all(this.workers.map((w) => w.ready)); }

  /**
   * Run the tasks, each on the next free worker, and return the results in the order given.
   * The first failure rejects (the remaining tasks are not started).
   */
  async runAll(tasks: Omit<KeyRangeTask, 'taskId'>[], onDone?: (i: number, worker: number, r: KeyRangeResult) => void): Promise<KeyRangeResult[]> {
    if (this.closed) throw new Error('the key-check pool is closed');
    clearTimeout(this.idleTimer);
    await this.ready();
    const results: KeyRangeResult[] = new Array(tasks.length);
    let next = 0;
    let failed: Error | undefined;
    const lane = async (pw: PoolWorker) => {
      while (!failed && next < tasks.length) {
        const i = next++;
        const taskId = this.nextTask++;
        const r = await new Promise<KeyRangeResult>((resolve, reject) => {
          pw.current = { taskId, resolve, reject };
          pw.worker.postMessage({ ...tasks[i], taskId } satisfies KeyRangeTask);
        }).catch((e: Error) => { failed ??= e; return undefined; });
        if (!r) return;
        results[i] = r;
        onDone?.(i, pw.index, r);
      }
    };
    try {
      await Promise.all([...this.workers].map(lane));
      if (failed) throw failed;
      if (results.some((r) => r === undefined)) throw new Error('the key-check workers ended before every range was checked');
      return results;
    } finally {
      this.armIdleTimer();
    }
  }

  private armIdleTimer(): void {
    clearTimeout(this.idleTimer);
    if (this.closed) return;
    this.idleTimer = setTimeout(() => void this.close(), this.idleMs);
    this.idleTimer.unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.idleTimer);
    const ws = this.workers;
    this.workers = [];
    await Promise.all(ws.map((w) => w.worker.terminate().catch(() => undefined)));
    if (shared === this) shared = undefined;
  }
}

let shared: KeyCheckPool | undefined;

/** The process's pool (started on first use, closed after 30 s idle). */
export function sharedKeyCheckPool(size = defaultKeyCheckWorkers()): KeyCheckPool | undefined {
  if (shared && shared.size === size) return shared;
  void shared?.close();
  shared = KeyCheckPool.start(size);
  return shared;
}

/**
 * Start the workers now (each loads its modules in ~0.2-0.5 s) so that a check that comes later,
 * e.g. after a restore still running, finds them ready. Does nothing on a single core.
 */
export function warmKeyCheckWorkers(workers = defaultKeyCheckWorkers()): void {
  if (workers > 1) void sharedKeyCheckPool(workers)?.ready().catch(() => undefined);
}

/** Block ranges covering a table of `blocks` blocks; the last is open-ended (rows appended meanwhile land in it). */
export function keyBlockRanges(blocks: number, workers: number, blocksPerRange?: number): KeyBlockRange[] {
  const per = Math.max(1, blocksPerRange ?? Math.max(MIN_BLOCKS_PER_RANGE, Math.ceil(blocks / (workers * RANGES_PER_WORKER))));
  const n = Math.max(1, Math.ceil(blocks / per));
  return Array.from({ length: n }, (_, i) => ({ fromBlock: i * per, ...(i < n - 1 ? { toBlock: (i + 1) * per } : {}) }));
}

/**
 * verifyKeyStore's check (every sealed key opens with dbKey) spread over worker threads. Checks in-process
 * when there is one worker, the store is small, the server predates TID range scans, or worker threads
 * cannot load our modules; the report is the same either way. The workers connect to `dbUrl` themselves.
 */
export async function verifyKeyStoreInParallel(dbUrl: string, dbKey: Uint8Array, opts: ParallelKeyCheckOptions = {}): Promise<KeyStoreReport> {
  const t0 = Date.now();
  const workers = opts.workers ?? defaultKeyCheckWorkers();
  const max = opts.maxFailuresListed ?? 20;
  const tables = opts.tables ?? [...KEY_TABLES];
  const inProcess = () => verifyKeyStore(dbUrl, (s) => openDbValue(dbKey, s), { openBatch: (s) => openDbValuesBatch(dbKey, s), checkPacked: (p, n) => checkPackedDbKeys(dbKey, p, n), batchSize: opts.batchSize, maxFailuresListed: max, tables });
  if (workers <= 1) return inProcess();
  const sizes = await withClientOrUrl(dbUrl, async (c) => {
    const version = Number((await c.query<{ v: string }>("SELECT current_setting('server_version_num') AS v")).rows[0].v);
    const blocks: { table: KeyTable; blocks: number }[] = [];
    for (const table of tables) {
      const r = await c.query<{ n: string }>(`SELECT pg_relation_size($1::regclass) / current_setting('block_size')::int AS n`, [table === 'clients' ? C2_TABLES.clients : C2_TABLES.topics]);
      blocks.push({ table, blocks: Number(r.rows[0].n) });
    }
    return { version, blocks };
  });
  const total = sizes.blocks.reduce((n, b) => n + b.blocks, 0);
  if (sizes.version < TID_RANGE_SCAN_SINCE || total < (opts.inProcessBelowBlocks ?? IN_PROCESS_BELOW_BLOCKS)) return inProcess();
  const pool = sharedKeyCheckPool(workers);
  if (!pool) return inProcess();
  const tasks = sizes.blocks.flatMap((b) => keyBlockRanges(b.blocks, workers, opts.blocksPerRange).map((range, index) => ({ table: b.table, range, index })));
  const key = Uint8Array.from(dbKey); // its own buffer: a pooled Buffer's neighbours are not sent along
  const results = await pool.runAll(
    tasks.map((t) => ({ dbUrl, dbKey: key, table: t.table, range: t.range, batchSize: opts.batchSize, maxFailuresListed: max })),
    (i, worker, r) => opts.onRange?.({ table: tasks[i].table, range: tasks[i].range, index: tasks[i].index, worker, tally: r.tally }),
  ).catch(async (e: Error) => {
    // Workers that cannot load our modules here: the in-process check gives the same report.
    if (/did not start/.test(e.message)) { await pool.close(); return undefined; }
    throw e;
  }).finally(() => key.fill(0));
  if (!results) return inProcess();
  const report = emptyKeyStoreReport();
  results.forEach((r, i) => addKeyRangeResult(report, tasks[i].table, r, max));
  return finishKeyStoreReport(report, t0);
}
