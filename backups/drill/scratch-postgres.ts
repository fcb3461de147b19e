// The drill's scratch PostgreSQL, started from a cached, freshly initdb'ed data directory: copying a
// template is ~10x faster than initdb, which counts in the drill's RTO. The template is made once per
// PostgreSQL version (atomically, so concurrent drills never see half of one) and never started itself.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { initPostgresDataDir, postgresBinDir, startThrowawayPostgres, type ThrowawayPostgres, type ThrowawayPostgresOptions } from '../../lib/servers/postgres.ts';
import { chownTo } from '../../lib/servers/daemon.ts';
import { e4opsCacheDir } from '../../lib/cache-dir.ts';

/** Path of the template data directory for this PostgreSQL version, created on first use. */
export function scratchTemplateDataDir(): string {
  const binDir = postgresBinDir();
  const version = spawnSync(path.join(binDir, 'postgres'), ['--version'], { encoding: 'utf8' }).stdout.trim().replace(/[^\w.]+/g, '_');
  const dir = e4opsCacheDir('pg-template', version);
  if (fs.existsSync(path.join(dir, 'PG_VERSION'))) return dir;
  fs.mkdirSync(path.dirname(dir), { recursive: true });
  // initdb runs as user postgres, which cannot enter root's home: build in the temp folder, then copy in.
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-pgtemplate-'));
  const staging = `${dir}.tmp-${process.pid}`;
  try {
    chownTo(work, 'postgres');
    const data = path.join(work, 'data');
    initPostgresDataDir(data, binDir);
    fs.cpSync(data, staging, { recursive: true });
    try { fs.renameSync(staging, dir); } catch { /* another drill made it first */ }
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
    fs.rmSync(staging, { recursive: true, force: true });
  }
  return dir;
}

/** Start a scratch PostgreSQL from a copy of the template (falls back to initdb if copying fails). */
export async function startScratchPostgres(opts: Omit<ThrowawayPostgresOptions, 'dataDir'>, onDataDir?: (dir: string) => void): Promise<{ server: ThrowawayPostgres; dataDir?: string }> {
  let dataDir: string | undefined;
  try {
    const template = scratchTemplateDataDir();
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-drill-pgdata-'));
    onDataDir?.(dataDir); // registered for clean-up before anything can interrupt
    fs.cpSync(template, dataDir, { recursive: true });
    fs.chmodSync(dataDir, 0o700); // PostgreSQL refuses a data directory others can read
  } catch {
    if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
    dataDir = undefined;
  }
  try {
    return { server: await startThrowawayPostgres({ ...opts, ...(dataDir ? { dataDir } : {}) }), dataDir };
  } catch (e) {
    if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
    throw e;
  }
}
