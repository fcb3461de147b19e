// Where backup sets live: a local directory or any rclone remote (`remote:bucket/path`, which covers
// S3, GCS, Azure, SFTP). Layout on every target: <root>/<setId>/<object>, manifest.json written last.
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { PassThrough, Writable, type Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import os from 'node:os';
import { BackupError } from './exit-codes.ts';
import { redactUrl } from '../lib/log.ts';
import { isMountedPoint, unmountedMountPointFor } from '../lib/mounts.ts';

/** Written by `e4ops backup init` (or --create-target) at a target's root: this directory is a backup target. */
export const TARGET_MARKER_FILE = 'e4ops-target.json';

export type TargetReadiness = 'ready' | 'created' | 'adopted';

export interface TargetFile { name: string; size: number }
export interface TargetSetDir { setId: string; files: TargetFile[] }

export interface ObjectWriter {
  stream: Writable;
  /** Resolves once the object is durably stored; rejects with a BackupError('target'). */
  done: Promise<void>;
  /** Give up on this object (e.g. the source failed). */
  abort(): void;
}

export interface BackupTarget {
  /** The --target value as given, for messages. */
  spec: string;
  kind: 'local' | 'rclone';
  /** Create the set's folder (fails early on read-only or missing targets). */
  prepareSet(setId: string): Promise<void>;
  openWrite(setId: string, name: string): ObjectWriter;
  /** Stream an object's stored bytes; the stream errors if the object cannot be read. */
  openRead(setId: string, name: string): Readable;
  /** Whole small file (manifest, marker) or undefined when absent. */
  readText(setId: string, name: string): Promise<string | undefined>;
  /** Small file, replaced atomically where the storage allows. */
  writeText(setId: string, name: string, text: string): Promise<void>;
  listSetDirs(): Promise<TargetSetDir[]>;
  removeSet(setId: string): Promise<void>;
  /** A small file at the target's root (lease, marker), or undefined when absent. */
  readRootText(name: string): Promise<string | undefined>;
  /** Replace a root file (atomically where the storage allows). */
  writeRootText(name: string, text: string): Promise<void>;
  /** Create a root file only if absent: false when it exists. Remotes without exclusive create write and read back. */
  createRootText(name: string, text: string): Promise<boolean>;
  removeRootText(name: string): Promise<void>;
  /**
   * Before a run writes: refuse a missing or never-initialised local directory (an unmounted mount point
   * is named) unless `create`; creates and marks it with `create`. Remotes: mkdir + marker with `create`.
   */
  ensureReady(opts?: { create?: boolean; fstab?: string; dryRun?: boolean }): Promise<TargetReadiness>;
}

export interface TargetOptions {
  /** rclone config file (else RCLONE_CONFIG from the environment / rclone's default). */
  rcloneConfig?: string;
  rcloneBin?: string;
}

function markerText(): string {
  return JSON.stringify({ kind: 'e4ops-backup-target', createdAt: new Date().toISOString(), host: os.hostname() }) + '\n';
}

const initHint = (spec: string) => `run e4ops backup init --target ${spec} once (or give --create-target)`;

/** `:s3,secret_access_key=X:bucket` → `:s3,secret_access_key=***:bucket`: every parameter value hidden. */
export function redactTargetSpec(spec: string): string {
  return spec.replace(/([,{]\s*[\w-]+\s*=\s*)("[^"]*"|'[^']*'|[^,:}]*)/g, '$1***');
}

/** `remote:path` (rclone) vs a local path. Local paths must be absolute or start with ./ or ../ */
export function openTarget(spec: string, opts: TargetOptions = {}): BackupTarget {
  if (!spec || !spec.trim()) throw new BackupError('config', '--target is empty: give a directory (/var/backups/c2) or an rclone remote (offsite:bucket/c2)');
  // rclone connection strings (:backend,key=value:path or remote,key=value:path) carry credentials on the command line.
  if (/^:?[\w .-]*,[\w-]+\s*=/.test(spec) || /^:[\w-]+:/.test(spec)) {
    throw new BackupError('config', `--target ${redactTargetSpec(spec)}: rclone connection strings are refused (their parameters, credentials included, would show in argv, logs and printed units). `
      + 'Define a named remote in an rclone config file (rclone config; mode 0600) and give --target NAME:path with --rclone-config FILE');
  }
  const m = /^([A-Za-z0-9_][A-Za-z0-9_ .-]*):(.*)$/.exec(spec);
  if (m && !spec.startsWith('/') && !spec.startsWith('.')) return new RcloneTarget(spec, m[1], m[2], opts);
  if (!path.isAbsolute(spec) && !spec.startsWith('./') && !spec.startsWith('../')) {
    throw new BackupError('config', `--target ${spec}: use an absolute directory, ./relative path, or remote:path for an rclone remote`);
  }
  return new LocalTarget(spec);
}

/** Turn a filesystem error into a target error an operator can act on. */
export function describeFsError(e: NodeJS.ErrnoException, target: string, what: string): BackupError {
  const hint: Record<string, string> = {
    ENOSPC: 'the target is full (no space left on device): free space or prune old sets',
    EDQUOT: 'the target is over quota: free space or prune old sets',
    EROFS: 'the target is read-only: remount it read-write or pick another --target',
    EACCES: 'permission denied: fix ownership/permissions of the target directory',
    EPERM: 'operation not permitted on the target',
    ENOENT: 'the target path does not exist: create it or fix --target',
    ENOTDIR: 'a path component of the target is not a directory',
  };
  const reason = hint[e.code ?? ''] ?? e.message;
  return new BackupError('target', `target ${target}: ${what}: ${reason} (${e.code ?? 'error'})`, { target, code: e.code });
}

class LocalTarget implements BackupTarget {
  kind = 'local' as const;
  root: string;
  constructor(public spec: string) {
    this.root = path.resolve(spec);
  }
  private p(setId: string, name?: string) {
    return name ? path.join(this.root, setId, name) : path.join(this.root, setId);
  }
  async prepareSet(setId: string) {
    try {
      await fs.promises.mkdir(this.p(setId), { recursive: true });
      // mkdir on an existing folder succeeds even on a read-only mount: probe with a real write.
      const probe = path.join(this.p(setId), '.write-probe');
      await fs.promises.writeFile(probe, '');
      await fs.promises.rm(probe);
    } catch (e) {
      let err = e as NodeJS.ErrnoException;
      // Recursive mkdir reports ENOENT on a read-only mount; a plain mkdir tells the real reason.
      if (err.code === 'ENOENT' && fs.existsSync(this.root)) {
        try { await fs.promises.mkdir(this.p(setId)); } catch (e2) { err = e2 as NodeJS.ErrnoException; }
      }
      throw describeFsError(err, this.spec, `cannot create set folder ${setId}`);
    }
  }
  openWrite(setId: string, name: string): ObjectWriter {
    const file = this.p(setId, name);
    const stream = fs.createWriteStream(file, { flags: 'wx' });
    let aborted = false;
    const done = (async () => {
      try {
        await finished(stream);
        if (aborted) return;
        const fd = await fs.promises.open(file, 'r');
        try { await fd.sync(); } finally { await fd.close(); }
      } catch (e) {
        throw describeFsError(e as NodeJS.ErrnoException, this.spec, `writing ${setId}/${name}`);
      }
    })();
    done.catch(() => undefined);
    return { stream, done, abort: () => { aborted = true; stream.destroy(); } };
  }
  openRead(setId: string, name: string): Readable {
    return fs.createReadStream(this.p(setId, name));
  }
  async readText(setId: string, name: string) {
    try { return await fs.promises.readFile(this.p(setId, name), 'utf8'); } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw describeFsError(e as NodeJS.ErrnoException, this.spec, `reading ${setId}/${name}`);
    }
  }
  async writeText(setId: string, name: string, text: string) {
    const file = this.p(setId, name);
    const tmp = `${file}.tmp-${process.pid}`;
    try {
      const fd = await fs.promises.open(tmp, 'w');
      try { await fd.writeFile(text); await fd.sync(); } finally { await fd.close(); }
      await fs.promises.rename(tmp, file);
    } catch (e) {
      await fs.promises.rm(tmp, { force: true }).catch(() => undefined);
      throw describeFsError(e as NodeJS.ErrnoException, this.spec, `writing ${setId}/${name}`);
    }
  }
  async listSetDirs(): Promise<TargetSetDir[]> {
    let entries: fs.Dirent[];
    try { entries = await fs.promises.readdir(this.root, { withFileTypes: true }); } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw describeFsError(e as NodeJS.ErrnoException, this.spec, 'listing sets');
    }
    const out: TargetSetDir[] = [];
    for (const d of entries) {
      if (!d.isDirectory()) continue;
      const files: TargetFile[] = [];
      for (const f of await fs.promises.readdir(path.join(this.root, d.name), { withFileTypes: true })) {
        if (f.isFile()) files.push({ name: f.name, size: (await fs.promises.stat(path.join(this.root, d.name, f.name))).size });
      }
      out.push({ setId: d.name, files });
    }
    return out;
  }
  async removeSet(setId: string) {
    try { await fs.promises.rm(this.p(setId), { recursive: true, force: true }); } catch (e) {
      throw describeFsError(e as NodeJS.ErrnoException, this.spec, `removing ${setId}`);
    }
  }
  async readRootText(name: string) {
    try { return await fs.promises.readFile(path.join(this.root, name), 'utf8'); } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw describeFsError(e as NodeJS.ErrnoException, this.spec, `reading ${name}`);
    }
  }
  async writeRootText(name: string, text: string) {
    const file = path.join(this.root, name);
    const tmp = `${file}.tmp-${process.pid}`;
    try {
      await fs.promises.writeFile(tmp, text, { mode: 0o600 });
      await fs.promises.rename(tmp, file);
    } catch (e) {
      await fs.promises.rm(tmp, { force: true }).catch(() => undefined);
      throw describeFsError(e as NodeJS.ErrnoException, this.spec, `writing ${name}`);
    }
  }
  async createRootText(name: string, text: string) {
    try {
      await fs.promises.writeFile(path.join(this.root, name), text, { flag: 'wx', mode: 0o600 });
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw describeFsError(e as NodeJS.ErrnoException, this.spec, `creating ${name}`);
    }
  }
  async removeRootText(name: string) {
    await fs.promises.rm(path.join(this.root, name), { force: true }).catch(() => undefined);
  }
  async ensureReady(opts: { create?: boolean; fstab?: string; dryRun?: boolean } = {}): Promise<TargetReadiness> {
    const unmounted = unmountedMountPointFor(this.root, { fstab: opts.fstab });
    if (unmounted) {
      throw new BackupError('target', `target ${this.spec} lies under ${unmounted}, which ${opts.fstab ?? '/etc/fstab'} declares but is not mounted: mount it (mount ${unmounted}) and re-run; nothing was written to the disk underneath`, { target: this.spec, mountPoint: unmounted });
    }
    if ((await this.readRootText(TARGET_MARKER_FILE)) !== undefined) return 'ready';
    if (!fs.existsSync(this.root)) {
      if (!opts.create) throw new BackupError('target', `target ${this.spec} does not exist: if it is a mount point or network share, mount it; if it is new, ${initHint(this.spec)}`, { target: this.spec });
      if (opts.dryRun) return 'created';
      try { fs.mkdirSync(this.root, { recursive: true }); } catch (e) { throw describeFsError(e as NodeJS.ErrnoException, this.spec, 'creating the target directory'); }
      await this.writeRootText(TARGET_MARKER_FILE, markerText());
      return 'created';
    }
    const holdsSets = fs.readdirSync(this.root).some((n) => /^\d{8}T\d{6}Z-/.test(n));
    // A directory that already holds sets, or a mounted volume's root, is a target in use: mark it (best effort).
    if (holdsSets || isMountedPoint(this.root) || opts.create) {
      if (opts.dryRun) return 'adopted';
      await this.writeRootText(TARGET_MARKER_FILE, markerText()).catch(() => undefined);
      return 'adopted';
    }
    throw new BackupError('target', `target ${this.spec} is an empty directory without the e4ops marker (${TARGET_MARKER_FILE}): if a filesystem should be mounted there, mount it; if it is new, ${initHint(this.spec)}`, { target: this.spec });
  }
}

interface RcloneRun { code: number | null; stdout: string; stderr: string }

class RcloneTarget implements BackupTarget {
  kind = 'rclone' as const;
  constructor(public spec: string, public remote: string, public root: string, private opts: TargetOptions) {}
  private p(setId?: string, name?: string) {
    const parts = [this.root.replace(/\/+$/, ''), setId, name].filter((x) => x !== undefined && x !== '');
    return `${this.remote}:${parts.join('/')}`;
  }
  private env() {
    return this.opts.rcloneConfig ? { ...process.env, RCLONE_CONFIG: this.opts.rcloneConfig } : process.env;
  }
  private spawn(args: string[]) {
    return spawn(this.opts.rcloneBin ?? 'rclone', args, { env: this.env(), stdio: ['pipe', 'pipe', 'pipe'] });
  }
  private run(args: string[], input?: string): Promise<RcloneRun> {
    return new Promise((resolve, reject) => {
      const child = this.spawn(args);
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => { stdout += d; });
      child.stderr.on('data', (d) => { stderr += d; });
      child.on('error', (e) => reject(new BackupError('config', `cannot run rclone for target ${this.spec}: ${e.message} (apt-get install rclone)`)));
      child.on('close', (code) => resolve({ code, stdout, stderr }));
      child.stdin.on('error', () => undefined);
      child.stdin.end(input ?? '');
    });
  }
  private fail(what: string, r: RcloneRun): BackupError {
    const msg = redactUrl(r.stderr.trim().split('\n').filter(Boolean).slice(-3).join(' | '));
    const full = /no space left|quota|insufficient storage/i.test(msg) ? ' (the remote is full: free space or prune old sets)'
      : /read-only file system|permission denied|access denied|forbidden/i.test(msg) ? ' (the remote refuses writes: check its permissions / read-only state)' : '';
    return new BackupError('target', `target ${this.spec}: ${what}: rclone exited ${r.code}: ${msg}${full}`, { target: this.spec });
  }
  async prepareSet(setId: string) {
    const r = await this.run(['mkdir', this.p(setId)]);
    if (r.code !== 0) throw this.fail(`cannot create set folder ${setId}`, r);
  }
  openWrite(setId: string, name: string): ObjectWriter {
    const child = this.spawn(['rcat', this.p(setId, name)]);
    let stderr = '';
    child.stderr.on('data', (d) => { stderr += d; });
    child.stdout.resume();
    let aborted = false;
    const done = new Promise<void>((resolve, reject) => {
      child.on('error', (e) => reject(new BackupError('config', `cannot run rclone for target ${this.spec}: ${e.message}`)));
      child.on('close', (code) => {
        if (code === 0 || aborted) resolve();
        else reject(this.fail(`writing ${setId}/${name}`, { code, stdout: '', stderr }));
      });
    });
    done.catch(() => undefined);
    return { stream: child.stdin, done, abort: () => { aborted = true; child.kill('SIGTERM'); } };
  }
  openRead(setId: string, name: string): Readable {
    const child = this.spawn(['cat', this.p(setId, name)]);
    child.stdin.end();
    const out = new PassThrough();
    let stderr = '';
    child.stderr.on('data', (d) => { stderr += d; });
    child.stdout.pipe(out, { end: false });
    child.on('error', (e) => out.destroy(new BackupError('config', `cannot run rclone: ${e.message}`)));
    child.on('close', (code) => {
      if (code === 0) out.end();
      else out.destroy(this.fail(`reading ${setId}/${name}`, { code, stdout: '', stderr }));
    });
    out.on('close', () => { if (child.exitCode === null) child.kill('SIGTERM'); });
    return out;
  }
  async readText(setId: string, name: string) {
    const r = await this.run(['cat', this.p(setId, name)]);
    if (r.code === 0) return r.stdout;
    if (r.code === 3 || r.code === 4 || /not found/i.test(r.stderr)) return undefined;
    throw this.fail(`reading ${setId}/${name}`, r);
  }
  async writeText(setId: string, name: string, text: string) {
    const r = await this.run(['rcat', this.p(setId, name)], text);
    if (r.code !== 0) throw this.fail(`writing ${setId}/${name}`, r);
  }
  async listSetDirs(): Promise<TargetSetDir[]> {
    const r = await this.run(['lsjson', '-R', '--max-depth', '2', this.p()]);
    if (r.code === 3 || (r.code !== 0 && /directory not found/i.test(r.stderr))) return [];
    if (r.code !== 0) throw this.fail('listing sets', r);
    const items = JSON.parse(r.stdout || '[]') as { Path: string; Size: number; IsDir: boolean }[];
    const sets = new Map<string, TargetFile[]>();
    for (const it of items) {
      const [dir, file] = it.Path.split('/');
      if (!file) { if (it.IsDir && !sets.has(dir)) sets.set(dir, []); continue; }
      if (it.IsDir) continue;
      if (!sets.has(dir)) sets.set(dir, []);
      sets.get(dir)!.push({ name: file, size: it.Size });
    }
    return [...sets].map(([setId, files]) => ({ setId, files }));
  }
  async removeSet(setId: string) {
    const r = await this.run(['purge', this.p(setId)]);
    if (r.code !== 0 && r.code !== 3) throw this.fail(`removing ${setId}`, r);
  }
  private rootFile(name: string) {
    return `${this.remote}:${[this.root.replace(/\/+$/, ''), name].filter(Boolean).join('/')}`;
  }
  async readRootText(name: string) {
    const r = await this.run(['cat', this.rootFile(name)]);
    if (r.code === 0) return r.stdout;
    if (r.code === 3 || r.code === 4 || /not found/i.test(r.stderr)) return undefined;
    throw this.fail(`reading ${name}`, r);
  }
  async writeRootText(name: string, text: string) {
    const r = await this.run(['rcat', this.rootFile(name)], text);
    if (r.code !== 0) throw this.fail(`writing ${name}`, r);
  }
  async createRootText(name: string, text: string) {
    // Object stores have no exclusive create: write only when absent, then read back; a concurrent
    // writer that won shows up in the read-back (and the lease's heartbeat re-checks it).
    if ((await this.readRootText(name)) !== undefined) return false;
    await this.writeRootText(name, text);
    return (await this.readRootText(name)) === text;
  }
  async removeRootText(name: string) {
    await this.run(['deletefile', this.rootFile(name)]);
  }
  async ensureReady(opts: { create?: boolean; dryRun?: boolean } = {}): Promise<TargetReadiness> {
    if (!opts.create || opts.dryRun) return 'ready';
    const r = await this.run(['mkdir', this.p()]);
    if (r.code !== 0) throw this.fail('creating the target folder', r);
    if ((await this.readRootText(TARGET_MARKER_FILE)) !== undefined) return 'ready';
    await this.writeRootText(TARGET_MARKER_FILE, markerText());
    return 'created';
  }
}

/** Wait until a writable has room again (or fails). */
export function drained(stream: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    const onDrain = () => { cleanup(); resolve(); };
    const onErr = (e: Error) => { cleanup(); reject(e); };
    const onClose = () => { cleanup(); reject(new Error('stream closed')); };
    const cleanup = () => { stream.off('drain', onDrain); stream.off('error', onErr); stream.off('close', onClose); };
    stream.on('drain', onDrain);
    stream.on('error', onErr);
    stream.on('close', onClose);
  });
}
