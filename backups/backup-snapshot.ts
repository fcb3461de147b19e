// The source side of a backup run: one REPEATABLE READ snapshot of C2's database, exported so pg_dump
// dumps exactly what the inventory counts and the passphrase check read. Waits are bounded: a session
// holding a conflicting lock makes our queries and pg_dump give up after --lock-wait-timeout with a
// timedOut error (exit 12) naming what they waited for, instead of hanging the run silently.
import { spawnSync } from 'node:child_process';
import pg from 'pg';
import { redactUrl, type Logger } from '../lib/log.ts';
import { C2SchemaMissingError, readC2Inventory, type C2Inventory } from '../lib/c2-db/inventory.ts';
import { C2_TABLES } from '../lib/c2/db-schema.ts';
import { BackupError } from './exit-codes.ts';
import type { PipelineStage } from './encrypted-object.ts';
import { createPgClient } from '../lib/pg/pg-client.ts';

export const DEFAULT_LOCK_WAIT_TIMEOUT_SECONDS = 300;
/** Sealed keys opened with the passphrase before its fingerprint is recorded. */
export const PASSPHRASE_SAMPLE_KEYS = 16;

/** Split a database URL into a password-free URL (for argv) and libpq env (PGPASSWORD). */
export function pgDumpConnection(databaseUrl: string): { url: string; env: NodeJS.ProcessEnv; display: string; database: string; host: string } {
  let u: URL;
  try { u = new URL(databaseUrl); } catch {
    throw new BackupError('config', '--database-url is not a URL: use postgres://USER@HOST:5432/DATABASE (the password in PGPASSFILE / ~/.pgpass or PGPASSWORD)');
  }
  if (!/^postgres(ql)?:$/.test(u.protocol)) throw new BackupError('config', `--database-url must start with postgres:// (got ${u.protocol})`);
  const password = decodeURIComponent(u.password);
  u.password = '';
  const env: NodeJS.ProcessEnv = { ...process.env };
  if (password) env.PGPASSWORD = password;
  return { url: u.toString(), env, display: redactUrl(databaseUrl), database: decodeURIComponent(u.pathname.replace(/^\//, '')) || 'postgres', host: u.hostname };
}

export function pgDumpVersion(): string {
  const r = spawnSync('pg_dump', ['--version'], { encoding: 'utf8' });
  if (r.status !== 0) throw new BackupError('config', 'pg_dump not found: apt-get install postgresql-client (same major version as the server or newer)');
  return r.stdout.trim();
}

export interface SourceSnapshot {
  db: pg.Client;
  snapshot: string;
  serverVersion: string;
  serverVersionNum: number;
  /** Settles after the dump (it runs alongside it in the same snapshot). */
  inventory: Promise<C2Inventory>;
  /** A few sealed `key` values (clients and topics) for the passphrase check. */
  sampleKeys: Buffer[];
  close(): Promise<void>;
}

export interface SnapshotOptions {
  databaseUrl: string;
  dbSchema?: string;
  lockWaitTimeoutSeconds?: number;
  pgDumpVersion: string;
  log: Logger;
}

/** A lock-timeout error from PostgreSQL or pg_dump, as the operator should read it. */
export function lockWaitError(what: string, seconds: number, detail: string): BackupError {
  return new BackupError('timedOut', `${what} waited more than ${seconds} s (--lock-wait-timeout) for a table lock: another session holds a conflicting lock `
    + `(an ALTER TABLE, LOCK TABLE or VACUUM FULL; see pg_locks / pg_stat_activity): ${detail}. Nothing was stored; re-run when it is released`);
}

export const isLockTimeout = (text: string) => /lock timeout|could not obtain lock/i.test(text);

/** Connect, open and export the snapshot, check pg_dump can dump this server, start counting rows. */
export async function openSourceSnapshot(o: SnapshotOptions): Promise<SourceSnapshot> {
  const display = redactUrl(o.databaseUrl);
  const lockWait = o.lockWaitTimeoutSeconds ?? DEFAULT_LOCK_WAIT_TIMEOUT_SECONDS;
  const db = createPgClient({ connectionString: o.databaseUrl, connectionTimeoutMillis: 15_000, application_name: 'e4ops-backup' },
    (e) => o.log.warn('database_connection_error', { error: e.message }));
  const close = () => db.end().catch(() => undefined);
  try { await db.connect(); } catch (e) {
    await close();
    throw new BackupError('sourceUnreachable', `cannot connect to the database ${display}: ${(e as Error).message}; check --database-url and that PostgreSQL is up`);
  }
  try {
    await db.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await db.query(`SET LOCAL lock_timeout = ${Math.round(lockWait * 1000)}`);
    if (o.dbSchema) await db.query(`SET LOCAL search_path TO ${pg.escapeIdentifier(o.dbSchema)}`);
    const info = (await db.query<{ snap: string; v: string; n: number }>(
      `SELECT pg_export_snapshot() AS snap, current_setting('server_version') AS v, current_setting('server_version_num')::int AS n`)).rows[0];
    const dumpMajor = Number(/(\d+)(\.\d+)?/.exec(o.pgDumpVersion.replace(/^\D+/, ''))?.[1] ?? 0);
    if (dumpMajor && Math.floor(info.n / 10000) > dumpMajor) {
      throw new BackupError('config', `pg_dump ${dumpMajor} cannot dump PostgreSQL ${info.v}: install postgresql-client-${Math.floor(info.n / 10000)} (pg_dump must be the server's major version or newer)`);
    }
    const sampleKeys = await readSampleKeys(db, display, lockWait);
    const inventory = readC2Inventory(db).catch((e) => {
      if (e instanceof C2SchemaMissingError) throw new BackupError('config', `database ${display}: ${e.message}`);
      if (isLockTimeout((e as Error).message)) throw lockWaitError(`counting C2 rows in ${display}`, lockWait, (e as Error).message);
      throw new BackupError('sourceUnreachable', `database ${display}: counting C2 rows failed: ${(e as Error).message}`);
    });
    inventory.catch(() => undefined);
    return { db, snapshot: info.snap, serverVersion: info.v, serverVersionNum: info.n, inventory, sampleKeys, close };
  } catch (e) {
    await close();
    throw e;
  }
}

async function readSampleKeys(db: pg.Client, display: string, lockWait: number): Promise<Buffer[]> {
  const q = (table: string) => `(SELECT key FROM ${pg.escapeIdentifier(table)} WHERE key IS NOT NULL ORDER BY id LIMIT ${PASSPHRASE_SAMPLE_KEYS / 2})`;
  try {
    await db.query('SAVEPOINT sample_keys');
    const r = await db.query<{ key: Buffer }>(`${q(C2_TABLES.clients)} UNION ALL ${q(C2_TABLES.topics)}`);
    await db.query('RELEASE SAVEPOINT sample_keys');
    return r.rows.map((x) => x.key);
  } catch (e) {
    const msg = (e as Error).message;
    if (isLockTimeout(msg)) throw lockWaitError(`reading C2's keys in ${display}`, lockWait, msg);
    // A database without C2's tables is reported by the inventory with its own message.
    await db.query('ROLLBACK TO SAVEPOINT sample_keys').catch(() => undefined);
    return [];
  }
}

/** pg_dump of the snapshot: custom format, no password on argv, bounded lock waits. */
export function pgDumpStage(conn: ReturnType<typeof pgDumpConnection>, snapshot: string, o: { lockWaitTimeoutSeconds?: number; zstdAfter: boolean }): PipelineStage {
  const lockWaitMs = Math.round((o.lockWaitTimeoutSeconds ?? DEFAULT_LOCK_WAIT_TIMEOUT_SECONDS) * 1000);
  return {
    cmd: 'pg_dump',
    args: ['--format=custom', `--snapshot=${snapshot}`, '--no-password', `--lock-wait-timeout=${lockWaitMs}`, `--dbname=${conn.url}`, ...(o.zstdAfter ? ['--compress=0'] : [])],
    env: conn.env, errorKind: 'sourceUnreachable', what: `pg_dump of ${conn.display}`,
  };
}
