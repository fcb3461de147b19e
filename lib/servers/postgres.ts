import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { asUser, chownTo, startDaemon, type Daemon } from './daemon.ts';
import { freeLoopbackPort } from '../ports.ts';

/** Directory holding initdb/pg_ctl/postgres: Debian keeps them off PATH. */
export function postgresBinDir(): string {
  if (process.env.E4OPS_PG_BINDIR) return process.env.E4OPS_PG_BINDIR;
  const root = '/usr/lib/postgresql';
  const versions = fs.existsSync(root) ? fs.readdirSync(root).filter((v) => /^\d+$/.test(v)).sort((a, b) => +b - +a) : [];
  if (!versions.length) throw new Error('PostgreSQL server binaries not found under /usr/lib/postgresql: apt-get install postgresql (or set E4OPS_PG_BINDIR)');
  return path.join(root, versions[0], 'bin');
}

export interface ThrowawayPostgresOptions {
  /** Loopback address to listen on (default 127.0.0.1). C2 can only dial port 5432, so tests that run C2 pick 127.0.0.N:5432. */
  host?: string;
  port?: number;
  /** Extra postgresql.conf settings (appended after the defaults). */
  settings?: Record<string, string | number | boolean>;
  /** Whole postgresql.conf text to append verbatim (e.g. a rendered file under test). */
  confText?: string;
  /** Existing data directory to start instead of running initdb (e.g. a base backup). */
  dataDir?: string;
  /** Default true: fsync off, for speed; data is throwaway. */
  fast?: boolean;
}

export interface ThrowawayPostgres {
  host: string;
  port: number;
  dataDir: string;
  socketDir: string;
  binDir: string;
  /** postgres://postgres@host:port/db (trust auth, so any password is accepted). */
  url(database?: string): string;
  createDatabase(name: string): Promise<string>;
  /** Run a psql-style one-off SQL through the bundled psql; returns stdout. */
  psql(sql: string, database?: string): string;
  daemon: Daemon;
  stop(): Promise<void>;
  /** Stop immediately (SIGKILL the postmaster), as a crash would. */
  kill(): Promise<void>;
}

function run(cmd: string, args: string[], what: string, user?: string): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', cwd: '/', ...(user ? asUser(user) : {}) });
  if (r.status !== 0) throw new Error(`${what} failed (${cmd} ${args.join(' ')}):\n${r.stdout}${r.stderr}${r.error?.message ?? ''}`);
  return r.stdout;
}

/**
 * initdb a throwaway data directory (superuser postgres, trust auth, UTF-8, no fsync) as user postgres.
 * Its parent must already be writable by postgres.
 */
export function initPostgresDataDir(dataDir: string, binDir = postgresBinDir()): void {
  run(path.join(binDir, 'initdb'), ['-D', dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C.UTF-8', '--no-sync'], 'initdb', 'postgres');
}

function renderSetting(v: string | number | boolean): string {
  if (typeof v === 'boolean') return v ? 'on' : 'off';
  if (typeof v === 'number') return String(v);
  return `'${v.replace(/'/g, "''")}'`;
}

/** Start a PostgreSQL server in a fresh temporary directory on a loopback port. */
export async function startThrowawayPostgres(opts: ThrowawayPostgresOptions = {}): Promise<ThrowawayPostgres> {
  const binDir = postgresBinDir();
  const host = opts.host ?? '127.0.0.1';
  const port = opts.port ?? (await freeLoopbackPort(host));
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-pg-'));
  const socketDir = path.join(base, 'sock');
  fs.mkdirSync(socketDir);
  let dataDir = opts.dataDir;
  if (!dataDir) {
    dataDir = path.join(base, 'data');
    chownTo(base, 'postgres');
    initPostgresDataDir(dataDir, binDir);
  } else {
    chownTo(base, 'postgres');
    chownTo(dataDir, 'postgres');
  }
  const settings: Record<string, string | number | boolean> = {
    listen_addresses: host,
    port,
    unix_socket_directories: socketDir,
    ...(opts.fast !== false ? { fsync: false, synchronous_commit: false, full_page_writes: false } : {}),
    ...opts.settings,
  };
  const conf = Object.entries(settings).map(([k, v]) => `${k} = ${renderSetting(v)}`).join('\n');
  fs.appendFileSync(path.join(dataDir, 'postgresql.conf'), `\n# e4ops throwaway\n${opts.confText ?? ''}\n${conf}\n`);
  // Replication from loopback, for tests that build a standby with pg_basebackup.
  fs.appendFileSync(path.join(dataDir, 'pg_hba.conf'), '\nhost replication all 127.0.0.0/8 trust\nhost all all 127.0.0.0/8 trust\n');
  const logFile = path.join(base, 'postgres.log');
  fs.writeFileSync(logFile, '');
  chownTo(logFile, 'postgres');
  const daemon = startDaemon(path.join(binDir, 'postgres'), ['-D', dataDir], logFile, { cwd: '/', ...asUser('postgres') });
  const deadline = Date.now() + 30_000;
  for (;;) {
    const r = spawnSync(path.join(binDir, 'pg_isready'), ['-h', host, '-p', String(port), '-q']);
    if (r.status === 0) break;
    if (daemon.child.exitCode !== null || Date.now() > deadline) {
      await daemon.stop('SIGKILL');
      throw new Error(`PostgreSQL did not start on ${host}:${port}:\n${daemon.tail()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const url = (db = 'postgres') => `postgres://postgres@${host}:${port}/${db}`;
  const psql = (sql: string, db = 'postgres') =>
    run('psql', ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', url(db), '-c', sql], 'psql');
  let stopped = false;
  const cleanup = () => fs.rmSync(base, { recursive: true, force: true });
  return {
    host, port, dataDir, socketDir, binDir, daemon, url, psql,
    async createDatabase(name) {
      psql(`CREATE DATABASE "${name.replace(/"/g, '""')}"`);
      return url(name);
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await daemon.stop('SIGINT'); // fast shutdown
      cleanup();
    },
    async kill() {
      if (stopped) return;
      stopped = true;
      await daemon.stop('SIGKILL');
      cleanup();
    },
  };
}
