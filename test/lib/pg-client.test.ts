// A server that goes away between queries (a restored cluster failing recovery, a fast shutdown) must
// surface as a rejected query, never as an uncaught exception that kills the drill or the restore.
import { describe, it, expect, afterAll } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { startThrowawayPostgres, type ThrowawayPostgres } from '../../lib/servers/postgres.ts';
import { createPgClient, withPgClient } from '../../lib/pg/pg-client.ts';
import { REPO_ROOT } from '../../lib/repo-root.ts';

describe('short-lived PostgreSQL clients (lib/pg/pg-client.ts)', () => {
  let pgs: ThrowawayPostgres | undefined;
  afterAll(async () => { await pgs?.stop(); });

  it('a connection terminated between queries reaches the error callback and the next query, not the process', async () => {
    pgs = await startThrowawayPostgres();
    const url = pgs.url('postgres');
    const seen: string[] = [];
    const c = createPgClient(url, (e) => seen.push(e.message));
    await c.connect();
    const pid = (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    await withPgClient(url, (admin) => admin.query('SELECT pg_terminate_backend($1)', [pid]));
    for (let i = 0; i < 50 && seen.length === 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(seen.join(' ')).toMatch(/terminat|ECONNRESET|Connection terminated/i);
    await expect(c.query('SELECT 1')).rejects.toThrow();
    await c.end().catch(() => undefined);
    // withPgClient still returns fn's result and closes its connection.
    expect(await withPgClient(url, async (x) => (await x.query<{ n: number }>('SELECT 40 + 2 AS n')).rows[0].n)).toBe(42);
  }, 60_000);

  it('the code and its tests open PostgreSQL connections only through lib/pg/pg-client.ts', () => {
    const files = (dir: string): string[] => fs.readdirSync(path.join(REPO_ROOT, dir), { withFileTypes: true }).flatMap((e) => {
      const rel = path.join(dir, e.name);
      return e.isDirectory() ? (e.name === 'node_modules' ? [] : files(rel)) : e.name.endsWith('.ts') ? [rel] : [];
    });
    const offenders = ['lib', 'backups', 'provisioning', 'scripts', 'stacks', 'appliances', 'dashboards', 'bench', 'test']
      .filter((d) => fs.existsSync(path.join(REPO_ROOT, d))).flatMap(files)
      .filter((f) => f !== path.join('lib', 'pg', 'pg-client.ts') && f !== path.join('test', 'lib', 'pg-client.test.ts') && /new pg\.(Client|Pool)\(/.test(fs.readFileSync(path.join(REPO_ROOT, f), 'utf8')));
    expect(offenders, 'use createPgClient / withPgClient from lib/pg/pg-client.ts').toEqual([]);
  });
});
