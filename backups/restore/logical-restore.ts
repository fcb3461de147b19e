// The logical-set source: the set's dump, checksum-verified and decrypted in one pass
// (backups/backup-sets.ts openDecryptedObject), streamed into pg_restore on the restore database.
// --no-owner plus --role: every object is created by C2's role, whatever role owned it in the dump
// (dumps of C2 run as postgres say OWNER TO postgres). The password goes by PGPASSWORD, never argv.
import { spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import { OpsError } from '../../lib/cli/exit-codes.ts';
import { openDecryptedObject } from '../backup-sets.ts';
import { pgDumpConnection } from '../create-backup.ts';
import type { BackupManifest } from '../manifest.ts';
import type { BackupTarget } from '../targets.ts';

export interface DumpRestoreOptions {
  target: BackupTarget;
  manifest: BackupManifest;
  identityFile: string;
  /** URL of the (empty) restore database, possibly with a password. */
  databaseUrl: string;
  role: string;
  onProgressLine?: (line: string) => void;
}

/** The backups' own errors are already on the one exit-code table (BackupError is an OpsError); anything else passes through. */
export function opsErrorOf(e: unknown): OpsError | unknown {
  return e;
}

export function dumpObjectOf(m: BackupManifest): string {
  const o = m.objects.find((x) => x.kind === 'postgres-dump');
  if (!o) throw new OpsError('integrity', `set ${m.setId} holds no postgres-dump object: it cannot restore a database`);
  return o.name;
}

/** Restore the set's dump; resolves when pg_restore finished and the object's checksum held to its end. */
export async function restoreDumpInto(opts: DumpRestoreOptions): Promise<{ seconds: number; tocEntries: number }> {
  const t0 = Date.now();
  const conn = pgDumpConnection(opts.databaseUrl);
  const src = openDecryptedObject(opts.target, opts.manifest, dumpObjectOf(opts.manifest), opts.identityFile);
  let entries = 0;
  await new Promise<void>((resolve, reject) => {
    const child = spawn('pg_restore', ['--no-owner', '--no-privileges', `--role=${opts.role}`, '--exit-on-error', '--verbose', '--no-password', `--dbname=${conn.url}`],
      { stdio: ['pipe', 'ignore', 'pipe'], env: conn.env });
    let tail = '';
    let partial = '';
    let srcErr: unknown;
    child.stderr.on('data', (d: Buffer) => {
      const lines = (partial + d.toString()).split('\n');
      partial = lines.pop() ?? '';
      for (const l of lines) {
        if (/^pg_restore: (creating|processing)/.test(l)) { entries++; opts.onProgressLine?.(l); } else tail = (tail + l + '\n').slice(-4000);
      }
    });
    child.stdin.on('error', () => undefined); // pg_restore died: its exit code says why
    (src as Readable).on('error', (e) => { srcErr = e; child.stdin.destroy(); child.kill('SIGTERM'); });
    src.pipe(child.stdin);
    child.on('error', (e) => reject(new OpsError('usage', `pg_restore cannot run (${e.message}): apt-get install postgresql-client`)));
    child.on('close', (code) => {
      if (srcErr) return reject(opsErrorOf(srcErr));
      if (code !== 0) return reject(new OpsError('internal', `pg_restore of set ${opts.manifest.setId} failed (exit ${code}): ${tail.trim().split('\n').slice(-3).join(' | ')}`));
      resolve();
    });
  });
  return { seconds: (Date.now() - t0) / 1000, tocEntries: entries };
}
