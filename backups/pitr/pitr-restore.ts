// Restoring C2's cluster from pgBackRest into a data directory that is provably not production, and
// starting it there: the pieces the PITR drill runs and a production restore reuses. Each step takes its
// inputs explicitly and returns what the next needs; none keeps state of its own.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type pg from 'pg';
import { OpsError } from '../../lib/cli/exit-codes.ts';
import { runPgBackRestRaw, PgBackRestError, type PgBackRestTarget } from '../../lib/pgbackrest/pgbackrest-command.ts';
import { asUser, chownTo, startDaemon } from '../../lib/servers/daemon.ts';
import { postgresBinDir } from '../../lib/servers/postgres.ts';
import { freeLoopbackPort } from '../../lib/ports.ts';
import { killTreeSync } from '../../lib/process-tree.ts';
import { asPgBackRestOpsError } from './pitr-repository.ts';
import { withPgClient } from '../../lib/pg/pg-client.ts';

/** Every pg1-path (pgN-path) the operator's config and its include files name: the production data directories. */
export function configuredPgPaths(configFile: string, configIncludePath?: string): string[] {
  const files = [configFile];
  const inc = configIncludePath ?? '/etc/pgbackrest/conf.d';
  if (fs.existsSync(inc)) files.push(...fs.readdirSync(inc).filter((f) => f.endsWith('.conf')).map((f) => path.join(inc, f)));
  const paths: string[] = [];
  for (const f of files) {
    let text: string;
    try { text = fs.readFileSync(f, 'utf8'); } catch (e) {
      if (f === configFile) throw new OpsError('usage', `--pgbackrest-config ${f}: ${(e as Error).message}`);
      continue;
    }
    for (const m of text.matchAll(/^\s*pg\d+-path\s*=\s*(\S+)\s*$/gm)) paths.push(path.resolve(m[1]));
  }
  return paths;
}

const inside = (child: string, parent: string) => child === parent || child.startsWith(parent.endsWith('/') ? parent : parent + '/');

/** A fresh scratch data directory under parent (default the temp folder), never at, in or around a configured pg1-path. */
export function createScratchDataDir(pgPaths: string[], parent = os.tmpdir()): string {
  const base = fs.realpathSync(parent);
  for (const p of pgPaths) {
    const real = fs.existsSync(p) ? fs.realpathSync(p) : p;
    if (inside(base, real)) {
      throw new OpsError('refused', `scratch folder ${parent} is the configured pg1-path ${p} or inside/around it: a drill never restores over a production data directory; give another --scratch-dir`);
    }
  }
  const dir = fs.mkdtempSync(path.join(base, 'e4ops-pitr-data-'));
  chownTo(dir, 'postgres');
  fs.chmodSync(dir, 0o700); // PostgreSQL refuses a data directory others can read
  return dir;
}

export interface PitrRestoreRequest {
  dataDir: string;
  /** ISO time to recover to; undefined = the end of the archive (latest). */
  targetTime?: Date;
  /** pgBackRest set label; with no target time, recover just to the end of that set (immediate). */
  set?: string;
}

/** Inside the scratch data directory (so it goes with it): the queue and lock of the scratch cluster's archive-get. */
export const SCRATCH_ARCHIVE_GET_DIR = 'e4ops-archive-get';

/**
 * pgbackrest restore's recovery options for a request (a scratch restore: never production's data directory).
 * The spool and lock paths are the scratch cluster's own: pgbackrest restore deletes <spool-path>/archive/<stanza>,
 * and with production's spool-path that is production's archive-push acknowledgements, so production's archiver
 * waits out pgBackRest's archive-timeout for a segment already pushed, and archives nothing meanwhile (minutes of
 * commits that a disaster then loses).
 */
export function pitrRestoreArgs(r: PitrRestoreRequest): string[] {
  const own = path.join(r.dataDir, SCRATCH_ARCHIVE_GET_DIR);
  const args = [`--pg1-path=${r.dataDir}`, `--spool-path=${own}/spool`, `--lock-path=${own}/lock`, '--archive-mode=off', '--log-level-console=info'];
  if (r.set) args.push(`--set=${r.set}`);
  if (r.targetTime) args.push('--type=time', `--target=${r.targetTime.toISOString().replace('T', ' ').replace('Z', '+00')}`, '--target-action=promote');
  else if (r.set) args.push('--type=immediate', '--target-action=promote');
  return args;
}

/**
 * pgbackrest restore into the scratch data directory. The restored cluster never archives (archive-mode=off:
 * a drill must not push a new timeline into the production repository). Returns the set pgBackRest chose.
 */
export async function restoreClusterFromRepository(t: PgBackRestTarget, r: PitrRestoreRequest): Promise<{ set: string | null; seconds: number }> {
  const t0 = Date.now();
  const res = await runPgBackRestRaw(t, 'restore', pitrRestoreArgs(r));
  if (res.code !== 0) {
    const msg = (res.stdout + res.stderr).split('\n').filter((l) => /ERROR|HINT|^\s{2,}\S/.test(l)).join('\n');
    throw asPgBackRestOpsError(new PgBackRestError('restore', res.code, msg.replace(/^.*?ERROR: \[\d+\]:\s*/, '')));
  }
  const set = /restore backup set ([^\s,]+)/.exec(res.stdout)?.[1] ?? null;
  return { set, seconds: (Date.now() - t0) / 1000 };
}

/** Settings in the restored config that would point the scratch server at production: commented out. */
const PRODUCTION_BOUND = /^\s*(data_directory|hba_file|ident_file|port|listen_addresses|unix_socket_directories|archive_mode|archive_command|archive_library|primary_conninfo|primary_slot_name|include|include_dir|ssl_cert_file|ssl_key_file|ssl_ca_file)\b/;

/**
 * A restore_command running pgBackRest's archive-get, given a spool and lock path of the scratch cluster's own
 * (and archive-async).
 * With archive-async (the default rendered config) archive-get keeps a prefetch queue in spool-path and takes
 * the stanza's archive lock, which production's archive-push also takes: a scratch recovery sharing them
 * waits out archive-timeout (60 s) for the lock, or reads a queue another run left, and may stop short of the
 * archive's end. Other restore_command lines are returned unchanged.
 */
export function isolateScratchArchiveGet(line: string, dataDir: string): string {
  const m = /^(\s*restore_command\s*=\s*')(.*\bpgbackrest\b.*?)(\s+archive-get\s.*)$/.exec(line);
  if (!m) return line;
  const own = path.join(dataDir, SCRATCH_ARCHIVE_GET_DIR);
  // Asynchronous whatever the config says (spool-path is refused without it): the prefetch keeps replay fast.
  const args = m[2].replace(/\s+--(?:lock-path|spool-path|archive-async)(?:=\S+|\s+(?!--)\S+)?/g, '').replace(/\s+--no-archive-async\b/g, '');
  return `${m[1]}${args} --archive-async --lock-path=${own}/lock --spool-path=${own}/spool${m[3]}`;
}

/**
 * Make the restored configuration scratch-safe: production's paths, ports, archiving and upstream are
 * commented out in postgresql.conf and postgresql.auto.conf (pgBackRest's own recovery settings stay, its
 * archive-get pointed at a queue and lock of the scratch cluster's own: isolateScratchArchiveGet).
 * Includes of files inside the data directory (Patroni's postgresql.base.conf) are kept.
 */
export function neutralizeRestoredConfig(dataDir: string): string[] {
  const removed: string[] = [];
  for (const d of ['lock', 'spool']) fs.mkdirSync(path.join(dataDir, SCRATCH_ARCHIVE_GET_DIR, d), { recursive: true });
  for (const name of ['postgresql.conf', 'postgresql.auto.conf']) {
    const file = path.join(dataDir, name);
    if (!fs.existsSync(file)) continue;
    const lines = fs.readFileSync(file, 'utf8').split('\n').map((raw) => {
      const l = isolateScratchArchiveGet(raw, dataDir);
      const m = PRODUCTION_BOUND.exec(l);
      if (!m) return l;
      const inc = /^\s*include(?:_if_exists)?\s*=?\s*'([^']+)'/.exec(l);
      if (inc && !inc[1].startsWith('/') && fs.existsSync(path.join(dataDir, inc[1]))) return l;
      if (name === 'postgresql.auto.conf' && m[1] === 'archive_mode') return l; // pgBackRest's archive-mode=off
      removed.push(`${name}: ${m[1]}`);
      return `# e4ops scratch: ${l}`;
    });
    fs.writeFileSync(file, lines.join('\n'));
  }
  // Loopback-only trust for the scratch server: production's rules (scram, its networks) never apply to it.
  fs.writeFileSync(path.join(dataDir, 'pg_hba.conf'), '# e4ops scratch (production rules removed)\nlocal all all trust\nhost all all 127.0.0.0/8 trust\nhost all all ::1/128 trust\n');
  fs.rmSync(path.join(dataDir, 'standby.signal'), { force: true });
  fs.rmSync(path.join(dataDir, 'postmaster.pid'), { force: true });
  chownTo(dataDir, 'postgres');
  return removed;
}

/** The scratch server's settings: throwaway durability, no archiving, recovery allowed to read. */
export const PITR_SCRATCH_SETTINGS: Record<string, string | number | boolean> = {
  archive_mode: 'off', hot_standby: true, max_wal_size: '4GB', log_min_messages: 'warning',
};

export interface RecoveredPoint {
  /** Commit time of the last transaction recovered (PostgreSQL's "last completed transaction"), ISO. */
  lastCommitAt: string | null;
  /** For a time target: the first transaction not recovered (PostgreSQL's "recovery stopping before ..."). */
  stoppedBeforeCommitAt: string | null;
  seconds: number;
}

function pgLogTime(text: string): string | null {
  const m = /(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?)([+-]\d\d(?::?\d\d)?)?/.exec(text);
  if (!m) return null;
  const tz = m[2] ? (m[2].length === 3 ? `${m[2]}:00` : m[2]) : 'Z';
  const d = new Date(`${m[1].replace(' ', 'T')}${tz}`);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

/** Read the recovered point from the server log. */
export function recoveredPointFromLog(log: string, seconds: number): RecoveredPoint {
  const last = [...log.matchAll(/last completed transaction was at log time ([^\n]+)/g)].pop();
  const stop = [...log.matchAll(/recovery stopping before commit of transaction \d+, time ([^\n]+)/g)].pop();
  return { lastCommitAt: last ? pgLogTime(last[1]) : null, stoppedBeforeCommitAt: stop ? pgLogTime(stop[1]) : null, seconds };
}

/** Why recovery failed, in the operator's words, from the server log. */
export function recoveryFailureFromLog(log: string, target: string): string {
  // Connection attempts during start-up log FATALs of their own; the server's reason is the last other one.
  const fatals = [...log.matchAll(/FATAL:\s+([^\n|]+)/g)].map((m) => m[1].trim()).filter((f) => !/the database system is/.test(f));
  const fatal = fatals.pop();
  const lastRestored = [...log.matchAll(/restored log file "([0-9A-F]{24})" from archive/g)].pop()?.[1];
  const missing = /archive-get[^\n]*?(?:unable to find|not found)[^\n]*?([0-9A-F]{24})/.exec(log)?.[1];
  if (fatal && /recovery ended before configured recovery target was reached/.test(fatal)) {
    return `recovery could not reach ${target}: the archive ends${lastRestored ? ` after WAL segment ${lastRestored}` : ''} (a WAL segment is missing from the repository${missing ? ` (${missing})` : ''}, or the target is after the newest archived commit). PostgreSQL: ${fatal}`;
  }
  return fatal ? `restored PostgreSQL did not start: ${fatal}` : `restored PostgreSQL did not start: ${log.split('\n').slice(-5).join(' | ')}`;
}

/** The scratch server on a restored data directory: loopback only, started and watched by the drill. */
export interface RestoredServer {
  host: string;
  port: number;
  logFile: string;
  url(database?: string): string;
  query<T extends pg.QueryResultRow>(sql: string, database?: string): Promise<T[]>;
  stop(): Promise<void>;
  /** For SIGTERM teardown: kill the postmaster now. */
  killSync(): void;
  /** The postmaster has exited (recovery failed, or it was stopped). */
  hasExited(): boolean;
}

function renderSetting(v: string | number | boolean): string {
  if (typeof v === 'boolean') return v ? 'on' : 'off';
  return typeof v === 'number' ? String(v) : `'${v.replace(/'/g, "''")}'`;
}

/**
 * Start PostgreSQL on the restored (neutralized) data directory, as user postgres, on host:port with its
 * socket in a folder of its own. Recovery starts at once; waitForPromotion watches it.
 */
export async function startRestoredServer(dataDir: string, o: { host?: string; port?: number; settings?: Record<string, string | number | boolean> } = {}): Promise<RestoredServer> {
  const host = o.host ?? '127.0.0.1';
  const port = o.port ?? await freeLoopbackPort(host);
  const runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-pitr-run-'));
  const logFile = path.join(runDir, 'postgres.log');
  fs.writeFileSync(logFile, '');
  chownTo(runDir, 'postgres');
  const settings = { listen_addresses: host, port, unix_socket_directories: runDir, fsync: false, synchronous_commit: false, ...o.settings };
  fs.appendFileSync(path.join(dataDir, 'postgresql.conf'), `\n# e4ops scratch\n${Object.entries(settings).map(([k, v]) => `${k} = ${renderSetting(v)}`).join('\n')}\n`);
  chownTo(dataDir, 'postgres');
  const daemon = startDaemon(path.join(postgresBinDir(), 'postgres'), ['-D', dataDir], logFile, { cwd: '/', ...asUser('postgres') });
  const url = (db = 'postgres') => `postgres://postgres@${host}:${port}/${db}`;
  return {
    host, port, logFile, url,
    async query(sql, db) {
      return withPgClient(url(db), async (c) => (await c.query(sql)).rows);
    },
    async stop() {
      await daemon.stop('SIGINT'); // fast shutdown
      fs.rmSync(runDir, { recursive: true, force: true });
    },
    killSync() { killTreeSync(daemon.child.pid); fs.rmSync(runDir, { recursive: true, force: true }); },
    hasExited: () => daemon.child.exitCode !== null || daemon.child.signalCode !== null,
  };
}

/** Wait until the restored server has finished recovery and promoted (or died trying). */
export async function waitForPromotion(server: RestoredServer, target: string, timeoutMs = 3_600_000): Promise<RecoveredPoint> {
  const t0 = Date.now();
  for (;;) {
    if (server.hasExited()) {
      throw new OpsError('checkFailed', recoveryFailureFromLog(fs.readFileSync(server.logFile, 'utf8'), target));
    }
    const inRecovery = await server.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r').then((rows) => rows[0].r, () => true);
    if (!inRecovery) return recoveredPointFromLog(fs.readFileSync(server.logFile, 'utf8'), (Date.now() - t0) / 1000);
    if (Date.now() - t0 > timeoutMs) throw new OpsError('timedOut', `restored PostgreSQL still in recovery after ${timeoutMs / 1000} s (target ${target})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The database holding C2's tables in the restored cluster (or the named one). */
export async function findC2Database(server: RestoredServer, named?: string): Promise<string> {
  const dbs = (await server.query<{ datname: string }>('SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname')).map((r) => r.datname);
  if (named) {
    if (!dbs.includes(named)) throw new OpsError('checkFailed', `the restored cluster has no database "${named}" (it has: ${dbs.join(', ')})`);
    return named;
  }
  const withC2: string[] = [];
  for (const d of dbs) {
    const [r] = await server.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_tables WHERE tablename IN ('clients', 'topic_keys')", d);
    if (r.n === 2) withC2.push(d);
  }
  if (withC2.length !== 1) throw new OpsError('checkFailed', withC2.length ? `several restored databases hold C2 tables (${withC2.join(', ')}): name one with --c2-database` : `no restored database holds C2's tables (clients, topic_keys); databases: ${dbs.join(', ')}`);
  return withC2[0];
}
