// A drill interrupted by SIGTERM (a cron timeout, an operator's Ctrl-C) leaves no scratch PostgreSQL
// running and no scratch folder behind; a drill into a given scratch database works and leaves it restored.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawn } from 'node:child_process';
import { startThrowawayPostgres, type ThrowawayPostgres } from '../../lib/servers/postgres.ts';
import { seedC2Database } from '../../lib/c2-db/seed-database.ts';
import { deriveDbKey, sealDbValue } from '../../lib/e4/keystore.ts';
import { runBackup } from '../../backups/create-backup.ts';
import { runRestoreDrill } from '../../backups/drill/restore-drill.ts';
import { createMemoryLogger } from '../../lib/log.ts';
import { createPgClient } from '../../lib/pg/pg-client.ts';

const REPO = path.resolve(import.meta.dirname, '../..');
const PASS = 'teardown test passphrase 0123456789';

const alive = (pid: number) => { try { process.kill(pid, 0); return true; } catch { return false; } };

describe('restore drill teardown and scratch URL', () => {
  let source: ThrowawayPostgres;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-drill-teardown-'));
  const target = path.join(dir, 'target');
  const identity = path.join(dir, 'id.age');
  const passFile = path.join(dir, 'pass');
  let setId: string;

  beforeAll(async () => {
    source = await startThrowawayPostgres();
    const url = await source.createDatabase('c2');
    const key = deriveDbKey(PASS);
    await seedC2Database(url, { clients: 20_000, topics: 500, links: 60_000, seal: (k) => sealDbValue(key, k) });
    execFileSync('age-keygen', ['-o', identity], { stdio: 'ignore' });
    const recipient = execFileSync('age-keygen', ['-y', identity], { encoding: 'utf8' }).trim();
    fs.writeFileSync(passFile, PASS);
    setId = (await runBackup({ databaseUrl: url, targets: [target], recipients: [recipient], passphraseFile: passFile, lockFile: path.join(dir, 'lock'), log: createMemoryLogger() })).setId;
  });
  afterAll(async () => {
    await source?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }, 180_000);

  it('SIGTERM in the middle of a drill stops its scratch PostgreSQL and removes its folders', async () => {
    const tmp = path.join(dir, 'tmp');
    fs.mkdirSync(tmp, { mode: 0o755 });
    fs.chmodSync(dir, 0o755); // the scratch PostgreSQL runs as user postgres and must reach its folder
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO, 'scripts/restore-drill.ts'), '--target', target, '--backup', setId,
      '--identity', identity, '--passphrase-file', passFile, '--no-mark-verified'], { cwd: REPO, env: { ...process.env, TMPDIR: tmp }, stdio: 'ignore' });
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    let postmaster = 0;
    const deadline = Date.now() + 60_000;
    while (!postmaster) {
      for (const d of fs.readdirSync(tmp).filter((n) => n.startsWith('e4ops-'))) {
        const pidFile = [path.join(tmp, d, 'data', 'postmaster.pid'), path.join(tmp, d, 'postmaster.pid')].find((f) => fs.existsSync(f)) ?? '';
        // initdb's single-user runs write a negative pid; the postmaster a positive one.
        const pid = fs.existsSync(pidFile) ? Number(fs.readFileSync(pidFile, 'utf8').split('\n')[0]) : 0;
        if (pid > 0 && alive(pid)) postmaster = pid;
      }
      if (child.exitCode !== null || Date.now() > deadline) throw new Error('the drill ended before its scratch PostgreSQL could be seen');
      await new Promise((r) => setTimeout(r, 25));
    }
    expect(alive(postmaster)).toBe(true);
    child.kill('SIGTERM');
    expect(await exited).toBe(143);
    for (let i = 0; i < 50 && alive(postmaster); i++) await new Promise((r) => setTimeout(r, 100));
    expect(alive(postmaster)).toBe(false);
    expect(fs.readdirSync(tmp).filter((n) => n.startsWith('e4ops-'))).toEqual([]);
  }, 180_000);

  it('restores into a given empty scratch database, and refuses one that is not empty', async () => {
    const scratch = await startThrowawayPostgres();
    try {
      const url = await scratch.createDatabase('drill');
      const report = await runRestoreDrill({ target, backup: 'latest', identityFile: identity, passphraseFile: passFile, scratchDatabaseUrl: url, productionDatabaseUrl: source.url('c2'), logger: createMemoryLogger() });
      expect(report.ok, JSON.stringify(report.checks.filter((c) => !c.ok))).toBe(true);
      expect(report.counts).toEqual({ clients: 20_000, topics: 500, links: 60_000 });
      const c = createPgClient({ connectionString: url });
      await c.connect();
      expect((await c.query('SELECT count(*)::int AS n FROM clients')).rows[0].n).toBe(20_000);
      await c.end();
      await expect(runRestoreDrill({ target, backup: 'latest', identityFile: identity, passphraseFile: passFile, scratchDatabaseUrl: url, logger: createMemoryLogger() }))
        .rejects.toThrow(/is not empty .* empty scratch database only/);
    } finally {
      await scratch.stop();
    }
  }, 180_000);
});
