// A drill restores into a scratch database, never into production. Two PostgreSQL URLs point at
// the same database when host, port and database name agree after normalising the spellings
// (localhost vs 127.0.0.1, default port 5432, database defaulting to the user name).
import dns from 'node:dns/promises';

export interface PgTarget { host: string; port: number; database: string }

export class ScratchIsProductionError extends Error {}

function parsePgUrl(url: string, what: string): { host: string; port: number; database: string } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`${what} "${url.replace(/:[^:@/]*@/, ':***@')}" is not a postgres:// URL`);
  }
  if (!/^postgres(ql)?:$/.test(u.protocol)) throw new Error(`${what} must start with postgres:// or postgresql://`);
  // libpq also takes the host (or a socket dir) and dbname as query parameters.
  const host = decodeURIComponent(u.searchParams.get('host') ?? u.hostname ?? '') || 'localhost';
  const port = Number(u.searchParams.get('port') ?? (u.port || 5432));
  const user = decodeURIComponent(u.username) || process.env.PGUSER || 'postgres';
  const database = decodeURIComponent(u.searchParams.get('dbname') ?? u.pathname.replace(/^\//, '')) || user;
  return { host: host.replace(/^\[|\]$/g, '').toLowerCase(), port, database };
}

async function hostAddresses(host: string): Promise<Set<string>> {
  if (host.startsWith('/')) return new Set([`socket:${host.replace(/\/+$/, '')}`]);
  const out = new Set<string>([host]);
  if (host === 'localhost') { out.add('127.0.0.1'); out.add('::1'); }
  try {
    for (const a of await dns.lookup(host, { all: true })) out.add(a.address);
  } catch { /* unresolvable: compare by name only */ }
  return out;
}

/** Normalised target of a PostgreSQL URL (for messages and comparisons). */
export function pgTargetOf(url: string, what = 'database URL'): PgTarget {
  return parsePgUrl(url, what);
}

/** Throw when the scratch URL names the production database (same address, port and database). */
export async function assertScratchIsNotProduction(scratchUrl: string, productionUrl: string | undefined): Promise<void> {
  if (!productionUrl) return;
  const s = parsePgUrl(scratchUrl, '--scratch-database-url');
  const p = parsePgUrl(productionUrl, '--database-url');
  if (s.port !== p.port || s.database !== p.database) return;
  const [sa, pa] = await Promise.all([hostAddresses(s.host), hostAddresses(p.host)]);
  const same = [...sa].some((a) => pa.has(a));
  if (same) {
    throw new ScratchIsProductionError(`refusing to restore: --scratch-database-url points at the production database (${p.host}:${p.port}/${p.database}, from --database-url); a drill restores into a scratch database only. Leave --scratch-database-url out to let the drill start its own scratch PostgreSQL, or give a different database`);
  }
}
