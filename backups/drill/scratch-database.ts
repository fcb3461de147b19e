// The database a logical drill restores into: a scratch PostgreSQL the drill starts (registered for
// teardown), or an operator-given scratch URL that is provably not production and empty.
import path from 'node:path';
import { redactUrl } from '../../lib/log.ts';
import { pickLoopbackHostFor5432 } from '../../lib/servers/c2.ts';
import { startThrowawayPostgres } from '../../lib/servers/postgres.ts';
import { killTreeSync } from '../../lib/process-tree.ts';
import { BackupError } from '../exit-codes.ts';
import { assertScratchIsNotProduction, pgTargetOf } from './scratch-database-guard.ts';
import { startScratchPostgres } from './scratch-postgres.ts';
import { removeDirSync, type ScratchResources } from './scratch-resources.ts';
import { withPgClient } from '../../lib/pg/pg-client.ts';

/**
 * Settings of the scratch PostgreSQL the drill starts: throwaway data (no fsync, minimal WAL, no
 * autovacuum during the load) and room for the index builds.
 */
export const SCRATCH_POSTGRES_SETTINGS: Record<string, string | number | boolean> = {
  wal_level: 'minimal', max_wal_senders: 0, max_wal_size: '8GB', checkpoint_timeout: '30min',
  maintenance_work_mem: '512MB', shared_buffers: '256MB', autovacuum: false,
};

export interface ScratchDatabaseRequest {
  /** Operator-given scratch database (--scratch-database-url). */
  scratchDatabaseUrl?: string;
  /** Production URLs the scratch one may never be: --database-url / E4OPS_DATABASE_URL, and where the backup was taken. */
  productionUrls: (string | undefined)[];
  /** A scratch C2 will dial it: it must listen on port 5432. */
  forC2: boolean;
}

export interface ScratchDatabase { dbUrl: string; dbHost: string }

/** A production URL from a manifest's `host[:port]` and database name. */
export function productionUrlOfManifest(host: string | undefined, database: string): string | undefined {
  if (!host) return undefined;
  return `postgres://x@${host.includes(':') && !host.startsWith('[') ? host : `${host}:5432`}/${database}`;
}

async function assertEmpty(dbUrl: string): Promise<void> {
  await withPgClient(dbUrl, async (c) => {
    const r = await c.query(`SELECT count(*)::int AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')`);
    if (r.rows[0].n > 0) throw new BackupError('config', `--scratch-database-url ${redactUrl(dbUrl)} is not empty (${r.rows[0].n} tables): a drill restores into an empty scratch database only`);
  });
}

async function useGivenScratch(req: ScratchDatabaseRequest & { scratchDatabaseUrl: string }): Promise<ScratchDatabase> {
  for (const production of req.productionUrls) if (production) await assertScratchIsNotProduction(req.scratchDatabaseUrl, production);
  const t = pgTargetOf(req.scratchDatabaseUrl, '--scratch-database-url');
  if (req.forC2 && t.port !== 5432) throw new BackupError('config', `--with-c2 needs the scratch database on port 5432 (C2 has no port setting); --scratch-database-url uses port ${t.port}`);
  await assertEmpty(req.scratchDatabaseUrl);
  return { dbUrl: req.scratchDatabaseUrl, dbHost: t.host };
}

/** Start the drill's own scratch PostgreSQL, torn down with the run's scratch resources. */
export async function startDrillPostgres(scratch: ScratchResources, forC2: boolean, settings = SCRATCH_POSTGRES_SETTINGS, dataDir?: string) {
  // C2 always dials port 5432, and 127.0.0.1:5432 may be the machine's own PostgreSQL: use a free 127.0.0.N.
  const host = forC2 ? await pickLoopbackHostFor5432() : '127.0.0.1';
  const listen = { host, ...(forC2 ? { port: 5432 } : {}), settings };
  const { server } = dataDir
    ? { server: await startThrowawayPostgres({ ...listen, dataDir }) }
    : await startScratchPostgres(listen, (dir) => scratch.addDir(dir));
  // The launcher's own folder (socket, log; the data too when it ran initdb itself) is the socket folder's parent.
  scratch.add(`scratch PostgreSQL ${server.host}:${server.port}`, () => server.stop(), () => { killTreeSync(server.daemon.child.pid); removeDirSync(path.dirname(server.socketDir)); });
  return server;
}

/** The scratch database of a logical drill. */
export async function openScratchDatabase(scratch: ScratchResources, req: ScratchDatabaseRequest): Promise<ScratchDatabase> {
  if (req.scratchDatabaseUrl) return useGivenScratch({ ...req, scratchDatabaseUrl: req.scratchDatabaseUrl });
  const server = await startDrillPostgres(scratch, req.forC2);
  // The scratch server is the drill's alone: restore into its default database (no CREATE DATABASE on the RTO path).
  return { dbUrl: server.url('postgres'), dbHost: server.host };
}
