// The production database side of a restore: names (<db>_restore_<stamp>, <db>_before_<stamp>), the
// maintenance connection (same server, database `postgres`), the restore database created owned by
// C2's role, the swap by rename in one transaction (the production name is never free), ownership
// checks, and dropping the kept database on --finalize.
import type pg from 'pg';
import { OpsError } from '../../lib/cli/exit-codes.ts';
import { UsageError } from '../../lib/cli/flags.ts';
import { redactUrl } from '../../lib/log.ts';
import type { DrillCheck } from '../drill/restored-database-checks.ts';
import { createPgClient } from '../../lib/pg/pg-client.ts';

export interface DatabaseNames { database: string; restore: string; kept: string }

const MAX_IDENTIFIER_BYTES = 63;

/** A restore stamp from the start time: 20261202_201530 (sorts, and reads at 3 a.m.). */
export function restoreStamp(at: Date): string {
  return at.toISOString().replace(/[-:]/g, '').replace('T', '_').slice(0, 15);
}

export function restoreDatabaseNames(database: string, stamp: string): DatabaseNames {
  const names = { database, restore: `${database}_restore_${stamp}`, kept: `${database}_before_${stamp}` };
  for (const n of [names.restore, names.kept]) {
    if (Buffer.byteLength(n) > MAX_IDENTIFIER_BYTES) throw new UsageError(`database name ${database} is too long for the restore's names (${n} exceeds PostgreSQL's ${MAX_IDENTIFIER_BYTES} bytes)`);
  }
  return names;
}

export const quoteIdent = (name: string) => `"${name.replace(/"/g, '""')}"`;

/** The production URL split: its database name, and the same server's maintenance database URL. */
export function productionDatabaseOf(url: string): { database: string; user: string; maintenanceUrl: string; urlFor(db: string): string } {
  let u: URL;
  try { u = new URL(url); } catch { throw new UsageError('--database-url is not a URL: use postgres://USER:PASSWORD@HOST:5432/DATABASE'); }
  if (!/^postgres(ql)?:$/.test(u.protocol)) throw new UsageError(`--database-url must start with postgres:// (got ${u.protocol})`);
  const database = decodeURIComponent(u.pathname.replace(/^\//, ''));
  if (!database || database === 'postgres') throw new UsageError(`--database-url ${redactUrl(url)} must name C2's database (postgres://.../e4), not the maintenance database`);
  const urlFor = (db: string) => { const x = new URL(u.toString()); x.pathname = `/${encodeURIComponent(db)}`; return x.toString(); };
  return { database, user: decodeURIComponent(u.username) || 'postgres', maintenanceUrl: urlFor('postgres'), urlFor };
}

export async function withDatabase<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = createPgClient(url);
  try { await c.connect(); } catch (e) {
    throw new OpsError('sourceUnreachable', `cannot connect to ${redactUrl(url)}: ${(e as Error).message}`);
  }
  try { return await fn(c); } finally { await c.end().catch(() => undefined); }
}

export async function databaseOid(admin: pg.ClientBase, name: string): Promise<number | undefined> {
  const r = await admin.query<{ oid: number }>('SELECT oid::int AS oid FROM pg_database WHERE datname = $1', [name]);
  return r.rows[0]?.oid;
}

/** What the connecting role may do, and who owns the production database now (C2's role, unless told). */
export async function inspectServer(admin: pg.ClientBase, database: string): Promise<{ superuser: boolean; createdb: boolean; productionOwner?: string; serverVersion: string; dataDirectory?: string }> {
  const me = (await admin.query<{ rolsuper: boolean; rolcreatedb: boolean }>('SELECT rolsuper, rolcreatedb FROM pg_roles WHERE rolname = current_user')).rows[0];
  const owner = (await admin.query<{ owner: string }>('SELECT pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname = $1', [database])).rows[0]?.owner;
  const version = (await admin.query<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0].v;
  const dataDirectory = me.rolsuper ? (await admin.query<{ d: string }>("SELECT current_setting('data_directory') AS d")).rows[0].d : undefined;
  return { superuser: me.rolsuper, createdb: me.rolcreatedb, productionOwner: owner, serverVersion: version, dataDirectory };
}

export async function assertCanRestoreAs(admin: pg.ClientBase, role: string): Promise<void> {
  const r = await admin.query<{ exists: boolean; member: boolean | null }>(
    `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1) AS exists,
            CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1) THEN pg_has_role(current_user, $1, 'MEMBER') END AS member`, [role]);
  if (!r.rows[0].exists) throw new UsageError(`C2's role ${role} does not exist on the server: create it (CREATE ROLE ${role} LOGIN PASSWORD ...) or give --c2-role`);
  if (!r.rows[0].member) throw new OpsError('refused', `the --database-url user is not a member of C2's role ${role}: restored objects could not be owned by it; connect as a superuser (postgres)`);
}

/** A fresh, empty restore database owned by C2's role; a half-filled one from a killed run is dropped first. */
export async function createRestoreDatabase(admin: pg.ClientBase, names: DatabaseNames, role: string): Promise<number> {
  await admin.query(`DROP DATABASE IF EXISTS ${quoteIdent(names.restore)} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${quoteIdent(names.restore)} OWNER ${quoteIdent(role)} TEMPLATE template0 ENCODING 'UTF8'`);
  return (await databaseOid(admin, names.restore))!;
}

/**
 * Swap the checked restore in: production → kept, restore → production, in ONE transaction, so a
 * database answers to the production name before and after (or none did before, after a drop).
 * Re-entered after a kill, it sees which renames already committed and does only what is left.
 */
export async function swapRestoredDatabaseIn(admin: pg.ClientBase, names: DatabaseNames): Promise<{ keptDatabase: string | null; terminatedSessions: number; alreadySwapped: boolean }> {
  const prod = await databaseOid(admin, names.database);
  const restore = await databaseOid(admin, names.restore);
  const kept = await databaseOid(admin, names.kept);
  if (restore === undefined) {
    if (prod === undefined) throw new OpsError('incomplete', `neither ${names.restore} nor ${names.database} exists: the restored database is gone; re-run the restore from a new --state-dir`);
    return { keptDatabase: kept === undefined ? null : names.kept, terminatedSessions: 0, alreadySwapped: true };
  }
  if (kept !== undefined && prod !== undefined) throw new OpsError('refused', `both ${names.database} and ${names.kept} exist next to ${names.restore}: rename one by hand before swapping`);
  // C2 is stopped; anything still connected (psql, an exporter) would block the rename.
  const t = await admin.query<{ n: number }>(
    `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE datname = ANY($1) AND pid <> pg_backend_pid()`, [[names.database, names.restore]]);
  await admin.query('BEGIN');
  try {
    if (prod !== undefined) await admin.query(`ALTER DATABASE ${quoteIdent(names.database)} RENAME TO ${quoteIdent(names.kept)}`);
    await admin.query(`ALTER DATABASE ${quoteIdent(names.restore)} RENAME TO ${quoteIdent(names.database)}`);
    await admin.query('COMMIT');
  } catch (e) {
    await admin.query('ROLLBACK').catch(() => undefined);
    throw new OpsError('internal', `swapping ${names.restore} in as ${names.database} failed (nothing was renamed): ${(e as Error).message}`);
  }
  return { keptDatabase: prod !== undefined ? names.kept : (kept !== undefined ? names.kept : null), terminatedSessions: t.rows[0].n, alreadySwapped: false };
}

/** The SQL that puts the kept database back (the runbook's rollback), for the report. */
export function swapBackSql(names: DatabaseNames, kept: string | null): string {
  if (!kept) return `-- no database was kept (${names.database} did not exist when the restore swapped in)`;
  return `ALTER DATABASE ${quoteIdent(names.database)} RENAME TO ${quoteIdent(`${names.database}_failed_restore`)}; ALTER DATABASE ${quoteIdent(kept)} RENAME TO ${quoteIdent(names.database)};`;
}

/** Every table, sequence and view of C2's schema belongs to C2's role, whoever took the dump. */
export async function checkObjectOwners(client: pg.ClientBase, role: string): Promise<DrillCheck> {
  const r = await client.query<{ name: string; owner: string }>(
    `SELECT c.relname AS name, pg_get_userbyid(c.relowner) AS owner FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'S', 'v', 'm', 'p') AND n.nspname = ANY(current_schemas(false)) AND pg_get_userbyid(c.relowner) <> $1 ORDER BY 1`, [role]);
  const tables = (await client.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname = ANY(current_schemas(false))`)).rows[0].n;
  return r.rows.length
    ? { name: 'owners', ok: false, detail: `${r.rows.length} object(s) are not owned by C2's role ${role}: ${r.rows.slice(0, 10).map((x) => `${x.name} (${x.owner})`).join(', ')}` }
    : { name: 'owners', ok: true, detail: `all ${tables} tables and their sequences belong to C2's role ${role}` };
}

/** --finalize: drop the database kept since the swap. */
export async function dropKeptDatabase(admin: pg.ClientBase, kept: string): Promise<boolean> {
  const had = (await databaseOid(admin, kept)) !== undefined;
  if (had) await admin.query(`DROP DATABASE ${quoteIdent(kept)} WITH (FORCE)`);
  return had;
}
