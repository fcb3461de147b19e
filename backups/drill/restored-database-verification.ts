// The checks on a restored C2 database, shared by the logical drill, the PITR drill and a production
// restore: C2's schema, every sealed key opening with the passphrase, inventory counts, orphan links and
// (when the restore brought them) C2's configs. The read-only half may start while the restore still
// builds indexes (READ_ONLY_CHECKS_MAY_START); the rest runs once the restore is done.
import fs from 'node:fs';
import { deriveDbKey, dbKeyFingerprint } from '../../lib/e4/keystore.ts';
import type { KeyStoreReport } from '../../lib/c2-db/key-store.ts';
import { verifyKeyStoreInParallel } from '../../lib/c2-db/key-store-parallel.ts';
import {
  checkOrphanLinks, countLinksAndMissingTopic, inventoryCountsCheck, checkRestoredSchema, sealedKeyChecks, type DrillCheck, type ManifestCounts,
} from './restored-database-checks.ts';
import { C2_TABLES } from '../../lib/c2/db-schema.ts';
import { checkRestoredConfigs } from './restored-config-checks.ts';
import { failCheck, lap, type DrillRun } from './drill-run.ts';
import { withPgClient } from '../../lib/pg/pg-client.ts';

/** The C2 database key derived from the passphrase (Argon2i, once) and its fingerprint. */
export interface DrillKey { dbKey: Buffer; fingerprint: string }

/** Derive the key; a passphrase that cannot be used is a failed passphrase-fingerprint check (undefined). */
export function deriveDrillKey(run: DrillRun, passphrase: string, passphraseFile: string): DrillKey | undefined {
  const since = Date.now();
  let dbKey: Buffer;
  try { dbKey = deriveDbKey(passphrase); } catch (e) {
    failCheck(run, 'passphrase-fingerprint', new Error(`--passphrase-file ${passphraseFile}: ${(e as Error).message}`));
    return undefined;
  }
  const fingerprint = dbKeyFingerprint(dbKey);
  lap(run, 'deriveKey', since);
  return { dbKey, fingerprint };
}

/** What the restored database is compared with. */
export interface VerificationExpectations {
  /** Counts the backup recorded; undefined when the source records none (pgBackRest): then they are reported, not compared. */
  counts?: ManifestCounts;
  /** The passphrase fingerprint the backup recorded; undefined when the source records none (then every key opening proves it). */
  passphraseFingerprint?: string;
  /** Whether the source records a fingerprint at all: a logical set must (its absence fails), pgBackRest never does. */
  sourceRecordsFingerprint: boolean;
  sourceRecordsCounts: boolean;
  /**
   * Leave the orphan-link count (reported, never fatal) to the caller, after this check: a pgBackRest
   * production restore counts them once C2 serves, so the anti-join over every link is not on its RTO path.
   */
  orphanLinksLater?: boolean;
}

interface RestoredInventory { check: DrillCheck; counts: ManifestCounts }
type ReadOnlyResults = [KeyStoreReport, RestoredInventory, number];

export interface RestoredDatabaseVerification {
  /**
   * Start the read-only checks (at most once; safe to call again). `besideRestore`: pg_restore is still
   * building indexes, which is what the RTO waits for; the key check then runs on one thread (no workers),
   * leaving the other cores to the restore.
   */
  startReadOnlyChecks(o?: { besideRestore?: boolean }): Promise<ReadOnlyResults>;
  /** Let started checks end (a failed restore must not tear the database down under them). */
  settle(): Promise<void>;
  dbUrl: string;
}

/** Prepare the checks on dbUrl; nothing runs until startReadOnlyChecks or checkRestoredDatabase. */
export function prepareRestoredDatabaseVerification(run: DrillRun, dbUrl: string, key: DrillKey, expect: VerificationExpectations): RestoredDatabaseVerification {
  let readOnly: Promise<ReadOnlyResults> | undefined;
  return {
    dbUrl,
    startReadOnlyChecks(o = {}) {
      if (readOnly) return readOnly;
      run.timings.readOnlyChecksStartedAt = (Date.now() - run.t0) / 1000;
      // One pass over each table: the key check reads every client and topic row (its tally is their count),
      // and one scan of the links counts them and those whose topic is gone (unless that comes later).
      readOnly = Promise.all([
        // Every key, in block ranges over worker threads, each range read with its own binary COPY.
        verifyKeyStoreInParallel(dbUrl, key.dbKey, o.besideRestore ? { workers: 1 } : {}),
        withPgClient(dbUrl, (c) => expect.orphanLinksLater
          ? c.query<{ n: string }>(`SELECT count(*) AS n FROM ${C2_TABLES.topicLinks}`).then((r) => ({ links: +r.rows[0].n, missingTopic: -1 }))
          : countLinksAndMissingTopic(c)),
      ]).then(([keys, links]): ReadOnlyResults => {
        const counts = { clients: keys.clients.total, topics: keys.topics.total, links: links.links };
        return [keys, { counts, check: inventoryCountsCheck(counts, expect.counts) }, links.missingTopic];
      });
      readOnly.catch(() => undefined); // awaited (and reported) after the restore
      return readOnly;
    },
    async settle() { await readOnly?.catch(() => undefined); },
  };
}

/** The count check of a source that records no counts: the restored counts, readable, reported. */
function reportedCounts(inv: RestoredInventory): DrillCheck {
  const i = inv.counts;
  return { name: 'inventory-counts', ok: true, detail: `${i.clients} clients, ${i.topics} topics, ${i.links} links restored (the source records no counts to compare with)` };
}

/** The key checks of a source that records no fingerprint: keys-decrypt alone proves the passphrase. */
function keyChecksWithoutFingerprint(report: KeyStoreReport, ours: string): DrillCheck[] {
  return sealedKeyChecks(report, { ours, manifest: ours }).filter((c) => c.name !== 'passphrase-fingerprint');
}

/**
 * Run the checks after the restore (schema beside the read-only checks, then orphans and configs);
 * records them on the run and returns the restored counts. `onSchemaChecked` hears the schema check as
 * soon as it is done (a pgBackRest restore starts C2 then, while the keys are still being checked).
 */
export async function checkRestoredDatabase(run: DrillRun, v: RestoredDatabaseVerification, key: DrillKey, expect: VerificationExpectations, configsDir?: string, onSchemaChecked?: (schema: DrillCheck) => void): Promise<DrillReportCounts> {
  const since = Date.now();
  const schemaChecked = withPgClient(v.dbUrl, (c) => checkRestoredSchema(c, v.dbUrl)).then((c) => { onSchemaChecked?.(c); return c; });
  const [schema, [keyReport, inv, missingTopic]] = await Promise.all([schemaChecked, v.startReadOnlyChecks()]);
  // The client side of the orphan links after the restore: by then C2's foreign key on client_id is
  // validated and nothing is left to count (before, it would repeat the validation PostgreSQL was doing).
  const orphans = expect.orphanLinksLater ? undefined : await withPgClient(v.dbUrl, (c) => checkOrphanLinks(c, { missingTopic }));
  const keyChecks = expect.sourceRecordsFingerprint
    ? sealedKeyChecks(keyReport, { ours: key.fingerprint, manifest: expect.passphraseFingerprint })
    : keyChecksWithoutFingerprint(keyReport, key.fingerprint);
  run.checks.push(schema, expect.sourceRecordsCounts ? inv.check : reportedCounts(inv), ...keyChecks, ...(orphans ? [orphans.check] : []));
  const total = keyReport.clients.total + keyReport.topics.total;
  run.extra.keysPerSecond = keyReport.seconds > 0 ? total / keyReport.seconds : 0;
  run.timings.verifyKeys = keyReport.seconds;
  if (orphans) run.extra.orphanLinks = { missingTopic: orphans.orphans.missingTopic, missingClient: orphans.orphans.missingClient };
  checkConfigs(run, configsDir);
  lap(run, 'checks', since);
  return { ...inv.counts };
}

export interface DrillReportCounts { clients: number; topics: number; links: number }

function checkConfigs(run: DrillRun, configsDir: string | undefined): void {
  if (configsDir && fs.existsSync(configsDir)) {
    const cfg = checkRestoredConfigs(configsDir, { now: run.now() });
    run.checks.push(...cfg.checks);
    run.extra.certificates = cfg.certificates;
  } else {
    run.checks.push({ name: 'configs-parse', ok: true, detail: configsDir ? 'the set holds no C2 configs object (backup ran without --configs-dir)' : 'a database-only restore brings no C2 configs (they are in the logical sets)' });
  }
}
