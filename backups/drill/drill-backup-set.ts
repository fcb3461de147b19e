// The logical drill's source steps: open the set (manifest), then stream every object through the
// checksum gate and age into its place (the dump straight into pg_restore, tar objects unpacked).
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import { redactUrl } from '../../lib/log.ts';
import { openTarget, type BackupTarget } from '../targets.ts';
import { openBackupSet, openDecryptedObject, resolveSetId } from '../backup-sets.ts';
import { BackupError } from '../exit-codes.ts';
import type { BackupManifest } from '../manifest.ts';
import { failCheck, lap, type DrillRun } from './drill-run.ts';

/**
 * pg_restore builds post-data in this order: primary keys and unique constraints (ALTER TABLE, ACCESS
 * EXCLUSIVE locks), then indexes (SHARE locks), then foreign keys (SHARE ROW EXCLUSIVE). From the first
 * index on, readers neither wait for the restore nor hold it up, so the read-only checks (keys opened
 * in this process, counts in PostgreSQL) use the second core while PostgreSQL builds indexes and
 * validates foreign keys. Started earlier, a reader would hold up an ADD PRIMARY KEY and stall the
 * restore, and the key opening would starve the dump stream this process relays to pg_restore.
 */
export const READ_ONLY_CHECKS_MAY_START = /creating (?:INDEX|FK CONSTRAINT) /;

export interface OpenedSet { target: BackupTarget; setId: string; manifest: BackupManifest }

/** Resolve and open the set; a missing or damaged one is a failed backup-set check (undefined). */
export async function openDrillSet(run: DrillRun, o: { target: string; backup: string; rcloneConfig?: string }): Promise<OpenedSet | undefined> {
  const target = openTarget(o.target, { rcloneConfig: o.rcloneConfig });
  try {
    const setId = await resolveSetId(target, o.backup);
    const manifest = await openBackupSet(target, setId);
    run.checks.push({ name: 'backup-set', ok: true, detail: `set ${setId} on ${target.spec}: manifest valid, ${manifest.objects.length} objects, taken ${manifest.startedAt}` });
    run.extra.backupTakenAt = manifest.startedAt;
    return { target, setId, manifest };
  } catch (e) {
    failCheck(run, 'backup-set', e);
    return undefined;
  }
}

/** Stream a decrypted object into a program's stdin; the object's own error (checksum, identity) wins over the program's. */
export function pipeInto(src: Readable, cmd: string, args: string[], what: string, onStderrLine?: (line: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    let partial = '';
    let srcErr: Error | undefined;
    child.stderr.on('data', (d) => {
      const lines = (partial + d).split('\n');
      partial = lines.pop() ?? '';
      for (const l of lines) {
        onStderrLine?.(l);
        if (!onStderrLine || /error|fatal|warning/i.test(l)) stderr = (stderr + l + '\n').slice(-4000);
      }
    });
    child.stdin.on('error', () => undefined); // the child died; its exit code tells
    src.on('error', (e) => { srcErr = e; child.stdin.destroy(); child.kill('SIGTERM'); });
    src.pipe(child.stdin);
    child.on('error', (e) => reject(new BackupError('config', `${cmd} cannot run (${e.message}): apt-get install postgresql-client tar`)));
    child.on('close', (code) => {
      if (srcErr) return reject(srcErr);
      if (code !== 0) return reject(new Error(`${what} failed (exit ${code}): ${stderr.trim().split('\n').slice(-3).join(' | ')}`));
      resolve();
    });
  });
}

export interface RestoreSetInput {
  set: OpenedSet;
  identityFile: string;
  dbUrl: string;
  /** Tar objects unpack under workDir/<kind>. */
  workDir: string;
  /** Called when pg_restore reaches its first index: the read-only checks may start. */
  onIndexPhase: () => void;
}

/** One object into its place. */
async function restoreObject(i: RestoreSetInput, o: BackupManifest['objects'][number], src: Readable, run: DrillRun, since: number): Promise<void> {
  if (o.kind === 'postgres-dump') {
    // pg_restore --verbose names each step: the read-only checks start when it reaches the first index.
    await pipeInto(src, 'pg_restore', ['--no-owner', '--no-privileges', '--exit-on-error', '--verbose', '--dbname', i.dbUrl], `pg_restore of ${o.name}`, (line) => {
      if (READ_ONLY_CHECKS_MAY_START.test(line)) i.onIndexPhase();
    });
    lap(run, 'restore', since);
  } else if (o.format === 'tar') {
    const dir = path.join(i.workDir, o.kind);
    fs.mkdirSync(dir, { recursive: true });
    await pipeInto(src, 'tar', ['-x', '--no-same-owner', '-C', dir, '-f', '-'], `tar -x of ${o.name}`);
  } else {
    for await (const _ of src) { /* read to the end: the checksum gate and age verify it */ }
  }
}

/**
 * Every object, checksum-verified and decrypted in one pass, the dump first. Records the checksums,
 * decrypt and restore checks; returns whether the database was restored (the checks may go on).
 */
export async function restoreSetObjects(run: DrillRun, i: RestoreSetInput): Promise<boolean> {
  const m = i.set.manifest;
  const since = Date.now();
  let restored = false;
  let wrongIdentity = false;
  const objectErrors: string[] = [];
  for (const o of [...m.objects].sort((a, b) => (a.kind === 'postgres-dump' ? -1 : b.kind === 'postgres-dump' ? 1 : 0))) {
    const src = openDecryptedObject(i.set.target, m, o.name, i.identityFile, { log: run.log }); // progress: download + restore
    try {
      await restoreObject(i, o, src, run, since);
      if (o.kind === 'postgres-dump') restored = true;
    } catch (e) {
      const be = e as BackupError;
      if (be?.kind === 'wrongIdentity') wrongIdentity = true;
      objectErrors.push(be?.message ?? String(e));
      src.destroy();
    }
  }
  if (objectErrors.length) {
    failCheck(run, wrongIdentity ? 'decrypt' : 'checksums', new Error(objectErrors.join('; ')));
    if (!restored) return false;
  } else {
    run.checks.push({ name: 'checksums', ok: true, detail: `all ${m.objects.length} objects match their manifest size and SHA-256` });
    run.checks.push({ name: 'decrypt', ok: true, detail: `every object decrypts with ${i.identityFile}` });
  }
  if (!restored) { failCheck(run, 'restore', new Error(`set ${m.setId} has no postgres-dump object`)); return false; }
  run.checks.push({ name: 'restore', ok: true, detail: `pg_restore into ${redactUrl(i.dbUrl)} in ${run.timings.restore?.toFixed(1)} s` });
  return true;
}
