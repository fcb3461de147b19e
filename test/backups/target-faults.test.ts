// Targets that refuse writes: a full filesystem (a 1 MiB tmpfs) and a read-only one (remounted ro),
// through a local path and through an rclone remote. Each run fails with exit code 4 and a message
// naming the cause, and the set written earlier stays listed and verifiable.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { startThrowawayPostgres, type ThrowawayPostgres } from '../../lib/servers/postgres.ts';
import { seedC2Database } from '../../lib/c2-db/seed-database.ts';
import { runBackup, type BackupOptions } from '../../backups/create-backup.ts';
import { listBackupSets, verifyBackupSet } from '../../backups/backup-sets.ts';
import { openTarget } from '../../backups/targets.ts';
import { EXIT } from '../../backups/exit-codes.ts';

const isRoot = process.getuid?.() === 0;

describe.skipIf(!isRoot)('backup targets that are full or read-only (tmpfs, needs root)', () => {
  let server: ThrowawayPostgres;
  let dir: string;
  let mnt: string;
  let mounted = false;
  let base: Omit<BackupOptions, 'targets'>;
  let identity: string;
  let rcloneConfig: string;
  let firstSet: string;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-target-faults-'));
    mnt = path.join(dir, 'mnt');
    fs.mkdirSync(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mnt]);
    mounted = true;
    server = await startThrowawayPostgres();
    const url = await server.createDatabase('c2');
    await seedC2Database(url, { clients: 2000, topics: 100, links: 4000 });
    identity = path.join(dir, 'id.age');
    execFileSync('age-keygen', ['-o', identity], { stdio: 'ignore' });
    const recipient = execFileSync('age-keygen', ['-y', identity], { encoding: 'utf8' }).trim();
    rcloneConfig = path.join(dir, 'rclone.conf');
    fs.writeFileSync(rcloneConfig, '[offsite]\ntype = local\n');
    base = { databaseUrl: url, recipients: [recipient], lockFile: path.join(dir, 'lock'), rcloneConfig };
  });
  afterAll(async () => {
    if (mounted) spawnSync('umount', ['-l', mnt]);
    await server?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('writes a first set that fits', async () => {
    const r = await runBackup({ ...base, targets: [path.join(mnt, 'c2')] });
    firstSet = r.setId;
    expect(r.manifest.objects[0].size).toBeLessThan(600_000);
  });

  it('full target (local path): exit 4 naming "full", the earlier set untouched', async () => {
    // Leave ~100 KiB free: less than one more set.
    const free = () => { const s = fs.statfsSync(mnt); return s.bavail * s.bsize; };
    fs.writeFileSync(path.join(mnt, 'filler'), Buffer.alloc(Math.max(0, free() - 100 * 1024)));
    const err = await runBackup({ ...base, targets: [path.join(mnt, 'c2')] }).then(() => undefined, (e) => e);
    expect(err).toMatchObject({ kind: 'target', exitCode: EXIT.target });
    expect(err.message).toMatch(/target .*\/mnt\/c2: .*full \(no space left on device\).*ENOSPC/);
    const sets = await listBackupSets(openTarget(path.join(mnt, 'c2')));
    expect(sets.find((s) => s.setId === firstSet)?.status).toBe('complete');
    expect(sets.filter((s) => s.status === 'complete')).toHaveLength(1);
    expect((await verifyBackupSet(openTarget(path.join(mnt, 'c2')), firstSet, { identityFile: identity })).ok).toBe(true);
  });

  it('full target (rclone remote): exit 4 quoting rclone, the earlier set untouched', async () => {
    const err = await runBackup({ ...base, targets: [`offsite:${path.join(mnt, 'c2')}`] }).then(() => undefined, (e) => e);
    expect(err).toMatchObject({ kind: 'target' });
    expect(err.message).toMatch(/rclone exited \d+: .*no space left on device/i);
    fs.rmSync(path.join(mnt, 'filler'));
    expect((await verifyBackupSet(openTarget(`offsite:${path.join(mnt, 'c2')}`, { rcloneConfig }), firstSet, { identityFile: identity })).ok).toBe(true);
  });

  it('read-only target: exit 4 before dumping, the earlier set untouched; a second healthy target still gets the set', async () => {
    execFileSync('mount', ['-o', 'remount,ro', mnt]);
    const err = await runBackup({ ...base, targets: [path.join(mnt, 'c2')] }).then(() => undefined, (e) => e);
    expect(err).toMatchObject({ kind: 'target' });
    expect(err.message).toMatch(/read-only.*EROFS/);
    const healthy = path.join(dir, 'healthy');
    const r = await runBackup({ ...base, targets: [path.join(mnt, 'c2'), healthy] });
    expect(r.stored).toEqual([healthy]);
    expect(r.failed.map((f) => f.target)).toEqual([path.join(mnt, 'c2')]);
    const sets = await listBackupSets(openTarget(path.join(mnt, 'c2')));
    expect(sets.map((s) => [s.setId, s.status])).toContainEqual([firstSet, 'complete']);
    expect((await verifyBackupSet(openTarget(path.join(mnt, 'c2')), firstSet, { identityFile: identity })).ok).toBe(true);
  });
});
