// What an operator asks of a pgBackRest repository, without learning its commands: the stanza's sets,
// its WAL range, when the newest WAL arrived and the newest commit it holds (the newest point a restore
// can reach). pgBackRest stays the engine; this reads its JSON and, for the newest commit, the WAL itself.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, type SpawnOptions } from 'node:child_process';
import { OpsError } from '../../lib/cli/exit-codes.ts';
import { PgBackRestError, runPgBackRest, pgBackRestArgv, defaultPgBackRestUser, type PgBackRestTarget } from '../../lib/pgbackrest/pgbackrest-command.ts';
import { postgresBinDir } from '../../lib/servers/postgres.ts';
import { asUser, chownTo } from '../../lib/servers/daemon.ts';

export interface PitrBackupSet {
  label: string;
  type: 'full' | 'diff' | 'incr';
  /** The set it depends on (diff/incr). */
  prior: string | null;
  startedAt: string;
  stoppedAt: string;
  /** Database size and what this set stored in the repository (after compression and dedup), bytes. */
  databaseBytes: number;
  repositoryBytes: number;
  walStart: string;
  walStop: string;
}

export interface PitrInfo {
  stanza: string;
  /** pgBackRest's archive id of the current database (e.g. 15-1). */
  archiveId: string | null;
  cipher: string;
  sets: PitrBackupSet[];
  wal: { min: string; max: string } | null;
  /** When the newest WAL segment reached the repository (archive lag is now minus this). */
  newestWalArchivedAt: string | null;
  /** Oldest point a restore can reach: the end of the oldest set. */
  oldestRecoverableTime: string | null;
  /** Commit time of the newest transaction in the archive (null when not read, or none in the newest segments). */
  newestRecoverableTime: string | null;
}

interface InfoJson {
  name: string; cipher: string;
  status: { code: number; message: string };
  repo?: { key: number; status: { code: number; message: string } }[];
  archive: { id: string; min: string | null; max: string | null }[];
  backup: { label: string; type: PitrBackupSet['type']; prior: string | null; timestamp: { start: number; stop: number }; info: { size: number; repository: { delta: number } }; archive: { start: string; stop: string } }[];
}

/** Strip what a wrongly decrypted file puts into pgBackRest's messages (binary garbage). */
export function printable(text: string): string {
  const seen = new Set<string>();
  return text
    .replace(/(outside of section at line \d+:)[\s\S]*?(?=\s*(?:[A-Z]\w+Error:|HINT:|$))/g, '$1 (unreadable bytes)')
    .replace(/[^\x20-\x7e\n]+/g, '?')
    .split(/\s{2,}|\n/).filter((part) => part && !seen.has(part) && seen.add(part)).join(' ');
}

/** The operator's fix for pgBackRest's symptom, when the symptom is a known one. */
export function pgBackRestHint(message: string, encrypted: boolean): string {
  if (encrypted && /FormatError|CryptoError|unable to (?:flush|decrypt)|cipher/i.test(message)) {
    return ' — the repository is encrypted and this looks like a wrong cipher passphrase: check repo1-cipher-pass in the config include folder (or PGBACKREST_REPO1_CIPHER_PASS)';
  }
  if (/has a stanza-create been performed|missing stanza path/i.test(message)) return ' — run e4ops pitr init first (stanza-create)';
  return '';
}

/** A failed pgBackRest call as the one exit kind (14), with its code named and a hint. */
export function asPgBackRestOpsError(e: unknown, encrypted = true): unknown {
  if (!(e instanceof PgBackRestError)) return e;
  return new OpsError('pgbackrest', printable(e.message) + pgBackRestHint(e.message, encrypted), { pgbackrestCode: e.code });
}

function toSet(b: InfoJson['backup'][number]): PitrBackupSet {
  return {
    label: b.label, type: b.type, prior: b.prior,
    startedAt: new Date(b.timestamp.start * 1000).toISOString(), stoppedAt: new Date(b.timestamp.stop * 1000).toISOString(),
    databaseBytes: b.info.size, repositoryBytes: b.info.repository.delta, walStart: b.archive.start, walStop: b.archive.stop,
  };
}

/** pgbackrest info as one stanza's facts; a stanza in error is a pgbackrest failure (exit 14) naming it. */
export async function readStanzaInfo(t: PgBackRestTarget): Promise<Omit<PitrInfo, 'newestWalArchivedAt' | 'newestRecoverableTime'>> {
  const out = await runPgBackRest(t, 'info', ['--output=json']).catch((e) => { throw asPgBackRestOpsError(e); });
  // A wrongly decrypted info file puts raw control bytes into pgBackRest's JSON messages.
  const [s] = JSON.parse(out.replace(/[\x00-\x1f]/g, ' ')) as InfoJson[];
  // 2 = "no valid backups": a fresh stanza is fine to describe.
  if (s.status.code !== 0 && s.status.code !== 2) {
    const repoMsg = (s.repo ?? []).filter((r) => r.status.code !== 0).map((r) => `repo${r.key}: ${r.status.message}`).join('; ');
    const msg = `pgbackrest info: stanza ${t.stanza} is in error (${s.status.message})${repoMsg ? `: ${repoMsg}` : ''}`;
    throw new OpsError('pgbackrest', printable(msg).split('\n').slice(0, 3).join(' ') + pgBackRestHint(repoMsg, s.cipher !== 'none'));
  }
  const sets = s.backup.map(toSet);
  const archive = s.archive.find((a) => a.min && a.max) ?? null;
  return {
    stanza: s.name, cipher: s.cipher, sets,
    wal: archive ? { min: archive.min!, max: archive.max! } : null,
    archiveId: archive?.id ?? null,
    oldestRecoverableTime: sets.length ? sets[0].stoppedAt : null,
  };
}

export interface RepoEntry { name: string; size: number; time: number }

/** Archived WAL segments of an archive id, oldest first (repo-ls works on every repository type). */
export async function listArchivedSegments(t: PgBackRestTarget, archiveId: string): Promise<RepoEntry[]> {
  const out = await runPgBackRest(t, 'repo-ls', ['--output=json', '--recurse', `archive/${t.stanza}/${archiveId}`]).catch((e) => { throw asPgBackRestOpsError(e); });
  const entries = JSON.parse(out) as Record<string, { type: string; size?: number; time?: number }>;
  return Object.entries(entries)
    .filter(([name, e]) => e.type === 'file' && /\/[0-9A-F]{24}-[0-9a-f]{40}/.test(name))
    .map(([name, e]) => ({ name, size: e.size ?? 0, time: e.time ?? 0 }))
    .sort((a, b) => path.basename(a.name).localeCompare(path.basename(b.name)));
}

/** The time of the last COMMIT record in one WAL segment, via pg_waldump. */
async function lastCommitInSegment(segmentFile: string): Promise<string | null> {
  const r = await runToEnd(path.join(postgresBinDir(), 'pg_waldump'), [segmentFile], { env: { ...process.env, TZ: 'UTC' } });
  // pg_waldump exits non-zero at the end of valid records in a partial/switch segment; what it printed counts.
  const times = [...r.stdout.matchAll(/desc: COMMIT (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \w+)/g)].map((m) => m[1]);
  if (!times.length) return null;
  const last = times[times.length - 1].replace(' UTC', 'Z').replace(' ', 'T');
  const d = new Date(last);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

/**
 * Commit time of the newest transaction in the archive: the newest segments are fetched (decrypted by
 * pgBackRest), decompressed and read with pg_waldump, newest first, until one holds a commit.
 */
export async function newestArchivedCommit(t: PgBackRestTarget, archiveId: string, segments?: RepoEntry[], lookBack = 4): Promise<string | null> {
  const all = segments ?? await listArchivedSegments(t, archiveId);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-pitr-wal-'));
  try {
    chownTo(dir, 'postgres');
    for (const entry of all.slice(-lookBack).reverse()) {
      const file = await fetchSegmentBinary(t, archiveId, entry, dir);
      const at = await lastCommitInSegment(file);
      if (at) return at;
    }
    return null;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Run a program to its end without blocking the event loop (a drill checks keys on this thread meanwhile). */
function runToEnd(cmd: string, args: string[], o: SpawnOptions & { stdoutFd?: number } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const { stdoutFd, ...spawnOpts } = o;
    const child = spawn(cmd, args, { ...spawnOpts, stdio: ['ignore', stdoutFd ?? 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (b: Buffer) => out.push(b));
    child.stderr?.on('data', (b: Buffer) => err.push(b));
    child.once('error', (e) => resolve({ code: -1, stdout: '', stderr: e.message }));
    child.once('close', (code) => resolve({ code: code ?? 1, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') }));
  });
}

/** repo-get into a file (binary-safe), then decompress to the WAL segment name. */
async function fetchSegmentBinary(t: PgBackRestTarget, archiveId: string, entry: RepoEntry, dir: string): Promise<string> {
  const compressed = path.join(dir, path.basename(entry.name));
  const argv = pgBackRestArgv(t, 'repo-get', [`archive/${t.stanza}/${archiveId}/${entry.name}`]);
  const user = t.user ?? defaultPgBackRestUser();
  const fd = fs.openSync(compressed, 'w');
  try {
    const r = await runToEnd(t.bin ?? 'pgbackrest', argv, { stdoutFd: fd, cwd: '/', ...(user ? asUser(user) : {}) });
    if (r.code !== 0) throw asPgBackRestOpsError(new PgBackRestError('repo-get', r.code, r.stderr.trim()));
  } finally { fs.closeSync(fd); }
  const segment = path.join(dir, path.basename(entry.name).slice(0, 24));
  const ext = path.extname(entry.name);
  const d = ext === '.zst' ? await runToEnd('zstd', ['-dqf', compressed, '-o', segment])
    : ext === '.gz' ? await runToEnd('sh', ['-c', 'gzip -dc "$1" > "$2"', 'sh', compressed, segment])
      : await runToEnd('cp', [compressed, segment]);
  if (d.code !== 0) throw new Error(`cannot decompress ${entry.name}: ${d.stderr}`);
  return segment;
}

/** Everything `pitr info` shows. withNewestCommit reads the newest WAL (a few MiB fetched): the drill and --json want it. */
export async function readPitrInfo(t: PgBackRestTarget, o: { withNewestCommit?: boolean } = {}): Promise<PitrInfo> {
  return (await readPitrInfoAndSegments(t, o)).info;
}

/** readPitrInfo and the archived segments it listed (what newestArchivedCommit reads, as of this moment). */
export async function readPitrInfoAndSegments(t: PgBackRestTarget, o: { withNewestCommit?: boolean } = {}): Promise<{ info: PitrInfo; segments: RepoEntry[] }> {
  const s = await readStanzaInfo(t);
  const segments = s.archiveId ? await listArchivedSegments(t, s.archiveId) : [];
  const newest = segments.length ? Math.max(...segments.map((x) => x.time)) : 0;
  const newestCommit = o.withNewestCommit !== false && s.archiveId && segments.length ? await newestArchivedCommit(t, s.archiveId, segments) : null;
  return { info: { ...s, newestWalArchivedAt: newest ? new Date(newest * 1000).toISOString() : null, newestRecoverableTime: newestCommit }, segments };
}
