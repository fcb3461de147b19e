// Worker thread of key-store-parallel.ts: checks one block range of one key table per task, over a
// connection of its own (COPY parsing and AES both run here, off the caller's thread). It checks keys as
// verifyKeyStore does in-process (packed 48-byte keys, openDbValuesBatch for other lengths, per-value
// openDbValue when a batch throws), so a row fails here exactly when it would fail there.
import { parentPort } from 'node:worker_threads';
import { withPgClient } from '../pg/pg-client.ts';
import { checkPackedDbKeys, openDbValue, openDbValuesBatch } from '../e4/keystore.ts';
import { checkSealedKeyRange, type KeyBlockRange, type KeyRangeResult, type KeyTable } from './key-store.ts';

export interface KeyRangeTask { taskId: number; dbUrl: string; dbKey: Uint8Array; table: KeyTable; range: KeyBlockRange; batchSize?: number; maxFailuresListed: number }
export type KeyRangeReply = { ready: true } | { taskId: number; result: KeyRangeResult } | { taskId: number; error: string };

const port = parentPort;
if (!port) throw new Error('lib/c2-db/key-store-worker.ts runs only as a worker thread (see key-store-parallel.ts)');

port.on('message', (t: KeyRangeTask) => {
  const dbKey = t.dbKey;
  withPgClient(t.dbUrl, (c) => checkSealedKeyRange(c, t.table, (sealed) => openDbValue(dbKey, sealed), {
    openBatch: (sealed) => openDbValuesBatch(dbKey, sealed), checkPacked: (packed, n) => checkPackedDbKeys(dbKey, packed, n), batchSize: t.batchSize, maxFailuresListed: t.maxFailuresListed, range: t.range,
  }))
    .then((result) => port.postMessage({ taskId: t.taskId, result } satisfies KeyRangeReply))
    .catch((e) => port.postMessage({ taskId: t.taskId, error: (e as Error)?.message ?? String(e) } satisfies KeyRangeReply))
    .finally(() => dbKey.fill(0));
});
port.postMessage({ ready: true } satisfies KeyRangeReply);
