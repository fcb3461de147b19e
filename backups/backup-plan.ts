// `e4ops backup --dry-run`: what a run would dump, where to, for whom, and what stands in the way
// (a target that is missing, unmounted or leased; a passphrase that opens nothing), without writing
// anything: the database is read in a read-only snapshot, targets are only looked at.
import { readC2Inventory, type C2Inventory } from '../lib/c2-db/inventory.ts';
import { checkPassphrase } from './passphrase-fingerprint.ts';
import { preflight, type BackupOptions } from './create-backup.ts';
import { openSourceSnapshot } from './backup-snapshot.ts';
import { LEASE_FILE, describeLease, type LeaseRecord } from './target-lease.ts';
import { createLogger } from '../lib/log.ts';

export interface BackupPlan {
  database: string;
  serverVersion: string;
  inventory: C2Inventory;
  objects: string[];
  recipients: string[];
  passphrase: { file: string; opened: number; sampled: number } | null;
  targets: { target: string; readiness: string; leasedBy?: string; problem?: string }[];
  retention?: BackupOptions['retention'];
  /** Things that would make the real run fail. */
  problems: string[];
}

export async function planBackup(opts: BackupOptions): Promise<BackupPlan> {
  const log = opts.log ?? createLogger({ component: 'backup' });
  const pre = preflight(opts);
  const problems: string[] = [];
  const targets: BackupPlan['targets'] = [];
  for (const t of pre.targets) {
    const row: BackupPlan['targets'][number] = { target: t.spec, readiness: 'unknown' };
    try {
      const r = await t.ensureReady({ create: opts.createTarget ?? true, fstab: opts.fstab, dryRun: true });
      row.readiness = r === 'ready' ? 'ready' : r === 'created' ? 'would be created' : 'would be marked as a target';
      const lease = await t.readRootText(LEASE_FILE);
      if (lease) { row.leasedBy = describeLease(JSON.parse(lease) as LeaseRecord); problems.push(`${t.spec} is leased by ${row.leasedBy}`); }
    } catch (e) {
      row.readiness = 'refused';
      row.problem = (e as Error).message;
      problems.push(row.problem);
    }
    targets.push(row);
  }
  const snap = await openSourceSnapshot({ databaseUrl: opts.databaseUrl, dbSchema: opts.dbSchema, lockWaitTimeoutSeconds: opts.lockWaitTimeoutSeconds, pgDumpVersion: pre.dumpVersion, log });
  try {
    const inventory = await snap.inventory.catch(() => readC2Inventory(snap.db));
    let passphrase: BackupPlan['passphrase'] = null;
    if (pre.passphrase) {
      const r = await checkPassphrase(pre.passphrase.text, snap.sampleKeys);
      passphrase = { file: pre.passphrase.file, opened: r.opened, sampled: r.sampled };
      if (r.sampled && !r.opened) problems.push(`--passphrase-file ${pre.passphrase.file} opens none of the ${r.sampled} sampled keys`);
    }
    const objects = [pre.compression === 'zstd' ? 'postgres.pgdump.zst.age' : 'postgres.pgdump.age',
      ...(opts.configsDir ? ['c2-configs.tar.zst.age'] : []), ...(opts.renderedConfigsDir ? ['rendered-configs.tar.zst.age'] : []),
      ...(opts.extraFiles?.length ? ['extra-files.tar.zst.age'] : []), ...(opts.pulumiStackExport ? ['pulumi-stack.json.zst.age'] : []),
      ...(opts.elasticsearch ? [`Elasticsearch snapshot in repository ${opts.elasticsearch.repository}`] : [])];
    return { database: pre.conn.display, serverVersion: snap.serverVersion, inventory, objects, recipients: pre.recipients.keys, passphrase, targets, retention: opts.retention, problems };
  } finally {
    await snap.close();
  }
}
