// Issue 11, drill side: a set taken without --passphrase-file passes when every key opens (with a
// warning); a short passphrase file is a usage error (exit 2) as in backup; a drill killed with SIGKILL
// leaves its scratch PostgreSQL written down in a state file, and `e4ops drill --cleanup` or the next
// drill stops it and removes its folders.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { startThrowawayPostgres, type ThrowawayPostgres } from '../../lib/servers/postgres.ts';
import { seedC2Database } from '../../lib/c2-db/seed-database.ts';
import { deriveDbKey, sealDbValue } from '../../lib/e4/keystore.ts';
import { runBackup } from '../../backups/create-backup.ts';
import { runRestoreDrill } from '../../backups/drill/restore-drill.ts';
import type { ScratchState } from '../../backups/drill/scratch-registry.ts';
import { createMemoryLogger } from '../../lib/log.ts';

const REPO = path.resolve(import.meta.dirname, '../..');
const PASS = 'drill defects passphrase 0123456789';
// A SIGKILLed process can linger as a zombie until whoever adopted it reaps it: it holds no socket,
// memory or files any more, so it counts as stopped.
const alive = (pid: number) => {
  try { return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8')); } catch { return false; }
};
/** The pids still alive after they have had up to `ms` to die (SIGKILL is delivered asynchronously). */
async function stillAliveAfter(pids: number[], ms = 10_000): Promise<number[]> {
  const deadline = Date.now() + ms;
  while (pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  return pids.filter(alive);
}

describe('drill defects of issue 11', () => {
  let source: ThrowawayPostgres;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-drill-defects-'));
  const target = path.join(dir, 'target');
  const identity = path.join(dir, 'id.age');
  const passFile = path.join(dir, 'pass');
  const stateDir = path.join(dir, 'state');
  const tmp = path.join(dir, 'tmp');
  let withoutFingerprint: string;
  const savedStateDir = process.env.E4OPS_DRILL_STATE_DIR;

  beforeAll(async () => {
    fs.chmodSync(dir, 0o755); // the scratch PostgreSQL runs as user postgres and must reach its folders
    fs.mkdirSync(tmp, { mode: 0o1777 });
    fs.chmodSync(tmp, 0o1777);
    process.env.E4OPS_DRILL_STATE_DIR = stateDir;
    source = await startThrowawayPostgres();
    const url = await source.createDatabase('c2');
    const key = deriveDbKey(PASS);
    await seedC2Database(url, { clients: 20_000, topics: 500, links: 40_000, seal: (k) => sealDbValue(key, k) });
    execFileSync('age-keygen', ['-o', identity], { stdio: 'ignore' });
    const recipient = execFileSync('age-keygen', ['-y', identity], { encoding: 'utf8' }).trim();
    fs.writeFileSync(passFile, PASS);
    // No --passphrase-file: the manifest records no fingerprint.
    withoutFingerprint = (await runBackup({ databaseUrl: url, targets: [target], recipients: [recipient], lockFile: path.join(dir, 'lock'), log: createMemoryLogger() })).setId;
  }, 180_000);
  afterAll(async () => {
    if (savedStateDir === undefined) delete process.env.E4OPS_DRILL_STATE_DIR; else process.env.E4OPS_DRILL_STATE_DIR = savedStateDir;
    await source?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }, 180_000);

  it('a set without a passphrase fingerprint passes when every key opens, with a warning; a wrong passphrase still fails', async () => {
    const report = await runRestoreDrill({ target, backup: withoutFingerprint, identityFile: identity, passphraseFile: passFile, logger: createMemoryLogger() });
    expect(report.ok, JSON.stringify(report.checks)).toBe(true);
    expect(report.checks.find((c) => c.name === 'passphrase-fingerprint')).toMatchObject({ ok: true, detail: expect.stringMatching(/^WARNING: the manifest records no passphrase fingerprint/) });
    expect(report.checks.find((c) => c.name === 'keys-decrypt')).toMatchObject({ ok: true });
    const wrong = path.join(dir, 'wrong-pass');
    fs.writeFileSync(wrong, 'a different passphrase, 16+ bytes');
    const bad = await runRestoreDrill({ target, backup: withoutFingerprint, identityFile: identity, passphraseFile: wrong, logger: createMemoryLogger() });
    expect(bad.ok).toBe(false);
    expect(bad.checks.find((c) => c.name === 'keys-decrypt')).toMatchObject({ ok: false });
  }, 300_000);

  it('a short passphrase file exits 2 in the drill, as in backup', () => {
    const short = path.join(dir, 'short-pass');
    fs.writeFileSync(short, 'short\n');
    const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(REPO, 'scripts/restore-drill.ts'), '--target', target, '--identity', identity, '--passphrase-file', short],
      { cwd: REPO, encoding: 'utf8', env: { ...process.env, TMPDIR: tmp } });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/short-pass: the passphrase is 5 bytes; C2 requires at least 16/);
  }, 60_000);

  /** Start a drill, SIGKILL it once its scratch PostgreSQL is written down; returns the leftovers. */
  async function killedDrill(): Promise<{ pids: number[]; dirs: string[] }> {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO, 'scripts/restore-drill.ts'), '--target', target, '--backup', withoutFingerprint,
      '--identity', identity, '--passphrase-file', passFile, '--no-mark-verified'], { cwd: REPO, env: { ...process.env, TMPDIR: tmp, E4OPS_DRILL_STATE_DIR: stateDir }, stdio: 'ignore' });
    const exited = new Promise((r) => child.on('exit', r));
    const file = path.join(stateDir, `drill-${os.hostname()}-${child.pid}.json`);
    const deadline = Date.now() + 60_000;
    let state: ScratchState | undefined;
    for (;;) {
      try { state = JSON.parse(fs.readFileSync(file, 'utf8')); } catch { state = undefined; }
      if (state?.processes.some((p) => p.what.startsWith('scratch PostgreSQL'))) break;
      if (child.exitCode !== null || Date.now() > deadline) throw new Error('the drill ended before its scratch PostgreSQL was registered');
      await new Promise((r) => setTimeout(r, 20));
    }
    child.kill('SIGKILL');
    await exited;
    const pids = state!.processes.map((p) => p.pid).filter(alive);
    expect(pids.length).toBeGreaterThan(0); // SIGKILL left the scratch server running: the defect
    expect(state!.dirs.some((d) => d.includes('e4ops-drill-pgdata-') && fs.existsSync(d))).toBe(true);
    return { pids, dirs: state!.dirs };
  }

  it('e4ops drill --cleanup stops and removes what a SIGKILLed drill left', async () => {
    const left = await killedDrill();
    const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(REPO, 'scripts/restore-drill.ts'), '--cleanup'],
      { cwd: REPO, encoding: 'utf8', env: { ...process.env, TMPDIR: tmp, E4OPS_DRILL_STATE_DIR: stateDir } });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^1 dead drill\(s\) cleaned up: \d+ process\(es\) stopped/);
    expect(await stillAliveAfter(left.pids)).toEqual([]);
    expect(left.dirs.filter((d) => fs.existsSync(d))).toEqual([]);
    expect(fs.readdirSync(stateDir).filter((n) => n.endsWith('.json'))).toEqual([]);
  }, 300_000);

  it('the next drill cleans up a SIGKILLed drill before it starts its own scratch servers', async () => {
    const left = await killedDrill();
    const log = createMemoryLogger();
    const report = await runRestoreDrill({ target, backup: withoutFingerprint, identityFile: identity, passphraseFile: passFile, logger: log });
    expect(report.ok).toBe(true);
    expect(log.lines).toContainEqual(expect.objectContaining({ event: 'drill.leftovers_removed' }));
    expect(left.pids.filter(alive)).toEqual([]);
    expect(left.dirs.filter((d) => fs.existsSync(d))).toEqual([]);
    expect(fs.readdirSync(stateDir).filter((n) => n.endsWith('.json'))).toEqual([]); // its own state file is gone too
  }, 300_000);
});
