// The pgBackRest source: the whole PostgreSQL cluster comes back from the stanza's repository, to a
// point in time (--target-time) or to the end of the archived WAL (latest). The old data directory
// is moved aside (<dir>.before-<stamp>), or, with --delta only, restored in place. pgBackRest itself
// runs through lib/pgbackrest (as the data directory's owner, its own error code and name kept). Unlike the
// PITR drill's restore (backups/pitr/pitr-restore.ts, archive-mode=off for a scratch copy), production keeps
// archiving after the recovery, so the restore arguments here leave archive_mode alone.
import fs from 'node:fs';
import path from 'node:path';
import { OpsError } from '../../lib/cli/exit-codes.ts';
import { chownTo } from '../../lib/servers/daemon.ts';
import { runPgBackRest, type PgBackRestTarget } from '../../lib/pgbackrest/pgbackrest-command.ts';
import { asPgBackRestOpsError, readStanzaInfo } from '../pitr/pitr-repository.ts';
import { createPgClient } from '../../lib/pg/pg-client.ts';

export interface PgBackRestBackup { label: string; type: string; startedAt: string; stoppedAt: string; sizeBytes: number }

/** The stanza's backups, oldest first: backups/pitr's reading of `pgbackrest info` (errors as exit 14, with hints). */
export async function readPgBackRestBackups(t: PgBackRestTarget): Promise<PgBackRestBackup[]> {
  const info = await readStanzaInfo(t);
  return info.sets.map((x) => ({ label: x.label, type: x.type, startedAt: x.startedAt, stoppedAt: x.stoppedAt, sizeBytes: x.databaseBytes }));
}

/** The backup pgBackRest will restore from: the newest one, or the newest that ended before the target time. */
export function chooseBackup(backups: PgBackRestBackup[], targetTime: string): PgBackRestBackup {
  const usable = targetTime === 'latest' ? backups : backups.filter((b) => Date.parse(b.stoppedAt) <= Date.parse(targetTime));
  const b = usable.at(-1);
  if (!b) throw new OpsError('refused', targetTime === 'latest' ? 'the pgBackRest stanza holds no backup' : `no pgBackRest backup ended before --target-time ${targetTime} (oldest ends ${backups[0]?.stoppedAt ?? 'never'})`);
  return b;
}

/** pgBackRest wants "YYYY-MM-DD HH:MM:SS[.mmm]+00", not ISO 8601's T and Z. */
export function pgBackRestTime(iso: string): string {
  return new Date(iso).toISOString().replace('T', ' ').replace('Z', '+00');
}

export interface DataDirectoryRestore { dataDir: string; keptDataDir: string; targetTime: string; delta: boolean }

/**
 * Move the old data directory aside (a kill after the move leaves a partial new one: it is emptied and
 * restored again), then `pgbackrest restore` into the empty directory, recovering to the target and
 * promoting. With --delta the directory is restored in place and nothing is kept.
 */
export async function restoreDataDirectory(t: PgBackRestTarget, r: DataDirectoryRestore): Promise<{ keptDataDir: string | null; seconds: number }> {
  const t0 = Date.now();
  let kept: string | null = fs.existsSync(r.keptDataDir) ? r.keptDataDir : null;
  if (!r.delta) {
    if (fs.existsSync(r.dataDir) && !kept) { fs.renameSync(r.dataDir, r.keptDataDir); kept = r.keptDataDir; }
    fs.rmSync(r.dataDir, { recursive: true, force: true }); // a partial restore of a killed run
    fs.mkdirSync(r.dataDir, { mode: 0o700 });
    chownTo(r.dataDir, 'postgres');
  }
  const target = r.targetTime === 'latest' ? ['--type=default'] : ['--type=time', `--target=${pgBackRestTime(r.targetTime)}`, '--target-action=promote'];
  await runPgBackRest(t, 'restore', [`--pg1-path=${r.dataDir}`, ...(r.delta ? ['--delta'] : []), ...target]).catch((e) => { throw asPgBackRestOpsError(e); });
  return { keptDataDir: kept, seconds: (Date.now() - t0) / 1000 };
}

/** After the start commands: wait until the cluster accepts connections and recovery has ended (promoted). */
export async function waitForRecoveredPostgres(url: string, timeoutMs: number): Promise<{ restoredPointAt?: string; seconds: number }> {
  const t0 = Date.now();
  let last = 'no answer yet';
  while (Date.now() - t0 < timeoutMs) {
    const c = createPgClient(url);
    try {
      await c.connect();
      const r = await c.query<{ recovering: boolean; replayed: Date | null }>('SELECT pg_is_in_recovery() AS recovering, pg_last_xact_replay_timestamp() AS replayed');
      if (!r.rows[0].recovering) return { ...(r.rows[0].replayed ? { restoredPointAt: r.rows[0].replayed.toISOString() } : {}), seconds: (Date.now() - t0) / 1000 };
      last = 'still recovering';
    } catch (e) { last = (e as Error).message; } finally { await c.end().catch(() => undefined); }
    await new Promise((res) => setTimeout(res, 250));
  }
  throw new OpsError('timedOut', `PostgreSQL did not finish recovery within ${Math.round(timeoutMs / 1000)} s (${last}); see its log`);
}

/** After the stop commands: PostgreSQL must be down, or pgBackRest refuses to restore over it. */
export async function assertPostgresStopped(url: string): Promise<void> {
  const c = createPgClient({ connectionString: url, connectionTimeoutMillis: 3000 });
  const answers = await c.connect().then(() => true, () => false);
  await c.end().catch(() => undefined);
  if (answers) throw new OpsError('refused', 'PostgreSQL still accepts connections after the --postgres-stop-command: stop it before restoring its data directory');
}

export const keptDataDirOf = (dataDir: string, stamp: string) => `${path.resolve(dataDir)}.before-${stamp}`;
