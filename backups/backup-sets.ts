// Reading back what backups wrote: list sets per target, open one, stream an object while checking
// its size and SHA-256, decrypt it with an age identity, verify a whole set, and the marker a restore
// drill leaves so retention keeps the newest set proven restorable.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import { PassThrough, Transform, type Readable, type TransformCallback } from 'node:stream';
import { BackupError } from './exit-codes.ts';
import { DRILL_MARKER_FILE, MANIFEST_FILE, parseManifest, type BackupManifest, type ManifestObject } from './manifest.ts';
import { drained, type BackupTarget } from './targets.ts';
import { createByteProgress } from '../lib/progress.ts';
import type { Logger } from '../lib/log.ts';

/** A stream that is not a terminal: progress off, no log given. */
const NO_TTY = { isTTY: false, write: () => true } as unknown as NodeJS.WriteStream;

export const SET_ID_PATTERN = /^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}$/;

/** A new set id: UTC time (sorts chronologically) plus randomness (two hosts never collide). */
export function newSetId(now = new Date()): string {
  const t = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  return `${t}-${crypto.randomBytes(3).toString('hex')}`;
}

export interface DrillVerification {
  setId: string;
  verifiedAt: string;
  /** Whatever the drill wants to keep (RTO, checks); stored as given. */
  report: Record<string, unknown>;
}

export type SetStatus = 'complete' | 'incomplete' | 'invalid';
export interface BackupSetListing {
  setId: string;
  target: string;
  status: SetStatus;
  /** complete: the manifest; invalid: why. */
  manifest?: BackupManifest;
  problem?: string;
  files: { name: string; size: number }[];
  bytes: number;
  drillVerified?: DrillVerification;
}

/** Every set folder on a target, newest first, with its manifest checked against the schema. */
export async function listBackupSets(target: BackupTarget): Promise<BackupSetListing[]> {
  const dirs = await target.listSetDirs();
  const out: BackupSetListing[] = [];
  for (const d of dirs) {
    if (!SET_ID_PATTERN.test(d.setId)) continue; // not ours
    const bytes = d.files.reduce((a, f) => a + f.size, 0);
    const base = { setId: d.setId, target: target.spec, files: d.files, bytes };
    if (!d.files.some((f) => f.name === MANIFEST_FILE)) { out.push({ ...base, status: 'incomplete', problem: 'no manifest (an interrupted run)' }); continue; }
    try {
      const manifest = await openBackupSet(target, d.setId);
      const drillVerified = await readDrillVerification(target, d.setId).catch(() => undefined);
      out.push({ ...base, status: 'complete', manifest, drillVerified });
    } catch (e) {
      out.push({ ...base, status: 'invalid', problem: (e as Error).message });
    }
  }
  return out.sort((a, b) => (a.setId < b.setId ? 1 : a.setId > b.setId ? -1 : 0));
}

/** Resolve `latest` (newest complete set) or check an id exists. */
export async function resolveSetId(target: BackupTarget, idOrLatest: string): Promise<string> {
  if (idOrLatest !== 'latest') return idOrLatest;
  const sets = await listBackupSets(target);
  const newest = sets.find((s) => s.status === 'complete');
  if (!newest) throw new BackupError('integrity', `target ${target.spec} holds no complete backup set (${sets.length} folders, none with a valid manifest)`);
  return newest.setId;
}

/** The validated manifest of one set. */
export async function openBackupSet(target: BackupTarget, setId: string): Promise<BackupManifest> {
  if (!SET_ID_PATTERN.test(setId)) throw new BackupError('config', `backup id ${setId} is not a set id (like 20260101T020000Z-a1b2c3) nor "latest"`);
  const where = `${target.spec}/${setId}/${MANIFEST_FILE}`;
  const text = await target.readText(setId, MANIFEST_FILE);
  if (text === undefined) throw new BackupError('integrity', `set ${setId} on ${target.spec} has no ${MANIFEST_FILE}: it is incomplete (an interrupted run) and is not a backup`);
  const m = parseManifest(text, where);
  if (m.setId !== setId) throw new BackupError('integrity', `manifest ${where} names set ${m.setId}, not its folder ${setId}`);
  return m;
}

function findObject(m: BackupManifest, name: string): ManifestObject {
  const o = m.objects.find((x) => x.name === name);
  if (!o) throw new BackupError('config', `set ${m.setId} has no object ${name} (objects: ${m.objects.map((x) => x.name).join(', ')})`);
  return o;
}

/** Passes bytes through and fails at the end unless size and SHA-256 match the manifest. */
class ChecksumGate extends Transform {
  private hash = crypto.createHash('sha256');
  private n = 0;
  constructor(private object: ManifestObject, private where: string) { super(); }
  _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
    this.hash.update(chunk);
    this.n += chunk.length;
    cb(null, chunk);
  }
  _flush(cb: TransformCallback) {
    const sha = this.hash.digest('hex');
    if (this.n !== this.object.size || sha !== this.object.sha256) {
      cb(new BackupError('integrity', `object ${this.object.name} in ${this.where} is damaged: ${this.n !== this.object.size ? `size ${this.n} bytes, manifest says ${this.object.size}` : `sha256 ${sha}, manifest says ${this.object.sha256}`}`,
        { object: this.object.name }));
    } else cb();
  }
}

/**
 * Stream an object's stored (encrypted) bytes. The stream errors at its end if the bytes differ from
 * the manifest, so consumers must treat their output as untrusted until the stream ends cleanly.
 */
export function readObject(target: BackupTarget, manifest: BackupManifest, name: string): Readable {
  const o = findObject(manifest, name);
  const gate = new ChecksumGate(o, `${target.spec}/${manifest.setId}`);
  const src = target.openRead(manifest.setId, name);
  src.on('error', (e) => gate.destroy(e instanceof BackupError ? e : new BackupError('target', `target ${target.spec}: reading ${manifest.setId}/${name}: ${e.message}`)));
  return src.pipe(gate);
}

/** Classify age's complaint: wrong key vs damaged data. */
function ageFailure(stderr: string, name: string, identityFile: string): BackupError {
  const msg = stderr.trim().split('\n').filter(Boolean).slice(-2).join(' | ');
  if (/no identity matched/i.test(stderr)) {
    return new BackupError('wrongIdentity', `object ${name} does not decrypt with identity file ${identityFile}: no identity in it matches the set's recipients; use the age identity whose public key is in the manifest's recipients`, { object: name });
  }
  if (/no identities found|failed to open|failed to read|identity file|malformed secret key/i.test(stderr)) {
    return new BackupError('config', `identity file ${identityFile} is unusable: ${msg}`, { object: name });
  }
  return new BackupError('integrity', `object ${name} does not decrypt (${msg}): it is damaged or truncated`, { object: name });
}

/**
 * Decrypted (and decompressed, for zstd objects) bytes of one object. Errors name the object:
 * checksum mismatch (integrity), wrong identity (wrongIdentity), damaged ciphertext (integrity).
 * pg_dump-zlib objects come out as the pg_dump archive itself (pg_restore reads its compression).
 */
export function openDecryptedObject(target: BackupTarget, manifest: BackupManifest, name: string, identityFile: string, opts: { ageBin?: string; log?: Logger } = {}): Readable {
  const o = findObject(manifest, name);
  const out = new PassThrough();
  const age = spawn(opts.ageBin ?? 'age', ['--decrypt', '-i', identityFile], { stdio: ['pipe', 'pipe', 'pipe'] });
  let ageErr = '';
  age.stderr.on('data', (d) => { ageErr += d; });
  const stages: ChildProcess[] = [age];
  let zstdErr = '';
  let last: Readable = age.stdout;
  if (o.compression === 'zstd') {
    const z = spawn('zstd', ['-d', '-q', '-c'], { stdio: [age.stdout, 'pipe', 'pipe'] });
    age.stdout.destroy();
    z.stderr.on('data', (d) => { zstdErr += d; });
    stages.push(z);
    last = z.stdout;
  }
  last.pipe(out, { end: false });
  const exits = stages.map((c) => new Promise<number | null>((res) => { c.on('error', () => res(-1)); c.on('close', (code) => res(code)); }));
  let readErr: Error | undefined;
  // Keep reading (and checksumming) to the end even if age gives up early, so a damaged object is
  // reported as damaged rather than as whatever age made of the damage.
  let ageAlive = true;
  age.stdin.on('error', () => { ageAlive = false; });
  age.stdin.on('close', () => { ageAlive = false; });
  // Progress of the download (and of whatever consumes the stream: a restore) against the stored size.
  const progress = createByteProgress({ what: `${name} ← ${target.spec}`, total: o.size, log: opts.log });
  let read = 0;
  const feeding = (async () => {
    for await (const chunk of readObject(target, manifest, name) as AsyncIterable<Buffer>) {
      read += chunk.length;
      progress.update(read);
      if (ageAlive && !age.stdin.write(chunk)) await drained(age.stdin).catch(() => { ageAlive = false; });
    }
    progress.done(read);
    if (ageAlive) age.stdin.end();
  })().catch((e) => { readErr = e; age.kill('SIGTERM'); });
  void (async () => {
    await feeding;
    const [ageCode, zCode] = await Promise.all(exits);
    if (readErr) out.destroy(readErr);
    else if (ageCode !== 0) out.destroy(ageFailure(ageErr, name, identityFile));
    else if (zCode !== undefined && zCode !== 0) out.destroy(new BackupError('integrity', `object ${name} decrypts but does not decompress: ${zstdErr.trim()}`, { object: name }));
    else out.end();
  })();
  out.on('close', () => { for (const c of stages) if (c.exitCode === null) c.kill('SIGTERM'); });
  return out;
}

export interface ObjectVerification { name: string; ok: boolean; storedBytes: number; plainBytes?: number; error?: string; errorKind?: string }
export interface SetVerification {
  setId: string;
  target: string;
  ok: boolean;
  objects: ObjectVerification[];
  /** The most severe error's kind, for the exit code. */
  errorKind?: BackupError['kind'];
}

/**
 * Re-read every object of a set: size and SHA-256 against the manifest, and (given an identity)
 * that it decrypts and decompresses to the end. Nothing is restored.
 */
export async function verifyBackupSet(target: BackupTarget, idOrLatest: string, opts: { identityFile?: string; ageBin?: string; log?: Logger } = {}): Promise<SetVerification> {
  const setId = await resolveSetId(target, idOrLatest);
  const manifest = await openBackupSet(target, setId);
  if (opts.identityFile && !fs.existsSync(opts.identityFile)) throw new BackupError('config', `--identity ${opts.identityFile} does not exist`);
  const objects: ObjectVerification[] = [];
  const rank: Record<string, number> = { wrongIdentity: 3, integrity: 2, target: 1 };
  let worst: BackupError['kind'] | undefined;
  for (const o of manifest.objects) {
    let plain = 0;
    const stream = opts.identityFile ? openDecryptedObject(target, manifest, o.name, opts.identityFile, opts) : readObject(target, manifest, o.name);
    // A decrypted dump must also read as a pg_dump archive: pg_restore --list parses its header and TOC.
    const toc = opts.identityFile && o.format === 'pg_dump-custom' ? startTocCheck() : undefined;
    // With an identity, openDecryptedObject reports the download; without, count the stored bytes here.
    const progress = createByteProgress({ what: `verify ${o.name} ← ${target.spec}`, total: o.size, log: opts.identityFile ? undefined : opts.log, stream: opts.identityFile ? NO_TTY : undefined });
    try {
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        plain += chunk.length;
        progress.update(plain);
        if (toc) await toc.write(chunk);
      }
      progress.done();
      const tocProblem = toc ? await toc.finish() : '';
      if (tocProblem) throw new BackupError('integrity', `object ${o.name} decrypts but is not a readable pg_dump archive: ${tocProblem}`, { object: o.name });
      objects.push({ name: o.name, ok: true, storedBytes: o.size, ...(opts.identityFile ? { plainBytes: plain } : {}) });
    } catch (e) {
      toc?.abort();
      const be = e instanceof BackupError ? e : new BackupError('internal', (e as Error).message);
      objects.push({ name: o.name, ok: false, storedBytes: o.size, error: be.message, errorKind: be.kind });
      if (!worst || (rank[be.kind] ?? 0) > (rank[worst] ?? 0)) worst = be.kind;
    }
  }
  return { setId, target: target.spec, ok: objects.every((o) => o.ok), objects, ...(worst ? { errorKind: worst } : {}) };
}

/** Feed a pg_dump custom archive to `pg_restore --list`; it stops reading after the TOC, the rest is dropped. */
function startTocCheck(): { write(chunk: Buffer): Promise<void>; finish(): Promise<string>; abort(): void } {
  const child = spawn('pg_restore', ['--list'], { stdio: ['pipe', 'ignore', 'pipe'] });
  let stderr = '';
  let open = true;
  child.stderr.on('data', (d) => { stderr += d; });
  child.stdin.on('error', () => { open = false; });
  const exit = new Promise<number | null>((resolve) => {
    child.on('error', (e) => { stderr += e.message; resolve(-1); });
    child.on('close', (code) => { open = false; resolve(code); });
  });
  return {
    async write(chunk) {
      if (open && !child.stdin.destroyed && !child.stdin.write(chunk)) await drained(child.stdin).catch(() => { open = false; });
    },
    async finish() {
      if (open) child.stdin.end();
      const code = await exit;
      return code === 0 ? '' : stderr.trim().split('\n').slice(-2).join(' | ') || `pg_restore exited ${code}`;
    },
    abort() { if (child.exitCode === null) child.kill('SIGTERM'); },
  };
}

/** Record that a restore drill proved this set restorable; retention then never deletes the newest such set. */
export async function markSetVerifiedByDrill(target: BackupTarget, setId: string, report: Record<string, unknown>): Promise<DrillVerification> {
  await openBackupSet(target, setId); // only complete, valid sets can be drill-verified
  const marker: DrillVerification = { setId, verifiedAt: new Date().toISOString(), report };
  await target.writeText(setId, DRILL_MARKER_FILE, JSON.stringify(marker, null, 2) + '\n');
  return marker;
}

export async function readDrillVerification(target: BackupTarget, setId: string): Promise<DrillVerification | undefined> {
  const text = await target.readText(setId, DRILL_MARKER_FILE);
  if (text === undefined) return undefined;
  const doc = JSON.parse(text) as DrillVerification;
  if (doc.setId !== setId || typeof doc.verifiedAt !== 'string') return undefined;
  return doc;
}

/** When a set was started, from its id (UTC). */
export function setStartedAt(setId: string): Date | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z/.exec(setId);
  return m ? new Date(Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6])) : undefined;
}

/**
 * Remove set folders that have no manifest (interrupted runs). Call only while holding the target's
 * lease. Sets younger than `olderThanSeconds` and the ones in `keep` stay: a writer that holds no
 * lease (an older toolkit) may still be filling them.
 */
export async function removeIncompleteSets(target: BackupTarget, opts: { dryRun?: boolean; olderThanSeconds?: number; keep?: string[]; now?: Date } = {}): Promise<string[]> {
  const removed: string[] = [];
  const now = (opts.now ?? new Date()).getTime();
  for (const s of await listBackupSets(target)) {
    if (s.status !== 'incomplete' || opts.keep?.includes(s.setId)) continue;
    const started = setStartedAt(s.setId)?.getTime() ?? 0;
    if (opts.olderThanSeconds && now - started < opts.olderThanSeconds * 1000) continue;
    if (!opts.dryRun) await target.removeSet(s.setId);
    removed.push(s.setId);
  }
  return removed;
}

export interface TargetVerification {
  target: string;
  ok: boolean;
  sets: SetVerification[];
  /** Sets whose manifest is missing (interrupted or still being written) or damaged. */
  skipped: { setId: string; status: SetStatus; problem?: string }[];
  errorKind?: BackupError['kind'];
}

/**
 * `verify --all`: every complete set of a target, the way pgBackRest's verify checks a whole repository.
 * Damaged manifests count as failures; sets without a manifest are listed, not failed (a live run may own them).
 */
export async function verifyAllBackupSets(target: BackupTarget, opts: { identityFile?: string; ageBin?: string; log?: Logger; onSet?: (v: SetVerification) => void } = {}): Promise<TargetVerification> {
  const listing = await listBackupSets(target);
  const sets: SetVerification[] = [];
  const rank: Record<string, number> = { wrongIdentity: 3, integrity: 2, target: 1 };
  let worst: BackupError['kind'] | undefined = listing.some((s) => s.status === 'invalid') ? 'integrity' : undefined;
  for (const s of listing.filter((x) => x.status === 'complete')) {
    const v = await verifyBackupSet(target, s.setId, opts);
    sets.push(v);
    opts.onSet?.(v);
    if (v.errorKind && (!worst || (rank[v.errorKind] ?? 0) > (rank[worst] ?? 0))) worst = v.errorKind;
  }
  if (!sets.length && !worst) worst = 'integrity';
  return {
    target: target.spec, ok: !worst, sets,
    skipped: listing.filter((x) => x.status !== 'complete').map((x) => ({ setId: x.setId, status: x.status, problem: x.problem })),
    ...(worst ? { errorKind: worst } : {}),
  };
}
