// Configs back in place, the old ones kept aside: the set's c2-configs object is unpacked next to
// C2's configs dir (<dir>.restore-<stamp>), then the live dir moves to <dir>.before-<stamp> and the
// unpacked one takes its name. Extra files (pubkey mode's C2 key file outside the configs dir) go
// back to their absolute paths, each old file kept as <file>.before-<stamp>. Every move is a rename,
// so a killed run leaves either the old or the new dir under the live name, and a re-run finishes.
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { OpsError } from '../../lib/cli/exit-codes.ts';
import { openDecryptedObject } from '../backup-sets.ts';
import type { BackupManifest } from '../manifest.ts';
import type { BackupTarget } from '../targets.ts';
import { opsErrorOf } from './logical-restore.ts';

export interface ConfigsRestoreResult {
  configsDir?: string;
  keptAside?: string;
  restoredFiles: number;
  extraFiles: { file: string; keptAside?: string }[];
  note?: string;
}

export const configsPaths = (dir: string, stamp: string) => ({ staging: `${dir}.restore-${stamp}`, aside: `${dir}.before-${stamp}` });

async function untarObject(target: BackupTarget, m: BackupManifest, name: string, identityFile: string, into: string): Promise<void> {
  fs.rmSync(into, { recursive: true, force: true });
  fs.mkdirSync(into, { recursive: true, mode: 0o700 });
  const src = openDecryptedObject(target, m, name, identityFile);
  await new Promise<void>((resolve, reject) => {
    // Owners and modes as stored (numeric): C2 in its container reads these files as its own user.
    const tar = spawn('tar', ['-x', '--numeric-owner', '--same-permissions', '-C', into, '-f', '-'], { stdio: ['pipe', 'ignore', 'pipe'] });
    let err = '';
    let srcErr: unknown;
    tar.stderr.on('data', (d) => { err += d; });
    tar.stdin.on('error', () => undefined);
    src.on('error', (e) => { srcErr = e; tar.kill('SIGTERM'); });
    src.pipe(tar.stdin);
    tar.on('close', (code) => (srcErr ? reject(opsErrorOf(srcErr)) : code === 0 ? resolve() : reject(new OpsError('internal', `tar -x of ${name} failed: ${err.trim()}`))));
  });
}

function countFiles(dir: string): number {
  let n = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) n += e.isDirectory() ? countFiles(path.join(dir, e.name)) : 1;
  return n;
}

/** Put the set's C2 configs dir in place; the live one is kept aside. Re-entrant after a kill. */
export async function restoreConfigsDir(target: BackupTarget, m: BackupManifest, identityFile: string, dir: string, stamp: string): Promise<ConfigsRestoreResult> {
  const object = m.objects.find((o) => o.kind === 'c2-configs');
  if (!object) return { restoredFiles: 0, extraFiles: [], note: `set ${m.setId} holds no C2 configs (the backup ran without --configs-dir): ${dir} left as it is` };
  const { staging, aside } = configsPaths(dir, stamp);
  const ready = `${staging}.complete`;
  // Done already (killed after the last rename, before the journal said so)?
  if (fs.existsSync(aside) && fs.existsSync(dir) && !fs.existsSync(staging)) { fs.rmSync(ready, { force: true }); return { configsDir: dir, keptAside: aside, restoredFiles: countFiles(dir), extraFiles: [] }; }
  if (fs.existsSync(ready) && !fs.existsSync(staging) && fs.existsSync(dir)) fs.rmSync(ready, { force: true });
  else {
    if (!fs.existsSync(ready)) {
      await untarObject(target, m, object.name, identityFile, staging);
      fs.writeFileSync(ready, '');
    }
    if (fs.existsSync(dir)) {
      if (fs.existsSync(aside)) throw new OpsError('refused', `${dir} and ${aside} both exist while ${staging} waits: move one of them by hand`);
      fs.renameSync(dir, aside);
    }
    fs.renameSync(staging, dir);
    fs.rmSync(ready, { force: true });
  }
  const hadLive = fs.existsSync(aside);
  return { configsDir: dir, ...(hadLive ? { keptAside: aside } : {}), restoredFiles: countFiles(dir), extraFiles: [] };
}

/** Extra files back to their absolute paths; an existing file is renamed <file>.before-<stamp> first. */
export async function restoreExtraFiles(target: BackupTarget, m: BackupManifest, identityFile: string, stagingRoot: string, stamp: string): Promise<ConfigsRestoreResult['extraFiles']> {
  const object = m.objects.find((o) => o.kind === 'extra-files');
  if (!object) return [];
  const staging = path.join(stagingRoot, `extra-files-${stamp}`);
  await untarObject(target, m, object.name, identityFile, staging);
  const out: ConfigsRestoreResult['extraFiles'] = [];
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(staging, rel), { withFileTypes: true })) {
      const r = path.join(rel, e.name);
      if (e.isDirectory()) { walk(r); continue; }
      const dest = path.join('/', r);
      const kept = `${dest}.before-${stamp}`;
      if (fs.existsSync(dest) && !fs.existsSync(kept)) fs.renameSync(dest, kept);
      fs.mkdirSync(path.dirname(dest), { recursive: true });
      fs.copyFileSync(path.join(staging, r), dest);
      const st = fs.statSync(path.join(staging, r));
      fs.chmodSync(dest, st.mode & 0o7777);
      try { fs.chownSync(dest, st.uid, st.gid); } catch { /* not root: keep ours */ }
      out.push({ file: dest, ...(fs.existsSync(kept) ? { keptAside: kept } : {}) });
    }
  };
  walk('.');
  fs.rmSync(staging, { recursive: true, force: true });
  return out;
}
