// `e4ops restore` from pgBackRest, end to end: production PostgreSQL archiving into a real pgBackRest
// repository (encrypted), the real C2 as a service, a simulated fleet. A full backup; keys rotated twice
// and a device added; the target time; then the disaster (C2's database dropped). The restore stops C2
// and PostgreSQL, moves the data directory aside, recovers to the target time, starts both, checks, and
// resyncs: every device reads every linked topic again; --finalize removes the kept data directory.
// Then the restore is killed (SIGKILL) right after the data directory restore and during the resync: a
// re-run finishes the rest, no finished step runs again, and the production data directory is never
// missing (the recovered one is in place, the old one kept under the name the journal fixed).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { c2BinaryAvailable, pickLoopbackHostFor5432, startC2 } from '../../lib/servers/c2.ts';
import { startThrowawayPostgres, postgresBinDir, type ThrowawayPostgres } from '../../lib/servers/postgres.ts';
import { startThrowawayMosquitto, type ThrowawayMosquitto } from '../../lib/servers/mosquitto.ts';
import { createThrowawayPgBackRestRepo, type ThrowawayPgBackRestRepo } from '../../lib/servers/pgbackrest-repo.ts';
import { createC2Api, type C2Api } from '../../lib/c2/c2-api.ts';
import { createFleet, type Fleet } from '../../lib/fleet/fleet.ts';
import { createMemoryLogger } from '../../lib/log.ts';
import { validateRestoreReport, type RestoreReport } from '../../backups/restore/restore-report.ts';
import { readRestoreJournal } from '../../backups/restore/restore-journal.ts';
import { readJournal as readResyncJournal } from '../../backups/resync/resync-journal.ts';
import { writeC2Service } from './c2-service.ts';
import { runE4ops } from '../harness/e4ops-cli.ts';

const DEVICES = ['pdev-a', 'pdev-b', 'pdev-c'];
const TOPICS = ['plant/temp', 'plant/door', 'plant/alarm', 'plant/power'];
const linked = (i: number) => [TOPICS[i % 4], TOPICS[(i + 1) % 4]];
const LATE = 'pdev-late'; // registered after the target time: only the inventory knows it
// Created before the kill tests' target times, so that their resync runs long enough for a kill to land inside it.
const BULK = Array.from({ length: 300 }, (_, i) => `bulk/${i}`);

const runCli = (args: string[], killWhen?: () => boolean) => runE4ops(['restore', ...args], killWhen);

const journalText = (f: string) => (fs.existsSync(f) ? fs.readFileSync(f, 'utf8') : '');

describe.skipIf(!c2BinaryAvailable() && !process.env.CI)('e4ops restore from pgBackRest (real pgBackRest, PostgreSQL, C2, Mosquitto)', () => {
  let repo: ThrowawayPgBackRestRepo;
  let pgs: ThrowawayPostgres;
  let mq: ThrowawayMosquitto;
  let api: C2Api;
  let fleet: Fleet;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-restore-pitr-'));
  const passFile = path.join(dir, 'passphrase');
  const c2Service = path.join(dir, 'c2-service.sh');
  const pgService = path.join(dir, 'pg-service.sh');
  let args: string[];
  let targetTime: string;
  const sql = (q: string, db = 'postgres') => pgs.psql(q, db).trim();

  beforeAll(async () => {
    fs.chmodSync(dir, 0o755);
    const passphrase = `pitr-e2e-${crypto.randomBytes(8).toString('hex')}`;
    fs.writeFileSync(passFile, passphrase + '\n');
    repo = createThrowawayPgBackRestRepo({ cipherPassphrase: 'repository cipher passphrase 0123' });
    pgs = await startThrowawayPostgres({ host: await pickLoopbackHostFor5432(), port: 5432, settings: repo.postgresSettings(2) });
    repo.attach(pgs);
    await repo.init();
    // PostgreSQL as a service too: pg_ctl on its data directory, as the unit file would.
    const pgCtl = path.join(postgresBinDir(), 'pg_ctl');
    fs.writeFileSync(pgService, `#!/bin/sh
case "$1" in
start) runuser -u postgres -- '${pgCtl}' -D '${pgs.dataDir}' status >/dev/null 2>&1 && exit 0 # running already: like systemctl start
  mkdir -p '${pgs.socketDir}' && chown postgres '${pgs.socketDir}' && runuser -u postgres -- '${pgCtl}' -D '${pgs.dataDir}' -l '${path.dirname(pgs.dataDir)}/pg-restored.log' -W start ;;
stop) [ -f '${pgs.dataDir}/postmaster.pid' ] || exit 0; runuser -u postgres -- '${pgCtl}' -D '${pgs.dataDir}' -m fast -w stop ;;
esac
`, { mode: 0o755 });
    sql('CREATE ROLE e4c2 LOGIN');
    sql('CREATE DATABASE e4 OWNER e4c2');
    mq = await startThrowawayMosquitto();
    const c2Dir = path.join(dir, 'c2');
    const first = await startC2({ dir: c2Dir, db: { host: pgs.host, database: 'e4', username: 'e4c2' }, passphrase, mqttBroker: mq.url, mqttClientId: 'e4c2-pitr', logLevel: 'info' });
    const caFile = path.join(dir, 'ca.pem');
    fs.writeFileSync(caFile, first.ca.certPem);
    await first.stop();
    writeC2Service(c2Service, c2Dir, passFile);
    execFileSync('sh', [c2Service, 'start']);
    api = createC2Api({ baseUrl: first.baseUrl, ca: first.ca.certPem });
    for (let i = 0; i < 100 && !(await api.countClients().then(() => true, () => false)); i++) await new Promise((r) => setTimeout(r, 100));

    fleet = await createFleet({ brokerUrl: mq.url, devices: [...DEVICES, LATE].map((name) => ({ name })), logger: createMemoryLogger('fleet') });
    for (const n of DEVICES) await api.newClient(n, fleet.device(n).keyForC2);
    for (const t of TOPICS) await api.newTopic(t);
    for (let i = 0; i < DEVICES.length; i++) for (const t of linked(i)) await api.linkClientTopic(DEVICES[i], t);
    await fleet.waitFor((f) => DEVICES.every((n, i) => linked(i).every((t) => f.device(n).topicKey(t))), { what: 'initial keys' });
    await repo.run('backup', ['--type=full']);

    // After the backup, before the target: two rotations of two topics (the recovery keeps them: point in time).
    for (let r = 0; r < 2; r++) for (const t of TOPICS.slice(0, 2)) {
      await api.newTopic(t);
      for (let i = 0; i < DEVICES.length; i++) if (linked(i).includes(t)) await api.linkClientTopic(DEVICES[i], t);
    }
    await new Promise((r) => setTimeout(r, 1500));
    targetTime = new Date().toISOString();
    await new Promise((r) => setTimeout(r, 1500));
    // After the target: a rotation and a new device (lost by the recovery; the resync repairs both).
    await api.newTopic(TOPICS[2]);
    for (let i = 0; i < DEVICES.length; i++) if (linked(i).includes(TOPICS[2])) await api.linkClientTopic(DEVICES[i], TOPICS[2]);
    await api.newClient(LATE, fleet.device(LATE).keyForC2);
    await api.linkClientTopic(LATE, TOPICS[3]);
    await fleet.waitFor((f) => !!f.device(LATE).topicKey(TOPICS[3]), { what: 'late device key' });
    await repo.run('check'); // the WAL past the target is archived
    fs.writeFileSync(path.join(dir, 'late.key'), fleet.device(LATE).keyForC2.toString('hex'));
    const inventory = path.join(dir, 'inventory.yaml');
    fs.writeFileSync(inventory, ['version: 1', 'cryptoMode: symkey', 'clients:', ...DEVICES.map((n, i) => `  - name: ${n}\n    topics: [${linked(i).join(', ')}]`),
      `  - name: ${LATE}\n    keyFile: late.key\n    topics: [${TOPICS[3]}]`].join('\n') + '\n');
    args = ['--pgbackrest-config', repo.configFile, '--pgbackrest-config-include-path', repo.configIncludePath, '--stanza', repo.stanza,
      '--target-time', targetTime, '--pg-data', pgs.dataDir, '--postgres-stop-command', `sh ${pgService} stop`, '--postgres-start-command', `sh ${pgService} start`,
      '--passphrase-file', passFile, '--database-url', `postgres://postgres@${pgs.host}:5432/e4`, '--c2-url', first.baseUrl, '--c2-ca', caFile,
      '--c2-stop-command', `sh ${c2Service} stop`, '--c2-start-command', `sh ${c2Service} start`, '--inventory', inventory,
      '--automation-engine-paused', '--yes', '--state-dir', path.join(dir, 'state')];
  }, 300_000);

  afterAll(async () => {
    await fleet?.close();
    api?.close();
    try { execFileSync('sh', [c2Service, 'stop']); } catch { /* not running */ }
    try { execFileSync('sh', [pgService, 'stop']); } catch { /* not running */ }
    await mq?.stop();
    await pgs?.stop();
    repo?.cleanup();
    fs.rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  /** Every device (the late one too) reads a message C2 protects on each of its (non-bulk) topics. */
  async function everyDeviceReadsEveryTopic(): Promise<void> {
    const links = new Map([...DEVICES.map((n, i) => [n, linked(i)] as const), [LATE, [TOPICS[3]]] as const]);
    await Promise.all([...links].map(([n, ts]) => Promise.all(ts.map((t) => fleet.subscribe(n, t, 1)))));
    const marker = `pitr-${crypto.randomBytes(4).toString('hex')}`;
    for (const t of TOPICS) await api.sendMessage(t, `${marker} ${t}`);
    const reads = (n: string, t: string) => fleet.readable(n, t).some((p) => p.toString() === `${marker} ${t}`);
    await fleet.waitFor(() => [...links].every(([n, ts]) => ts.every((t) => reads(n, t))), { timeoutMs: 60_000, what: 'every device to read every topic' }).catch(() => undefined);
    expect([...links].flatMap(([n, ts]) => ts.filter((t) => !reads(n, t)).map((t) => `${n}:${t}`))).toEqual([]);
  }

  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const countsNow = () => ({ clients: +sql('SELECT count(*) FROM clients', 'e4'), topics: +sql('SELECT count(*) FROM topic_keys', 'e4'), links: +sql('SELECT count(*) FROM clients_topickeys', 'e4') });
  /** The bulk topics (once), a target time, then the disaster (every link gone) with its WAL archived. */
  async function targetTimeThenDisaster(): Promise<{ targetTime: string; counts: { clients: number; topics: number; links: number } }> {
    if (!sql(`SELECT count(*) FROM topic_keys WHERE topic LIKE 'bulk/%'`, 'e4').startsWith(String(BULK.length))) {
      for (const t of BULK) await api.newTopic(t);
      for (let b = 0; b < BULK.length; b++) await api.linkClientTopic(DEVICES[b % DEVICES.length], BULK[b]);
    }
    const counts = countsNow();
    await sleep(1500);
    const at = new Date().toISOString();
    await sleep(1500);
    sql('TRUNCATE clients_topickeys', 'e4');
    await repo.run('check'); // the WAL past the target is archived
    return { targetTime: at, counts };
  }
  const argsFor = (at: string, stateDir: string) => args.map((a, i) => (args[i - 1] === '--target-time' ? at : args[i - 1] === '--state-dir' ? stateDir : a));

  it('recovers to the target time with the old data directory kept aside; C2 serves it; every device reads every linked topic after the resync', async () => {
    sql('DROP DATABASE e4 WITH (FORCE)'); // the disaster
    const plan = await runCli([...args.filter((a) => a !== '--yes'), '--plan']);
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stdout).toMatch(/move .* to .*\.before-\d{8}_\d{6}, then pgbackrest restore into an empty/);
    expect(fs.existsSync(path.join(dir, 'state'))).toBe(false);

    const r = await runCli(args);
    expect(r.code, r.stderr.slice(-3000)).toBe(0);
    const report = JSON.parse(fs.readFileSync(path.join(dir, 'state', 'restore-report.json'), 'utf8')) as RestoreReport;
    validateRestoreReport(report);
    expect(report.source.kind).toBe('pgbackrest');
    expect(report.steps.map((s) => s.step)).toEqual(['preflight', 'stop-c2', 'stop-postgres', 'restore-data-directory', 'start-postgres', 'check-database', 'start-c2', 'check-c2', 'resync', 'report']);
    expect(report.steps.every((s) => s.status === 'done')).toBe(true);
    expect(report.checks.filter((c) => !c.ok)).toEqual([]);
    expect(report.checks.map((c) => c.name)).toEqual(expect.arrayContaining(['pgbackrest-backup', 'schema', 'keys-decrypt', 'owners', 'orphan-links', 'c2-serves-restored-data']));
    // The orphan links (reported, never fatal) are counted once C2 serves, off the way to it.
    const journalDone = readRestoreJournal(path.join(dir, 'state', 'restore-journal.jsonl')).done;
    expect((journalDone.get('check-database')!.result.checks as { name: string }[]).map((c) => c.name)).not.toContain('orphan-links');
    expect((journalDone.get('check-c2')!.result.checks as { name: string }[]).map((c) => c.name)).toContain('orphan-links');
    // The point in time: the database as it was at the target (before the late device), not as the backup had it.
    expect(report.counts).toEqual({ clients: DEVICES.length, topics: TOPICS.length, links: DEVICES.length * 2 });
    expect(Date.parse(report.rpo.restoredPointAt)).toBeLessThanOrEqual(Date.parse(targetTime));
    const kept = report.dataDirectory!.keptAside!;
    expect(fs.existsSync(path.join(kept, 'PG_VERSION'))).toBe(true);
    expect(report.rto.c2ServingSeconds).toBeGreaterThan(0);
    // C2 was started as soon as the schema check passed, while the keys were still being checked.
    expect(readRestoreJournal(path.join(dir, 'state', 'restore-journal.jsonl')).done.get('start-c2')!.result).toMatchObject({ startedDuringChecks: true });

    // C2 serves the recovered data plus what the inventory re-created; every device reads C2's message on each topic.
    expect(await api.countClients()).toBe(DEVICES.length + 1);
    await everyDeviceReadsEveryTopic();

    const fin = await runCli(['--finalize', '--state-dir', path.join(dir, 'state'), '--database-url', `postgres://postgres@${pgs.host}:5432/e4`, '--yes']);
    expect(fin.code, fin.stderr).toBe(0);
    expect(fs.existsSync(kept)).toBe(false);
  }, 300_000);
  it('killed right after the data directory restore: the re-run finishes, restores nothing twice, and the data directory is never missing', async () => {
    const { targetTime: at, counts } = await targetTimeThenDisaster();
    const stateDir = path.join(dir, 'state-kill-restored');
    const journal = path.join(stateDir, 'restore-journal.jsonl');
    const first = await runCli(argsFor(at, stateDir), () => /"type":"step-done","step":"restore-data-directory"/.test(journalText(journal)));
    expect(first.killed, first.stderr.slice(-2000)).toBe(true);
    const j = readRestoreJournal(journal);
    const kept = j.identity!.keptDataDir!;
    expect(kept).toMatch(/\.before-\d{8}_\d{6}$/);
    // Never missing: the recovered cluster is at the production path, the old one under the name the journal fixed.
    expect(fs.existsSync(path.join(pgs.dataDir, 'PG_VERSION'))).toBe(true);
    expect(fs.existsSync(path.join(kept, 'PG_VERSION'))).toBe(true);
    // A restore repeated by the re-run would empty the directory first: this file would go.
    fs.writeFileSync(path.join(pgs.dataDir, 'e4ops-test-marker'), 'left by the test after the kill\n');

    const second = await runCli(argsFor(at, stateDir));
    expect(second.code, second.stderr.slice(-3000)).toBe(0);
    const after = readRestoreJournal(journal);
    expect(after.runs).toBe(2);
    for (const s of ['preflight', 'stop-c2', 'stop-postgres', 'restore-data-directory'] as const) expect(after.begun.get(s), s).toBe(1);
    expect(fs.existsSync(path.join(pgs.dataDir, 'e4ops-test-marker'))).toBe(true);
    const report = JSON.parse(fs.readFileSync(path.join(stateDir, 'restore-report.json'), 'utf8')) as RestoreReport;
    validateRestoreReport(report);
    expect(report.ok).toBe(true);
    expect(report.runs).toBe(2);
    expect(report.dataDirectory!.keptAside).toBe(kept);
    expect(report.counts).toEqual(counts); // the target time's links, not the disaster's
    expect(report.steps.find((x) => x.step === 'restore-data-directory')).toMatchObject({ status: 'done', runs: 1 });
    expect(await api.countClients()).toBe(counts.clients);
    const fin = await runCli(['--finalize', '--state-dir', stateDir, '--database-url', `postgres://postgres@${pgs.host}:5432/e4`, '--yes']);
    expect(fin.code, fin.stderr).toBe(0);
    expect(fs.existsSync(kept)).toBe(false);
  }, 300_000);

  it('killed during the resync: the re-run resumes it, no topic is rotated twice, no earlier step runs again', async () => {
    const { targetTime: at, counts } = await targetTimeThenDisaster();
    const stateDir = path.join(dir, 'state-kill-resync');
    const journal = path.join(stateDir, 'restore-journal.jsonl');
    const resyncJournal = path.join(stateDir, 'resync-journal.jsonl');
    const first = await runCli(argsFor(at, stateDir), () => (journalText(resyncJournal).match(/"type":"done"/g)?.length ?? 0) >= 30);
    expect(first.killed, `the resync finished before the kill: ${first.stderr.slice(-1000)}`).toBe(true);
    const j = readRestoreJournal(journal);
    expect(j.inProgress).toBe('resync');
    // The recovered cluster serves at the production path; the old one is kept.
    expect(countsNow().clients).toBe(counts.clients);
    expect(fs.existsSync(path.join(j.identity!.keptDataDir!, 'PG_VERSION'))).toBe(true);

    const second = await runCli(argsFor(at, stateDir));
    expect(second.code, second.stderr.slice(-3000)).toBe(0);
    const after = readRestoreJournal(journal);
    for (const s of ['preflight', 'stop-c2', 'stop-postgres', 'restore-data-directory', 'start-postgres', 'check-database', 'start-c2', 'check-c2'] as const) expect(after.begun.get(s), s).toBe(1);
    expect(after.begun.get('resync')).toBe(2);
    // Each topic rotated exactly once across both runs, and every one of them.
    const done = journalText(resyncJournal).split('\n').filter((l) => l.includes('"type":"done"')).map((l) => JSON.parse(l).topic as string);
    expect(done.length).toBe(new Set(done).size);
    expect(readResyncJournal(resyncJournal).rotated.size).toBe(counts.topics);
    const report = JSON.parse(fs.readFileSync(path.join(stateDir, 'restore-report.json'), 'utf8')) as RestoreReport;
    expect(report.ok).toBe(true);
    expect(report.steps.find((x) => x.step === 'resync')!.runs).toBe(2);
    expect(report.dataDirectory!.keptAside).toBe(j.identity!.keptDataDir);
    await everyDeviceReadsEveryTopic();
  }, 300_000);
  it('a key check that fails after C2 was started early (wrong passphrase file) stops C2 again; exit 8; the report says which data directory to swap back', async () => {
    const { targetTime: at } = await targetTimeThenDisaster();
    const stateDir = path.join(dir, 'state-wrong-passphrase');
    const wrongPass = path.join(dir, 'wrong-passphrase');
    fs.writeFileSync(wrongPass, 'not the passphrase of this C2 database\n');
    const a = argsFor(at, stateDir).map((x, i, all) => (all[i - 1] === '--passphrase-file' ? wrongPass : x));
    const r = await runCli(a);
    expect(r.code, r.stderr.slice(-2000)).toBe(8);
    const j = readRestoreJournal(path.join(stateDir, 'restore-journal.jsonl'));
    expect(j.done.has('start-postgres')).toBe(true);
    expect(j.done.has('check-database')).toBe(false);
    // C2 had been started during the checks (the schema passed); it is stopped again.
    expect(fs.existsSync(path.join(dir, 'c2', 'c2.pid'))).toBe(false);
    expect(await api.countClients().then(() => 'answers', () => 'stopped')).toBe('stopped');
    const report = JSON.parse(fs.readFileSync(path.join(stateDir, 'restore-report.json'), 'utf8')) as RestoreReport;
    validateRestoreReport(report);
    expect(report.ok).toBe(false);
    expect(report.error).toMatch(/keys-decrypt/);
    expect(report.error).toMatch(/C2, started once the schema passed, was stopped again/);
    const kept = j.identity!.keptDataDir!;
    expect(report.dataDirectory!.keptAside).toBe(kept);
    expect(report.next!.join('\n')).toContain(`rename ${kept} to ${pgs.dataDir}`);
    expect(fs.existsSync(path.join(kept, 'PG_VERSION'))).toBe(true);
  }, 300_000);
});
