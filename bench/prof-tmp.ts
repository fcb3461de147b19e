// profiling: seed once, time the drill's checks in variants
import { startThrowawayPostgres } from '../lib/servers/postgres.ts';
import { seedC2Database } from '../lib/c2-db/seed-database.ts';
import * as keystore from '../lib/e4/keystore.ts';
import { verifyKeyStoreInParallel, warmKeyCheckWorkers } from '../lib/c2-db/key-store-parallel.ts';
import { withPgClient } from '../lib/pg/pg-client.ts';
import { checkInventoryCounts, countLinksMissingTopic, checkOrphanLinks, checkRestoredSchema } from '../backups/drill/restored-database-checks.ts';
import { createDrillRun } from '../backups/drill/drill-run.ts';
import { prepareRestoredDatabaseVerification, checkRestoredDatabase } from '../backups/drill/restored-database-verification.ts';
import { createMemoryLogger } from '../lib/log.ts';
import os from 'node:os';
const N = { clients: Number(process.env.BENCH_CLIENTS ?? 1_000_000), topics: Number(process.env.BENCH_TOPICS ?? 100_000), links: Number(process.env.BENCH_LINKS ?? 5_000_000) };
const PASS = 'bench passphrase for the c2 database';
const pgs = await startThrowawayPostgres({ settings: { shared_buffers: '256MB', max_wal_size: '4GB' } });
const url = await pgs.createDatabase('e4');
const dbKey = keystore.deriveDbKey(PASS);
await seedC2Database(url, { ...N, sealBatch: (p) => keystore.sealDbValuesBatch(dbKey, p) });
pgs.psql('VACUUM (FREEZE, ANALYZE)', 'e4');
console.log('seeded');
const t = async (name: string, f: () => Promise<unknown>) => { const t0 = Date.now(); await f(); const s = (Date.now() - t0) / 1000; console.log(name, s.toFixed(2), 'load', os.loadavg()[0].toFixed(1)); return s; };
warmKeyCheckWorkers(); await new Promise((r) => setTimeout(r, 2000));
const key = { dbKey, fingerprint: keystore.dbKeyFingerprint(dbKey) };
const rounds = Number(process.env.ROUNDS ?? 3);
for (let i = 0; i < rounds; i++) {
  await t('keys w1', () => verifyKeyStoreInParallel(url, dbKey, { workers: 1 }));
  await t('keys w2', () => verifyKeyStoreInParallel(url, dbKey, { workers: 2 }));
  await t('counts', () => withPgClient(url, (c) => checkInventoryCounts(c, undefined)));
  await t('antijoin', () => withPgClient(url, (c) => countLinksMissingTopic(c)));
  await t('orphans(client side)', () => withPgClient(url, (c) => checkOrphanLinks(c, { missingTopic: 0 })));
  await t('schema', () => withPgClient(url, (c) => checkRestoredSchema(c, url)));
  await t('ALL (checkRestoredDatabase)', async () => {
    const run = createDrillRun({ logger: createMemoryLogger('p') });
    const expect = { sourceRecordsCounts: false, sourceRecordsFingerprint: false };
    const v = prepareRestoredDatabaseVerification(run, url, key, expect);
    await checkRestoredDatabase(run, v, key, expect);
    if (process.env.VERBOSE) console.log(JSON.stringify(run.timings));
  });
}
await pgs.stop();
process.exit(0);
