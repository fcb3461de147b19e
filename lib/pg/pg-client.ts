/**
 * Short-lived PostgreSQL connections. A pg.Client with no 'error' listener turns a socket error that
 * arrives between queries (the server shutting down, a restored cluster failing recovery) into an
 * uncaught exception that kills the whole process; every client e4ops opens goes through here.
 */
import pg from 'pg';

export type PgTarget = string | pg.ClientConfig;

/** A client that keeps its socket errors: the next query or end() reports them instead. */
export function createPgClient(target: PgTarget, onError?: (e: Error) => void): pg.Client {
  const c = new pg.Client(typeof target === 'string' ? { connectionString: target } : target);
  c.on('error', (e) => onError?.(e));
  return c;
}

/** Connect, run fn, always disconnect (an error while disconnecting never hides fn's result). */
export async function withPgClient<T>(target: PgTarget, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = createPgClient(target);
  try {
    await c.connect();
    return await fn(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** Use the given client as it is, or open (and close) one of our own for a URL. */
export async function withClientOrUrl<T>(db: string | pg.ClientBase, fn: (c: pg.ClientBase) => Promise<T>): Promise<T> {
  return typeof db === 'string' ? withPgClient(db, fn) : fn(db);
}
