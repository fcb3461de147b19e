// Issue 11, defects 1-5 and 7, each against a real PostgreSQL seeded with C2's schema and sealed keys:
// secrets in the lock file / printed units / rclone refusals, two runs with different lock files on one
// target (the target lease), a wrong passphrase, a missing or unmounted target, a table lock that would
// hang pg_dump, an overall --timeout, and the smaller CLI items (list/prune/verify --all/--dry-run).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawn } from 'node:child_process';
import { startThrowawayPostgres, type ThrowawayPostgres } from '../../lib/servers/postgres.ts';
import { seedC2Database } from '../../lib/c2-db/seed-database.ts';
import { deriveDbKey, sealDbValue, passphraseFingerprint } from '../../lib/e4/keystore.ts';
import { createMemoryLogger } from '../../lib/log.ts';
import { runBackup, type BackupOptions } from '../../backups/create-backup.ts';
import { listBackupSets, openBackupSet } from '../../backups/backup-sets.ts';
import { openTarget, TARGET_MARKER_FILE } from '../../backups/targets.ts';
import { acquireRunLock } from '../../backups/run-lock.ts';
import { LEASE_FILE } from '../../backups/target-lease.ts';
import { renderSystemdUnits } from '../../backups/schedule.ts';
import { EXIT } from '../../backups/exit-codes.ts';
import { createPgClient } from '../../lib/pg/pg-client.ts';

const repo = path.resolve(import.meta.dirname, '../..');
const PASSPHRASE = 'defects test passphrase, long enough';

function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(path.join(repo, 'node_modules/.bin/tsx'), [path.join(repo, 'scripts/backup.ts'), ...args], { env: { ...process.env, ...env }, cwd: repo });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('backup defects of issue 11', () => {
  let server: ThrowawayPostgres;
  let url: string;
  let dir: string;
  let recipient: string;
  let base: Omit<BackupOptions, 'targets'>;
  let passFile: string;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-backup-defects-'));
    server = await startThrowawayPostgres();
    url = await server.createDatabase('c2');
    const dbKey = deriveDbKey(PASSPHRASE);
    await seedC2Database(url, { clients: 3000, topics: 200, links: 3000, seal: (p) => sealDbValue(dbKey, p) });
    const identity = path.join(dir, 'id.age');
    execFileSync('age-keygen', ['-o', identity], { stdio: 'ignore' });
    recipient = execFileSync('age-keygen', ['-y', identity], { encoding: 'utf8' }).trim();
    passFile = path.join(dir, 'passphrase');
    fs.writeFileSync(passFile, PASSPHRASE + '\n');
    base = { databaseUrl: url, recipients: [recipient], passphraseFile: passFile, lockFile: path.join(dir, 'lock'), log: createMemoryLogger() };
  });
  afterAll(async () => {
    await server?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('1: the run lock is 0600 and holds no password; printers refuse a URL with a password; rclone refusals hide credentials', async () => {
    const file = path.join(dir, 'secret.lock');
    const lock = acquireRunLock(file, 'scripts/backup.ts --database-url postgres://c2:hunter2hunter2@db:5432/e4 --target /b');
    try {
      expect(fs.statSync(file).mode & 0o777).toBe(0o600);
      const text = fs.readFileSync(file, 'utf8');
      expect(text).not.toContain('hunter2');
      expect(JSON.parse(text)).toMatchObject({ pid: process.pid, host: os.hostname(), command: expect.stringContaining('postgres://c2:***@db:5432/e4') });
    } finally { lock.release(); }

    const printed = await cli(['--print-systemd-timer', '--print-crontab', '--database-url', 'postgres://c2:hunter2hunter2@db:5432/e4', '--target', '/b', '--recipient', recipient]);
    expect(printed.code).toBe(EXIT.usage);
    expect(printed.stdout).toBe('');
    expect(printed.stderr).toMatch(/--database-url holds a password.*PGPASSFILE.*\/etc\/e4ops\/backup\.env/);
    expect(printed.stderr).not.toContain('hunter2');
    // Without the password the unit reads the environment file and carries a start timeout.
    const ok = await cli(['--print-systemd-timer', '--database-url', 'postgres://c2@db:5432/e4', '--target', '/b', '--recipient', recipient, '--timeout', '2h']);
    expect(ok.code).toBe(EXIT.ok);
    expect(ok.stdout).toMatch(/^EnvironmentFile=-\/etc\/e4ops\/backup\.env$/m);
    expect(ok.stdout).toMatch(/^TimeoutStartSec=7800s$/m);

    const rc = await cli(['list', '--target', ':s3,access_key_id=AKIAEXAMPLE,secret_access_key=TopSecretKey123:bucket/c2']);
    expect(rc.code).toBe(EXIT.usage);
    expect(rc.stderr).toMatch(/rclone connection strings are refused/);
    expect(rc.stderr + rc.stdout).not.toMatch(/TopSecretKey123|AKIAEXAMPLE/);
  });

  it('2: two backups with different lock files on one target: the second exits 5 naming the owner, neither set is deleted', async () => {
    const target = path.join(dir, 'shared-target');
    // An earlier interrupted set of a dead run, which the winner may clean up.
    const first = await runBackup({ ...base, targets: [target] });
    let release!: () => void;
    const paused = new Promise<void>((r) => { release = r; });
    let started!: () => void;
    const isRunning = new Promise<void>((r) => { started = r; });
    let once = false;
    const running = runBackup({ ...base, lockFile: path.join(dir, 'lock-a'), targets: [target], onProgress: async () => { if (!once) { once = true; started(); await paused; } } });
    await isRunning;
    const lease = JSON.parse(fs.readFileSync(path.join(target, LEASE_FILE), 'utf8'));
    const second = await cli(['--database-url', url, '--target', target, '--recipient', recipient, '--lock-file', path.join(dir, 'lock-b')]);
    release();
    const r = await running;
    expect(second.code).toBe(EXIT.locked);
    expect(second.stderr).toMatch(new RegExp(`target .*shared-target is leased by .*@${os.hostname()} pid ${process.pid} \\(backup of set ${lease.setId}`));
    expect(r.stored).toEqual([target]);
    expect((await listBackupSets(openTarget(target))).map((s) => [s.setId, s.status]).sort()).toEqual([[first.setId, 'complete'], [r.setId, 'complete']].sort());
    expect(fs.existsSync(path.join(target, LEASE_FILE))).toBe(false); // released
  });

  it('2: a stale lease (dead run on another host) is taken over with a log line', async () => {
    const target = path.join(dir, 'stale-target');
    fs.mkdirSync(target);
    const old = new Date(Date.now() - 3600_000).toISOString();
    fs.writeFileSync(path.join(target, LEASE_FILE), JSON.stringify({ kind: 'e4ops-target-lease', token: 'dead', owner: 'root@elsewhere pid 1', host: 'elsewhere', pid: 1, operation: 'backup', startedAt: old, heartbeatAt: old }));
    const log = createMemoryLogger();
    const fresh = runBackup({ ...base, targets: [target], log, leaseStaleAfterSeconds: 7200 });
    await expect(fresh).rejects.toMatchObject({ kind: 'locked', message: expect.stringMatching(/leased by root@elsewhere pid 1/) });
    const r = await runBackup({ ...base, targets: [target], log, leaseStaleAfterSeconds: 600 });
    expect(r.stored).toEqual([target]);
    expect(log.lines).toContainEqual(expect.objectContaining({ event: 'lease_taken_over', staleOwner: 'root@elsewhere pid 1' }));
  });

  it('3: a wrong --passphrase-file exits 13 naming the file, before anything is stored; a short one exits 2', async () => {
    const wrong = path.join(dir, 'wrong-passphrase');
    fs.writeFileSync(wrong, 'not the passphrase of this C2 at all\n');
    const target = path.join(dir, 'pp-target');
    const r = await cli(['--database-url', url, '--target', target, '--create-target', '--recipient', recipient, '--passphrase-file', wrong, '--lock-file', path.join(dir, 'lock-pp')]);
    expect(r.code).toBe(EXIT.wrongPassphrase);
    expect(r.stderr).toMatch(/--passphrase-file .*wrong-passphrase opens none of the 16 sampled keys/);
    expect((await listBackupSets(openTarget(target))).filter((s) => s.status === 'complete')).toEqual([]);
    const short = path.join(dir, 'short-passphrase');
    fs.writeFileSync(short, 'short\n');
    const s = await cli(['--database-url', url, '--target', target, '--recipient', recipient, '--passphrase-file', short, '--lock-file', path.join(dir, 'lock-pp')]);
    expect(s.code).toBe(EXIT.usage);
    expect(s.stderr).toMatch(/short-passphrase: the passphrase is 5 bytes; C2 requires at least 16/);
    // The right one: the fingerprint is recorded.
    const good = await runBackup({ ...base, targets: [target] });
    expect(good.manifest.passphraseFingerprint?.value).toBe(passphraseFingerprint(PASSPHRASE));
  });

  it('4: a missing target is refused (exit 4) unless --create-target or init; an unmounted fstab mount point is named', async () => {
    const missing = path.join(dir, 'offsite', 'c2');
    const r = await cli(['--database-url', url, '--target', missing, '--recipient', recipient, '--lock-file', path.join(dir, 'lock-t')]);
    expect(r.code).toBe(EXIT.target);
    expect(r.stderr).toMatch(/target .*offsite\/c2 does not exist: .*e4ops backup init --target/);
    expect(fs.existsSync(missing)).toBe(false);
    // An empty directory without the marker is what an unmounted mount point looks like.
    fs.mkdirSync(missing, { recursive: true });
    const empty = await cli(['--database-url', url, '--target', missing, '--recipient', recipient, '--lock-file', path.join(dir, 'lock-t')]);
    expect(empty.code).toBe(EXIT.target);
    expect(empty.stderr).toMatch(/empty directory without the e4ops marker/);
    const init = await cli(['init', '--target', missing]);
    expect(init.code).toBe(EXIT.ok);
    expect(fs.existsSync(path.join(missing, TARGET_MARKER_FILE))).toBe(true);
    expect((await cli(['init', '--target', missing])).stdout).toMatch(/already initialised/);
    const ok = await cli(['--database-url', url, '--target', missing, '--recipient', recipient, '--lock-file', path.join(dir, 'lock-t'), '--json']);
    expect(ok.code, ok.stderr).toBe(EXIT.ok);
    // fstab declares a mount point above the target that is not mounted: named, even with --create-target.
    const fstab = path.join(dir, 'fstab');
    fs.writeFileSync(fstab, `# test\nUUID=1234 ${path.join(dir, 'mnt-offsite')} ext4 defaults,nofail 0 2\n`);
    const under = path.join(dir, 'mnt-offsite', 'c2');
    await expect(runBackup({ ...base, targets: [under], createTarget: true, fstab })).rejects.toMatchObject({
      kind: 'target', message: expect.stringContaining(`lies under ${path.join(dir, 'mnt-offsite')}, which ${fstab} declares but is not mounted`),
    });
    expect(fs.existsSync(under)).toBe(false);
  });

  it('5: a table lock makes pg_dump give up after --lock-wait-timeout (exit 12) instead of hanging', async () => {
    const holder = createPgClient({ connectionString: url });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('LOCK TABLE clients IN ACCESS EXCLUSIVE MODE');
      const t0 = Date.now();
      const r = await cli(['--database-url', url, '--target', path.join(dir, 'lockwait'), '--create-target', '--recipient', recipient, '--lock-wait-timeout', '2s', '--lock-file', path.join(dir, 'lock-lw')]);
      expect(r.code).toBe(EXIT.timedOut);
      expect(r.stderr).toMatch(/waited more than 2 s \(--lock-wait-timeout\) for a table lock/);
      expect(Date.now() - t0).toBeLessThan(60_000);
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      await holder.end();
    }
  }, 90_000);

  it('5: SIGTERM (systemd\'s TimeoutStartSec) stops a waiting run with exit 143, lease and lock released', async () => {
    const holder = createPgClient({ connectionString: url });
    await holder.connect();
    const target = path.join(dir, 'sigterm-target');
    const lockFile = path.join(dir, 'lock-sigterm');
    try {
      await holder.query('BEGIN');
      await holder.query('LOCK TABLE clients IN ACCESS EXCLUSIVE MODE');
      const child = spawn(path.join(repo, 'node_modules/.bin/tsx'), [path.join(repo, 'scripts/backup.ts'), '--database-url', url, '--target', target, '--create-target',
        '--recipient', recipient, '--lock-wait-timeout', '5m', '--lock-file', lockFile], { cwd: repo, stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d) => { stderr += d; });
      const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
      const deadline = Date.now() + 30_000;
      while (!fs.existsSync(path.join(target, LEASE_FILE))) {
        if (Date.now() > deadline) throw new Error(`no lease appeared: ${stderr}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      await new Promise((r) => setTimeout(r, 500)); // waiting for the table lock now
      // tsx forwards the signal to the node process it runs
      child.kill('SIGTERM');
      expect(await exited).toBe(143);
      expect(stderr).toMatch(/stopped by .*SIGTERM/);
      expect(fs.existsSync(path.join(target, LEASE_FILE))).toBe(false);
      expect(fs.existsSync(lockFile)).toBe(false);
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      await holder.end();
    }
  }, 90_000);

  it('5: the overall --timeout stops a stuck run with exit 12 naming the step; printed units carry TimeoutStartSec', async () => {
    const lockFile = path.join(dir, 'lock-timeout');
    const stuck = runBackup({ ...base, lockFile, targets: [path.join(dir, 'timeout-target')], timeoutSeconds: 10, onProgress: () => new Promise(() => undefined) });
    await expect(stuck).rejects.toMatchObject({ kind: 'timedOut', exitCode: 12, message: expect.stringMatching(/within --timeout 10 s: it was storing postgres\.pgdump\.zst\.age/) });
    expect(fs.existsSync(path.join(dir, 'timeout-target', LEASE_FILE))).toBe(false);
    expect(fs.existsSync(lockFile)).toBe(false);
    const u = renderSystemdUnits({ args: ['--target', '/b'] });
    expect(u.service).toMatch(/^TimeoutStartSec=15000s$/m);
    expect(u.service).toMatch(/--timeout 14400s$/m);
  }, 60_000);

  it('7: list exits 6 without a complete set; prune --dry-run --json says wouldRemove; verify --all; backup --dry-run writes nothing', async () => {
    const empty = path.join(dir, 'no-sets');
    fs.mkdirSync(empty);
    const l = await cli(['list', '--target', empty]);
    expect(l.code).toBe(EXIT.integrity);
    expect(l.stdout).toMatch(/0 complete set\(s\) - NO usable backup here/);

    const target = path.join(dir, 'seven');
    const a = await runBackup({ ...base, targets: [target] });
    const b = await runBackup({ ...base, targets: [target] });
    const dry = await cli(['prune', '--target', target, '--keep-last', '1', '--dry-run', '--json']);
    expect(dry.code).toBe(EXIT.ok);
    const doc = JSON.parse(dry.stdout)[0];
    expect(doc).toMatchObject({ dryRun: true, removed: [], wouldRemove: [a.setId] });

    const all = await cli(['verify', '--all', '--target', target, '--json']);
    expect(all.code, all.stderr).toBe(EXIT.ok);
    expect(JSON.parse(all.stdout)[0].sets.map((s: { setId: string }) => s.setId).sort()).toEqual([a.setId, b.setId].sort());
    fs.appendFileSync(path.join(target, a.setId, 'postgres.pgdump.zst.age'), 'x');
    const damaged = await cli(['verify', '--all', '--target', target]);
    expect(damaged.code).toBe(EXIT.integrity);
    expect(damaged.stdout).toContain(`${a.setId}: FAILED`);
    expect(damaged.stdout).toContain(`${b.setId}: OK`);

    const fresh = path.join(dir, 'dry-run-target');
    const plan = await cli(['--database-url', url, '--target', fresh, '--create-target', '--recipient', recipient, '--passphrase-file', passFile, '--dry-run', '--json']);
    expect(plan.code, plan.stderr).toBe(EXIT.ok);
    expect(JSON.parse(plan.stdout)).toMatchObject({
      inventory: { clients: 3000, topics: 200 }, objects: ['postgres.pgdump.zst.age'], recipients: [recipient],
      passphrase: { opened: 16, sampled: 16 }, targets: [{ target: fresh, readiness: 'would be created' }], problems: [],
    });
    expect(fs.existsSync(fresh)).toBe(false);
    expect(await openBackupSet(openTarget(target), b.setId)).toBeTruthy();
  }, 120_000);
});
