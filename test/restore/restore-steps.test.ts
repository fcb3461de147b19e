// The restore's steps against a real PostgreSQL (no C2 needed): the swap by rename is atomic and
// re-entrant, the restore database is owned by C2's role, configs go back with the old ones kept
// aside (also after a kill between the renames), and the runs that must stop do stop, before
// anything under the production name changes: wrong passphrase (13), failed checks (8), bad flags (2).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { startThrowawayPostgres, type ThrowawayPostgres } from '../../lib/servers/postgres.ts';
import { seedC2Database } from '../../lib/c2-db/seed-database.ts';
import { deriveDbKey, sealDbValuesBatch } from '../../lib/e4/keystore.ts';
import { createMemoryLogger } from '../../lib/log.ts';
import { runCommand } from '../../lib/cli/command.ts';
import { OpsError } from '../../lib/cli/exit-codes.ts';
import { validateStackSettings } from '../../lib/settings/stack-settings.ts';
import { runBackup } from '../../backups/create-backup.ts';
import { openBackupSet } from '../../backups/backup-sets.ts';
import { openTarget } from '../../backups/targets.ts';
import { checkObjectOwners, createRestoreDatabase, restoreDatabaseNames, swapRestoredDatabaseIn, withDatabase } from '../../backups/restore/production-database.ts';
import { configsPaths, restoreConfigsDir, restoreExtraFiles } from '../../backups/restore/restore-configs.ts';
import { c2LifecycleFromStack } from '../../backups/restore/c2-lifecycle.ts';
import { readRestoreJournal, RestoreJournalError } from '../../backups/restore/restore-journal.ts';
import { runRestore, type RestoreOptions } from '../../backups/restore/run-restore.ts';
import { validateRestoreReport, type RestoreReport } from '../../backups/restore/restore-report.ts';
import { buildRestoreReport } from '../../backups/restore/restore-outcome.ts';
import { command as restoreCommand } from '../../scripts/restore.ts';
import { createPgClient } from '../../lib/pg/pg-client.ts';

const PASSPHRASE = 'restore-steps-passphrase-0123456789';

describe('restore steps on a real PostgreSQL', () => {
  let pgs: ThrowawayPostgres;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-restore-steps-'));
  const sql = (q: string, db = 'postgres') => pgs.psql(q, db).trim();
  let identity: string;
  let setId: string;
  const target = path.join(dir, 'target');
  const configsDir = path.join(dir, 'configs');
  const extraFile = path.join(dir, 'keys', 'c2-private.key');

  beforeAll(async () => {
    pgs = await startThrowawayPostgres();
    sql(`CREATE ROLE e4c2 LOGIN`);
    sql('CREATE DATABASE e4 OWNER e4c2');
    const dbKey = deriveDbKey(PASSPHRASE);
    await withDatabase(pgs.url('e4'), async (c) => {
      await c.query('SET ROLE e4c2');
      await seedC2Database(c, { clients: 200, topics: 50, links: 400, sealBatch: (p) => sealDbValuesBatch(dbKey, p) });
    });
    identity = path.join(dir, 'ops.age');
    execFileSync('age-keygen', ['-o', identity], { stdio: 'ignore' });
    const recipient = /public key: (age1\w+)/.exec(fs.readFileSync(identity, 'utf8'))![1];
    fs.mkdirSync(configsDir);
    fs.writeFileSync(path.join(configsDir, 'config.yaml'), 'crypto-mode: symkey\ndb-type: postgres\n');
    fs.mkdirSync(path.dirname(extraFile));
    fs.writeFileSync(extraFile, 'the key of the backup');
    fs.writeFileSync(path.join(dir, 'passphrase'), PASSPHRASE + '\n');
    const r = await runBackup({ databaseUrl: pgs.url('e4'), configsDir, extraFiles: [extraFile], targets: [target], recipients: [recipient],
      passphraseFile: path.join(dir, 'passphrase'), lockFile: path.join(dir, 'backup.lock'), log: createMemoryLogger('backup') });
    setId = r.setId;
  }, 120_000);

  afterAll(async () => {
    await pgs?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('swaps in one transaction: the restore takes the production name, the old one is kept, a re-run changes nothing', async () => {
    const names = restoreDatabaseNames('prod1', '20261202_030000');
    sql('CREATE DATABASE prod1');
    sql(`CREATE TABLE marker (v text); INSERT INTO marker VALUES ('old')`, 'prod1');
    await withDatabase(pgs.url('postgres'), (admin) => createRestoreDatabase(admin, names, 'e4c2'));
    sql(`CREATE TABLE marker (v text); INSERT INTO marker VALUES ('new')`, names.restore);
    // A session left on production (psql, an exporter) does not block the swap: it is ended.
    const straggler = createPgClient({ connectionString: pgs.url('prod1') });
    await straggler.connect();
    straggler.on('error', () => undefined);
    const r = await withDatabase(pgs.url('postgres'), (admin) => swapRestoredDatabaseIn(admin, names));
    expect(r).toEqual({ keptDatabase: names.kept, terminatedSessions: 1, alreadySwapped: false });
    expect(sql('SELECT v FROM marker', 'prod1')).toBe('new');
    expect(sql('SELECT v FROM marker', names.kept)).toBe('old');
    expect(sql(`SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'prod1'`)).toBe('e4c2');
    // Re-entered after a kill that came after the commit: nothing more happens.
    const again = await withDatabase(pgs.url('postgres'), (admin) => swapRestoredDatabaseIn(admin, names));
    expect(again.alreadySwapped).toBe(true);
    expect(sql('SELECT v FROM marker', 'prod1')).toBe('new');
    await straggler.end().catch(() => undefined);
  });

  it('refuses to swap when the kept name is taken, renaming nothing', async () => {
    const names = restoreDatabaseNames('prod2', '20261202_030000');
    for (const n of ['prod2', names.kept, names.restore]) sql(`CREATE DATABASE "${n}"`);
    await expect(withDatabase(pgs.url('postgres'), (admin) => swapRestoredDatabaseIn(admin, names))).rejects.toThrow(/both prod2 and prod2_before_20261202_030000 exist/);
    expect(sql(`SELECT count(*) FROM pg_database WHERE datname IN ('prod2', '${names.kept}', '${names.restore}')`)).toBe('3');
  });

  it('a half-filled restore database from a killed run is dropped and created again, owned by C2\'s role; owners are checked', async () => {
    const names = restoreDatabaseNames('prod3', '20261202_030000');
    sql(`CREATE DATABASE "${names.restore}"`);
    sql('CREATE TABLE half_restored (x int)', names.restore);
    await withDatabase(pgs.url('postgres'), (admin) => createRestoreDatabase(admin, names, 'e4c2'));
    expect(sql(`SELECT count(*) FROM pg_tables WHERE tablename = 'half_restored'`, names.restore)).toBe('0');
    sql('CREATE TABLE owned_by_postgres (x int)', names.restore);
    const check = await withDatabase(pgs.url(names.restore), (c) => checkObjectOwners(c, 'e4c2'));
    expect(check.ok).toBe(false);
    expect(check.detail).toMatch(/owned_by_postgres \(postgres\)/);
  });

  it('restores the configs dir with the old one kept aside, and finishes a run killed between the two renames', async () => {
    const t = openTarget(target);
    const m = await openBackupSet(t, setId);
    fs.writeFileSync(path.join(configsDir, 'config.yaml'), 'changed after the backup\n');
    const r = await restoreConfigsDir(t, m, identity, configsDir, 's1');
    expect(fs.readFileSync(path.join(configsDir, 'config.yaml'), 'utf8')).toContain('crypto-mode: symkey');
    expect(fs.readFileSync(path.join(r.keptAside!, 'config.yaml'), 'utf8')).toBe('changed after the backup\n');
    // Killed after the live dir moved aside, before the restored one took its name: the name is free, the re-run fills it.
    const p = configsPaths(configsDir, 's1');
    fs.renameSync(configsDir, p.staging);
    fs.writeFileSync(`${p.staging}.complete`, '');
    const again = await restoreConfigsDir(t, m, identity, configsDir, 's1');
    expect(again.keptAside).toBe(p.aside);
    expect(fs.readFileSync(path.join(configsDir, 'config.yaml'), 'utf8')).toContain('crypto-mode: symkey');
    expect(fs.readFileSync(path.join(p.aside, 'config.yaml'), 'utf8')).toBe('changed after the backup\n');
    expect(fs.existsSync(p.staging) || fs.existsSync(`${p.staging}.complete`)).toBe(false);
    // Extra files (pubkey mode's key file) go back to their paths; the file found there is kept beside it.
    fs.writeFileSync(extraFile, 'a newer key');
    const extra = await restoreExtraFiles(t, m, identity, dir, 's1');
    expect(extra).toEqual([{ file: extraFile, keptAside: `${extraFile}.before-s1` }]);
    expect(fs.readFileSync(extraFile, 'utf8')).toBe('the key of the backup');
    expect(fs.readFileSync(`${extraFile}.before-s1`, 'utf8')).toBe('a newer key');
  });

  const options = (stateDir: string, over: Partial<RestoreOptions> = {}): RestoreOptions => ({
    target, backup: 'latest', identityFile: identity, databaseUrl: pgs.url('e4'), passphraseFile: path.join(dir, 'passphrase'),
    c2: { url: 'https://127.0.0.1:1' }, lifecycle: { stopCommands: ['true'], startCommands: ['true'] }, automationEnginePaused: true, resync: true,
    stateDir, yes: true, logger: createMemoryLogger('restore'), ...over,
  });

  it('a wrong passphrase stops the restore in preflight (exit 13): nothing is created, C2 is not stopped, the report says so', async () => {
    const wrong = path.join(dir, 'wrong-passphrase');
    fs.writeFileSync(wrong, 'not the escrowed passphrase at all\n');
    const stateDir = path.join(dir, 'state-wrong');
    const stopped = path.join(dir, 'stopped-marker');
    const before = sql(`SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database`);
    const err = await runRestore(options(stateDir, { passphraseFile: wrong, lifecycle: { stopCommands: [`touch ${stopped}`], startCommands: ['true'] } })).catch((e) => e);
    expect(err).toBeInstanceOf(OpsError);
    expect(err.exitCode).toBe(13);
    expect(fs.existsSync(stopped)).toBe(false);
    expect(sql(`SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database`)).toBe(before);
    const report = JSON.parse(fs.readFileSync(path.join(stateDir, 'restore-report.json'), 'utf8')) as RestoreReport;
    validateRestoreReport(report);
    expect(report.ok).toBe(false);
    expect(report.steps[0]).toMatchObject({ step: 'preflight', status: 'failed' });
    expect(report.database.swapped).toBe(false);
  });

  it('a restored database that fails its checks is never swapped in (exit 8): production keeps its name and rows', async () => {
    // A set whose manifest promises other counts than its dump holds.
    const badTarget = path.join(dir, 'bad-target');
    fs.cpSync(path.join(target, setId), path.join(badTarget, setId), { recursive: true });
    const mf = path.join(badTarget, setId, 'manifest.json');
    const m = JSON.parse(fs.readFileSync(mf, 'utf8'));
    m.c2.inventory.clients += 1;
    fs.writeFileSync(mf, JSON.stringify(m));
    const stateDir = path.join(dir, 'state-badcheck');
    const err = await runRestore(options(stateDir, { target: badTarget })).catch((e) => e);
    expect(err.exitCode, err.message).toBe(8);
    expect(err.message).toMatch(/inventory-counts: restored counts differ from the manifest: clients: manifest 201, restored 200/);
    expect(sql('SELECT count(*) FROM clients', 'e4')).toBe('200');
    const j = readRestoreJournal(path.join(stateDir, 'restore-journal.jsonl'));
    expect([...j.done.keys()]).toEqual(['preflight', 'stop-c2', 'restore-database']);
    const report = JSON.parse(fs.readFileSync(path.join(stateDir, 'restore-report.json'), 'utf8')) as RestoreReport;
    expect(report.database.swapped).toBe(false);
    expect(report.next!.join(' ')).toMatch(/e4 was not swapped: it is the old production database, untouched/);
    sql(`DROP DATABASE "${j.identity!.restoreDatabase}"`);
  });

  it('bad or missing flags are usage errors (exit 2) naming the flag; stop and start commands go together', async () => {
    const err: string[] = [];
    const run = (argv: string[]) => runCommand(restoreCommand, argv, { stdout: () => undefined, stderr: (t) => err.push(t) });
    expect(await run(['--target', target, '--database-url', pgs.url('e4')])).toBe(2);
    expect(err.pop()).toMatch(/--identity is required/);
    expect(await run(['--target', target, '--identity', identity, '--passphrase-file', 'p', '--c2-url', 'https://x:8888', '--database-url', pgs.url('e4'), '--c2-stop-command', 'true'])).toBe(2);
    expect(err.pop()).toMatch(/--c2-stop-command and --c2-start-command go together/);
    expect(await run(['--plan', '--c2-timout', '5m'])).toBe(2);
    expect(err.pop()).toMatch(/unknown flag --c2-timout; did you mean --c2-timeout\?/);
    expect(await run(['--finalize', '--state-dir', path.join(dir, 'nothing-here'), '--database-url', pgs.url('e4'), '--yes'])).toBe(2);
    expect(err.pop()).toMatch(/holds no restore journal/);
  });

  it('the stack file names the replica containers on their Docker hosts', () => {
    const s = validateStackSettings({ profile: 'ha', hosts: [{ name: 'a', url: 'ssh://ops@a', address: '10.0.0.1' }, { name: 'b', url: 'ssh://ops@b', address: '10.0.0.2' }, { name: 'c', url: 'ssh://ops@c', address: '10.0.0.3' }], c2: { replicas: 2 } });
    expect(c2LifecycleFromStack(s)).toEqual({
      stopCommands: ['docker --host ssh://ops@a stop --time 20 c2-0', 'docker --host ssh://ops@b stop --time 20 c2-1'],
      startCommands: ['docker --host ssh://ops@a start c2-0', 'docker --host ssh://ops@b start c2-1'],
    });
  });

  it('the journal ignores a torn last line (a kill mid-write) and refuses a damaged one in the middle', () => {
    const f = path.join(dir, 'torn.jsonl');
    fs.writeFileSync(f, '{"type":"step-begin","step":"preflight","at":"x"}\n{"type":"step-done","step":"preflight","at":"x","result":{}}\n{"type":"step-be');
    const j = readRestoreJournal(f);
    expect([...j.done.keys()]).toEqual(['preflight']);
    fs.writeFileSync(f, '{"type":"step-begin"\n{"type":"step-done","step":"preflight","at":"x","result":{}}\n\n');
    expect(() => readRestoreJournal(f)).toThrow(RestoreJournalError);
  });
  it('pgBackRest: a restore stopped inside restore-data-directory (the move done, pgbackrest restore failed) reports the kept directory to swap back', () => {
    const dataDir = path.join(dir, 'pgdata');
    const kept = `${dataDir}.before-20261202_031000`;
    const identity = {
      restoreId: 'restore-20261202_031000-abcdef', startedAt: '2026-12-02T03:10:00.000Z', stamp: '20261202_031000', setId: '20261202-010000F',
      target: 'pgbackrest /etc/pgbackrest/pgbackrest.conf stanza c2', database: 'e4', restoreDatabase: 'e4', keptDatabase: 'e4', c2Role: '',
      source: 'pgbackrest' as const, dataDir, keptDataDir: kept, targetTime: 'latest', delta: false,
    };
    const results = new Map<never, Record<string, unknown>>([['preflight', { checks: [] }], ['stop-c2', {}], ['stop-postgres', {}]] as never);
    const journal = readRestoreJournal(path.join(dir, 'no-such-journal.jsonl'));
    const report = (error?: OpsError) => buildRestoreReport({ identity, results, journal, resync: true, finishedAt: new Date('2026-12-02T03:12:00Z'), journalFile: 'j', error });
    const failed = new OpsError('pgbackrest', 'pgbackrest restore failed: [104] ArchiveMismatchError');
    // Not moved yet: the old directory is where it was.
    expect(report(failed).dataDirectory).toEqual({ path: dataDir, keptAside: null, delta: false });
    expect(report(failed).next!.join('\n')).toContain(`${dataDir} was not moved yet`);
    // Moved aside, then pgbackrest restore failed: the report names the directory to rename back.
    fs.mkdirSync(kept, { recursive: true });
    try {
      const r = report(failed);
      validateRestoreReport(r);
      expect(r.dataDirectory!.keptAside).toBe(kept);
      expect(r.next!.join('\n')).toContain(`the old data directory is ${kept}; to go back: stop PostgreSQL, move ${dataDir} away, rename ${kept} to ${dataDir}`);
      expect(r.steps.find((x) => x.step === 'restore-data-directory')).toMatchObject({ status: 'failed' });
    } finally { fs.rmSync(kept, { recursive: true, force: true }); }
  });
});
