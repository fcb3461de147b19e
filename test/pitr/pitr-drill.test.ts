// Point-in-time recovery end to end on real PostgreSQL 15 and real pgBackRest 2.45 (posix repository):
// archive, full + incr backups, changes before and after a noted time, drills to that time and to the
// end of the archive, and the failures an operator must see clearly (wrong cipher passphrase, missing
// WAL segment, target before the oldest backup, scratch at the production data directory).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createThrowawayPgBackRestRepo, type ThrowawayPgBackRestRepo } from '../../lib/servers/pgbackrest-repo.ts';
import { startThrowawayPostgres, type ThrowawayPostgres } from '../../lib/servers/postgres.ts';
import { seedC2Database, c2ClientId } from '../../lib/c2-db/seed-database.ts';
import { deriveDbKey, sealDbValue } from '../../lib/e4/keystore.ts';
import { chownTo } from '../../lib/servers/daemon.ts';
import { createMemoryLogger } from '../../lib/log.ts';
import { runPitrDrill } from '../../backups/pitr/pitr-drill.ts';
import { takePitrBackup } from '../../backups/pitr/pitr-operations.ts';
import { readPitrInfo } from '../../backups/pitr/pitr-repository.ts';
import { createScratchDataDir, isolateScratchArchiveGet, SCRATCH_ARCHIVE_GET_DIR } from '../../backups/pitr/pitr-restore.ts';
import { validateDrillReport } from '../../backups/drill/drill-report.ts';

const REPO_ROOT = path.resolve(import.meta.dirname, '../..');
const CIPHER = 'the repository cipher passphrase of this test';
const C2_PASS = 'c2 db-encryption passphrase for the pitr test';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('PITR drill on a pgBackRest repository (real PostgreSQL 15 + pgBackRest 2.45)', () => {
  let dir: string;
  let repo: ThrowawayPgBackRestRepo;
  let source: ThrowawayPostgres;
  let passFile: string;
  let noted: Date;
  let beforeFull: Date;
  let incrWalStop: string;
  const dbKey = deriveDbKey(C2_PASS);

  const addClients = (prefix: string, n: number) => {
    const rows = Array.from({ length: n }, (_, i) => {
      const name = `${prefix}-${i}`;
      const sealed = sealDbValue(dbKey, crypto.randomBytes(32));
      return `(${prefix === 'before' ? 10_000 + i : 20_000 + i}, '\\x${c2ClientId(name).toString('hex')}', '${name}', '\\x${sealed.toString('hex')}')`;
    });
    source.psql(`INSERT INTO clients (id, e4_id, name, key) VALUES ${rows.join(', ')}`, 'e4');
  };
  const switchAndArchive = async () => {
    const seg = source.psql("SELECT pg_walfile_name(pg_switch_wal())").trim();
    for (let i = 0; i < 200; i++) {
      const last = source.psql('SELECT coalesce(last_archived_wal, \'\') FROM pg_stat_archiver').trim();
      if (last >= seg) return seg;
      await sleep(100);
    }
    throw new Error(`WAL segment ${seg} was not archived`);
  };

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-pitr-test-'));
    passFile = path.join(dir, 'c2-passphrase');
    fs.writeFileSync(passFile, C2_PASS + '\n');
    repo = createThrowawayPgBackRestRepo({ cipherPassphrase: CIPHER });
    source = await startThrowawayPostgres({ settings: repo.postgresSettings(60) });
    repo.attach(source);
    const url = await source.createDatabase('e4');
    await seedC2Database(url, { clients: 300, topics: 30, links: 600, seal: (k) => sealDbValue(dbKey, k) });
    await repo.init();
    beforeFull = new Date(Date.now() - 1000);
    await takePitrBackup(repo.target, 'full');
    incrWalStop = (await takePitrBackup(repo.target, 'incr')).set.walStop;
    addClients('before', 25);
    await switchAndArchive();
    await sleep(1100);
    noted = new Date();
    await sleep(1100);
    addClients('after', 40);
    await switchAndArchive();
  }, 180_000);

  afterAll(async () => {
    await source?.stop();
    repo?.cleanup();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('pitr info lists the full and incr sets, the WAL range and the newest commit (the later changes)', async () => {
    const info = await readPitrInfo(repo.target);
    expect(info.sets.map((s) => s.type)).toEqual(['full', 'incr']);
    expect(info.sets[1].prior).toBe(info.sets[0].label);
    expect(info.wal!.max >= incrWalStop).toBe(true);
    expect(Date.parse(info.newestRecoverableTime!)).toBeGreaterThan(noted.getTime());
  }, 60_000);

  it('a drill to the noted time has the changes before it and not those after; every key opens', async () => {
    const report = await runPitrDrill({ pgbackrestConfig: repo.configFile, configIncludePath: repo.configIncludePath, stanza: repo.stanza, targetTime: noted.toISOString(), passphraseFile: passFile, productionDatabaseUrl: source.url('e4'), logger: createMemoryLogger() });
    expect(report.ok, JSON.stringify(report.checks.filter((c) => !c.ok))).toBe(true);
    validateDrillReport(report);
    expect(report.source).toBe('pgbackrest');
    expect(report.counts.clients).toBe(300 + 25);
    expect(report.checks.find((c) => c.name === 'keys-decrypt')!.detail).toMatch(/^all 325 client keys and 30 topic keys open/);
    expect(Date.parse(report.pitr!.restoredPointInTime!)).toBeLessThanOrEqual(noted.getTime());
    expect(Date.parse(report.pitr!.stoppedBeforeCommitAt!)).toBeGreaterThan(noted.getTime());
    // RPO against the archive: the "after" commits (more than a second after the noted time) were left out.
    expect(report.pitr!.rpoToArchiveSeconds!).toBeGreaterThan(1);
    expect(report.pitr!.rpoToProductionSeconds!).toBeGreaterThan(report.pitr!.rpoToArchiveSeconds!);
    expect(report.backupId).toMatch(/^\d{8}-\d{6}F_\d{8}-\d{6}I$/);
  }, 180_000);

  it('a drill to latest has every change; nothing archived is lost (RPO to the archive 0)', async () => {
    const report = await runPitrDrill({ pgbackrestConfig: repo.configFile, configIncludePath: repo.configIncludePath, stanza: repo.stanza, targetTime: 'latest', passphraseFile: passFile, logger: createMemoryLogger() });
    expect(report.ok, JSON.stringify(report.checks.filter((c) => !c.ok))).toBe(true);
    expect(report.counts.clients).toBe(300 + 25 + 40);
    expect(report.pitr!.rpoToArchiveSeconds).toBe(0);
    // The scratch recovery fetched WAL with a queue and lock of its own: production's archive-get queue (the
    // configured spool-path, beside the archive lock production's archive-push takes) holds nothing of it.
    const prodQueue = path.join(repo.dir, 'spool', 'archive', repo.stanza, 'in');
    expect(fs.existsSync(prodQueue) ? fs.readdirSync(prodQueue) : []).toEqual([]);
  }, 180_000);

  it('a drill leaves production\'s archive-push acknowledgements in its spool (pgbackrest restore deletes the spool it is given)', async () => {
    // Production's archiver waits for <spool-path>/archive/<stanza>/out/<segment>.ok; a scratch restore given
    // production's spool-path deleted that folder, and production then archived nothing until pgBackRest's
    // archive-timeout ran out: bench:pitr lost every commit after the drills to a kill -9.
    const out = path.join(repo.dir, 'spool', 'archive', repo.stanza, 'out');
    const seg = await switchAndArchive();
    const acks = fs.readdirSync(out);
    expect(acks).toContain(`${seg}.ok`);
    const report = await runPitrDrill({ pgbackrestConfig: repo.configFile, configIncludePath: repo.configIncludePath, stanza: repo.stanza, passphraseFile: passFile, logger: createMemoryLogger() });
    expect(report.ok, JSON.stringify(report.checks.filter((c) => !c.ok))).toBe(true);
    expect(fs.existsSync(out) ? fs.readdirSync(out) : []).toEqual(expect.arrayContaining(acks));
  }, 180_000);

  it('a wrong cipher passphrase fails the drill naming the passphrase', async () => {
    const wrong = path.join(dir, 'wrong-conf.d');
    fs.mkdirSync(wrong);
    fs.writeFileSync(path.join(wrong, 'secrets.conf'), '[global]\nrepo1-cipher-pass=not the passphrase\n');
    chownTo(dir, 'postgres');
    const report = await runPitrDrill({ pgbackrestConfig: repo.configFile, configIncludePath: wrong, stanza: repo.stanza, passphraseFile: passFile, logger: createMemoryLogger() });
    expect(report.ok).toBe(false);
    expect(report.failedChecks).toEqual(['pitr-repository']);
    expect(report.checks[0].detail).toMatch(/wrong cipher passphrase/);
    // The same through e4ops drill: a failed check exits 8; backup-set flags with --pgbackrest-config exit 2.
    const drill = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'scripts/e4ops.ts'), 'drill', ...args], { cwd: REPO_ROOT, encoding: 'utf8' });
    const r = drill('--pgbackrest-config', repo.configFile, '--config-include-path', wrong, '--stanza', repo.stanza, '--passphrase-file', passFile, '--report', path.join(dir, 'wrong.json'));
    expect(r.status, r.stderr).toBe(8);
    expect(r.stderr).toMatch(/pitr-repository: .*wrong cipher passphrase/);
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'wrong.json'), 'utf8'))).toMatchObject({ source: 'pgbackrest', ok: false, failedChecks: ['pitr-repository'] });
    const mixed = drill('--pgbackrest-config', repo.configFile, '--target', '/var/backups/c2', '--passphrase-file', passFile);
    expect(mixed.status).toBe(2);
    expect(mixed.stderr).toMatch(/--target is for a backup-set drill/);
  }, 60_000);

  it('a target time before the oldest backup fails before restoring anything', async () => {
    const report = await runPitrDrill({ pgbackrestConfig: repo.configFile, configIncludePath: repo.configIncludePath, stanza: repo.stanza, targetTime: new Date(beforeFull.getTime() - 3600_000).toISOString(), passphraseFile: passFile, logger: createMemoryLogger() });
    expect(report.ok).toBe(false);
    expect(report.failedChecks).toEqual(['pitr-target']);
    expect(report.checks.find((c) => c.name === 'pitr-target')!.detail).toMatch(/is before the end of the oldest backup set/);
  }, 60_000);

  it('a hand-written pgbackrest.conf works; with a WAL segment missing from the archive the drill fails naming it', async () => {
    // The operator's own config (not rendered by e4ops): passphrase inline, a production pg1-path that is not here.
    const copy = path.join(dir, 'repo-copy');
    fs.cpSync(repo.repoPath, copy, { recursive: true });
    for (const d of ['lock', 'log', 'spool']) fs.mkdirSync(path.join(dir, d), { recursive: true });
    const conf = path.join(dir, 'hand-written.conf');
    fs.writeFileSync(conf, [
      '[global]', `repo1-path=${copy}`, 'repo1-cipher-type=aes-256-cbc', `repo1-cipher-pass=${CIPHER}`,
      `lock-path=${dir}/lock`, `log-path=${dir}/log`, `spool-path=${dir}/spool`, '',
      `[${repo.stanza}]`, 'pg1-path=/var/lib/postgresql/15/main', '',
    ].join('\n'));
    const noInclude = path.join(dir, 'empty-conf.d');
    fs.mkdirSync(noInclude, { recursive: true });
    chownTo(dir, 'postgres');
    const ok = await runPitrDrill({ pgbackrestConfig: conf, configIncludePath: noInclude, stanza: repo.stanza, targetTime: noted.toISOString(), passphraseFile: passFile, logger: createMemoryLogger() });
    expect(ok.ok, JSON.stringify(ok.checks.filter((c) => !c.ok))).toBe(true);
    expect(ok.counts.clients).toBe(325);
    // Remove the segment after the incr backup: it holds the "before" changes the target needs.
    const next = (parseInt(incrWalStop.slice(16), 16) + 1).toString(16).toUpperCase().padStart(8, '0');
    const missing = incrWalStop.slice(0, 16) + next;
    const walDir = path.join(copy, 'archive', repo.stanza, '15-1', missing.slice(0, 16));
    const files = fs.readdirSync(walDir).filter((f) => f.startsWith(missing + '-'));
    expect(files).toHaveLength(1);
    fs.rmSync(path.join(walDir, files[0]));
    const report = await runPitrDrill({ pgbackrestConfig: conf, configIncludePath: noInclude, stanza: repo.stanza, targetTime: noted.toISOString(), passphraseFile: passFile, logger: createMemoryLogger() });
    expect(report.ok).toBe(false);
    expect(report.failedChecks).toEqual(['pitr-recovery']);
    expect(report.checks.find((c) => c.name === 'pitr-recovery')!.detail).toMatch(/recovery could not reach .*a WAL segment is missing/);
  }, 240_000);

  it('refuses a scratch folder at or around the configured pg1-path', () => {
    expect(() => createScratchDataDir([source.dataDir], source.dataDir)).toThrow(/configured pg1-path .* never restores over a production data directory/);
    fs.mkdirSync(path.join(source.dataDir, 'e4ops-test-scratch'), { recursive: true });
    expect(() => createScratchDataDir([source.dataDir], path.join(source.dataDir, 'e4ops-test-scratch'))).toThrow(/pg1-path/);
    fs.rmSync(path.join(source.dataDir, 'e4ops-test-scratch'), { recursive: true });
    // Beside it (a fresh folder next to the data directory) is fine.
    const beside = createScratchDataDir([source.dataDir], path.dirname(source.dataDir));
    expect(path.dirname(beside)).toBe(fs.realpathSync(path.dirname(source.dataDir)));
    fs.rmSync(beside, { recursive: true });
  });

  it('e4ops pitr: backup --type incr and info --json through the command; pgBackRest errors exit 14 with their code named', () => {
    const cli = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'scripts/e4ops.ts'), 'pitr', ...args], { cwd: REPO_ROOT, encoding: 'utf8' });
    const common = ['--pgbackrest-config', repo.configFile, '--config-include-path', repo.configIncludePath, '--stanza', repo.stanza];
    const b = cli('backup', '--type', 'incr', ...common);
    expect(b.status, b.stderr).toBe(0);
    expect(b.stdout).toMatch(/^incr backup \d{8}-\d{6}F_\d{8}-\d{6}I: database [\d.]+ MiB, stored [\d.]+ MiB/);
    const i = cli('info', '--json', ...common);
    expect(i.status, i.stderr).toBe(0);
    expect(JSON.parse(i.stdout).sets.map((s: { type: string }) => s.type)).toEqual(['full', 'incr', 'incr']);
    // Without --config-include-path, conf.d beside the config (where the cipher passphrase is) is read:
    // pgBackRest itself reads no include folder once --config is given.
    const beside = cli('info', '--json', '--pgbackrest-config', repo.configFile, '--stanza', repo.stanza);
    expect(beside.status, beside.stderr).toBe(0);
    expect(JSON.parse(beside.stdout).sets).toHaveLength(3);
    // The check writes the metrics the PITR alerts read.
    const prom = path.join(dir, 'pitr.prom');
    const c = cli('check', ...common, '--metrics-file', prom, '--database-url', source.url('e4'));
    expect(c.status, c.stderr).toBe(0);
    const metrics = fs.readFileSync(prom, 'utf8');
    expect(metrics).toMatch(/^e4ops_pitr_repository_check_success\{stanza="c2"\} 1$/m);
    // The check itself switches WAL, so one segment may be on its way to the archiver; a stuck archive grows.
    const ready = Number(/^e4ops_pitr_archive_ready_segments\{stanza="c2"\} (\d+)$/m.exec(metrics)?.[1] ?? NaN);
    expect(ready).toBeLessThanOrEqual(1);
    expect(metrics).toMatch(/^e4ops_pitr_archive_failed_count\{stanza="c2"\} 0$/m);
    const lastWal = Number(/^e4ops_pitr_last_archived_wal_timestamp_seconds\{stanza="c2"\} (\d+)$/m.exec(metrics)![1]);
    expect(Date.now() / 1000 - lastWal).toBeLessThan(120);
    const units = cli('print-systemd-timer', ...common);
    expect(units.status, units.stderr).toBe(0);
    expect(units.stdout.match(/^OnCalendar=.*$/gm)).toEqual(['OnCalendar=Sun *-*-* 01:00:00', 'OnCalendar=Mon..Sat *-*-* 01:00:00', 'OnCalendar=*:0/15']);
    expect(units.stdout).toMatch(/^ExecStart=.*scripts\/pitr\.ts backup --type full --pgbackrest-config /m);
    const bad = cli('backup', ...common, '--stanza=nope');
    expect(bad.status).toBe(2); // --stanza twice
    const missing = cli('backup', '--pgbackrest-config', repo.configFile, '--config-include-path', repo.configIncludePath, '--stanza', 'nostanza');
    expect(missing.status).toBe(14);
    expect(missing.stderr).toMatch(/pgBackRest error \d+ \(\w+Error\)/);
  }, 120_000);
});

describe('isolateScratchArchiveGet (the scratch recovery\'s own archive-get queue and lock)', () => {
  it('points pgBackRest\'s archive-get at paths inside the scratch data directory, replacing any given; other lines stay', () => {
    const line = `restore_command = 'pgbackrest --config=/etc/pgbackrest/pgbackrest.conf --lock-path=/tmp/lock --no-archive-async --stanza=c2 archive-get %f "%p"'`;
    expect(isolateScratchArchiveGet(line, '/scratch/data')).toBe(
      `restore_command = 'pgbackrest --config=/etc/pgbackrest/pgbackrest.conf --stanza=c2 --archive-async --lock-path=/scratch/data/${SCRATCH_ARCHIVE_GET_DIR}/lock --spool-path=/scratch/data/${SCRATCH_ARCHIVE_GET_DIR}/spool archive-get %f "%p"'`);
    for (const other of [`restore_command = 'cp /mnt/wal/%f "%p"'`, `archive_mode = 'off'`, `# restore_command = 'pgbackrest archive-get %f "%p"'`]) expect(isolateScratchArchiveGet(other, '/scratch/data')).toBe(other);
  });
});
