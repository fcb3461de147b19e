import { execFile, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// C2's database schema, in one place: the table names e4ops queries, and the DDL C2's gorm AutoMigrate
// creates on an empty PostgreSQL database, captured with `pg_dump --schema-only` into
// lib/c2/db-schema.sql (test/c2/c2-server.test.ts checks a fresh C2 still creates exactly that). Seeding
// creates test databases from that file; drills compare a restored database's schema against it.

export const C2_DB_SCHEMA_FILE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'db-schema.sql');

/** The tables of C2's database that e4ops reads or seeds. */
export const C2_TABLES = {
  clients: 'clients',
  topics: 'topic_keys',
  topicLinks: 'clients_topickeys',
  clientLinks: 'clients_clientkeys',
} as const;

export interface C2SchemaDdl {
  sql: string;
  /** Always the DDL captured from a real C2 (lib/c2/db-schema.sql). */
  source: 'captured';
}

/** DDL that creates C2's tables in an empty database: the captured schema. */
export function c2SchemaDdl(): C2SchemaDdl {
  return { sql: readCommittedC2Schema(), source: 'captured' };
}

function pgDumpSchemaArgs(url: string): { args: string[]; env: NodeJS.ProcessEnv } {
  let dbname = url;
  const env: NodeJS.ProcessEnv = { ...process.env };
  try {
    const u = new URL(url);
    if (u.password) { env.PGPASSWORD = decodeURIComponent(u.password); u.password = ''; dbname = u.toString(); }
  } catch { /* a libpq keyword string: passed as it is */ }
  return { args: ['--schema-only', '--no-owner', '--no-privileges', '--dbname', dbname], env };
}

function pgDumpFailure(pgDumpBinary: string, error: Error | undefined | null, stderr: string): Error {
  if (error && (error as NodeJS.ErrnoException).code === 'ENOENT') return new Error(`${pgDumpBinary} not found: apt-get install postgresql-client`);
  return new Error(`pg_dump --schema-only failed: ${stderr}`);
}

/** pg_dump --schema-only of `url` (no owners, no privileges), as text. A password in the URL goes by PGPASSWORD, never argv. */
export function dumpSchema(url: string, pgDumpBinary = 'pg_dump'): string {
  const { args, env } = pgDumpSchemaArgs(url);
  const r = spawnSync(pgDumpBinary, args, { encoding: 'utf8', maxBuffer: 64 << 20, env });
  if (r.error || r.status !== 0) throw pgDumpFailure(pgDumpBinary, r.error, r.stderr);
  return r.stdout;
}

/**
 * dumpSchema without blocking the event loop: the drill's key check hands out its ranges and reads its COPY
 * streams on this thread meanwhile.
 */
export function dumpSchemaAsync(url: string, pgDumpBinary = 'pg_dump'): Promise<string> {
  const { args, env } = pgDumpSchemaArgs(url);
  return new Promise((resolve, reject) => {
    execFile(pgDumpBinary, args, { encoding: 'utf8', maxBuffer: 64 << 20, env }, (error, stdout, stderr) => {
      if (error) reject(pgDumpFailure(pgDumpBinary, error, stderr)); else resolve(stdout);
    });
  });
}

/**
 * Schema text reduced to what matters for comparison: no comments, no blank lines, no session SET lines
 * and no pg_dump version-specific settings, so dumps from different pg_dump versions compare equal.
 */
export function normalizeSchema(sql: string): string {
  return sql
    .split('\n')
    .map((l) => l.trimEnd())
    .filter((l) => l && !l.startsWith('--') && !/^SET\s/i.test(l) && !/^SELECT pg_catalog\.set_config/i.test(l) && !/^\\(un)?restrict\s/.test(l))
    .join('\n');
}

export interface SchemaDifference {
  missing: string[];
  unexpected: string[];
}

/** Statement lines in `expected` that `actual` lacks and vice versa (order-insensitive). Empty lists: same schema. */
export function compareSchemas(expected: string, actual: string): SchemaDifference {
  const a = new Set(normalizeSchema(expected).split('\n'));
  const b = new Set(normalizeSchema(actual).split('\n'));
  return { missing: [...a].filter((l) => !b.has(l)), unexpected: [...b].filter((l) => !a.has(l)) };
}

export function readCommittedC2Schema(): string {
  return fs.readFileSync(C2_DB_SCHEMA_FILE, 'utf8');
}
