// `e4ops restore` end to end, with the real C2, PostgreSQL and Mosquitto: a production C2 run as a
// service (stopped and started by shell commands, as systemd would), a live simulated fleet, a backup,
// then keys rotated, a client, a topic and a config file added; the disaster; `e4ops restore --yes`.
// C2 serves the restored counts, every device (simulated, and one on e4go v1.1.0) reads every linked
// topic again, the old database is
// kept until --finalize. Then the restore is killed after the database restore and during the
// resync: a re-run finishes the rest and no finished step runs twice.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { c2BinaryAvailable, c2BinaryDir, pickLoopbackHostFor5432, startC2 } from '../../lib/servers/c2.ts';
import { startThrowawayPostgres, type ThrowawayPostgres } from '../../lib/servers/postgres.ts';
import { startThrowawayMosquitto, type ThrowawayMosquitto } from '../../lib/servers/mosquitto.ts';
import { createC2Api, type C2Api } from '../../lib/c2/c2-api.ts';
import { createFleet, type Fleet } from '../../lib/fleet/fleet.ts';
import { createMemoryLogger } from '../../lib/log.ts';
import { runBackup } from '../../backups/create-backup.ts';
import { validateRestoreReport, type RestoreReport } from '../../backups/restore/restore-report.ts';
import { readRestoreJournal } from '../../backups/restore/restore-journal.ts';
import { readJournal as readResyncJournal } from '../../backups/resync/resync-journal.ts';
import { writeC2Service } from './c2-service.ts';
import { startE4goDevices, type E4goDevices } from '../e4go-devices/e4go-devices.ts';
import { runE4ops } from '../harness/e4ops-cli.ts';

const DEVICES = ['dev-a', 'dev-b', 'dev-c', 'dev-d', 'dev-e'];
const LATE_DEVICE = 'dev-f'; // registered after the backup: only the inventory knows it
const TOPICS = ['site/temp', 'site/door', 'site/alarm', 'site/power', 'site/water', 'site/air'];
// Enough topics that the resync runs for a while (a kill lands inside it), each linked to one device.
const BULK = Array.from({ length: 400 }, (_, i) => `bulk/${i}`);
const linked = (i: number) => [TOPICS[i % 6], TOPICS[(i + 2) % 6], TOPICS[(i + 3) % 6], ...BULK.filter((_, b) => b % DEVICES.length === i)];
const LATE_TOPICS = ['site/temp', 'site/added-after-backup'];
// A device built on e4go v1.1.0 (the library real devices use), linked to a topic rotated after the backup and one that is not.
const GO_DEVICE = 'go-dev';
const GO_TOPICS = ['site/temp', 'site/water'];

function ageKeyPair(dir: string): { identity: string; recipient: string } {
  const identity = path.join(dir, 'ops.age-identity');
  execFileSync('age-keygen', ['-o', identity], { stdio: 'ignore' });
  return { identity, recipient: /public key: (age1\w+)/.exec(fs.readFileSync(identity, 'utf8'))![1] };
}

const runRestoreCli = (args: string[], killWhen?: () => boolean) => runE4ops(['restore', ...args], killWhen);

const journalText = (f: string) => (fs.existsSync(f) ? fs.readFileSync(f, 'utf8') : '');
const hashTree = (dir: string): string => {
  const h = crypto.createHash('sha256');
  const walk = (d: string) => { for (const e of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) { const p = path.join(d, e.name); h.update(p); if (e.isDirectory()) walk(p); else h.update(fs.readFileSync(p)); } };
  walk(dir);
  return h.digest('hex');
};

describe.skipIf(!c2BinaryAvailable() && !process.env.CI)('e4ops restore end to end (real C2, PostgreSQL, Mosquitto, simulated fleet)', () => {
  let pgs: ThrowawayPostgres;
  let mq: ThrowawayMosquitto;
  let api: C2Api;
  let fleet: Fleet;
  let goDevices: E4goDevices;
  let setId: string;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-restore-e2e-'));
  const c2Dir = path.join(dir, 'c2');
  const configsDir = path.join(c2Dir, 'configs');
  const passFile = path.join(dir, 'passphrase');
  const service = path.join(dir, 'c2-service.sh');
  const caFile = path.join(dir, 'c2-ca.pem');
  const inventoryFile = path.join(dir, 'inventory.yaml');
  let keys: { identity: string; recipient: string };
  let baseArgs: string[];
  const sql = (q: string, db = 'postgres') => pgs.psql(q, db).trim();
  const databases = () => sql(`SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database WHERE datname LIKE 'e4%'`);
  const backupCounts = { clients: DEVICES.length + 1, topics: TOPICS.length + BULK.length, links: DEVICES.length * 3 + BULK.length + GO_TOPICS.length };

  beforeAll(async () => {
    if (!c2BinaryAvailable()) throw new Error(`the C2 binary is not built (looked in ${c2BinaryDir()}): run bash scripts/build-c2.sh first`);
    fs.chmodSync(dir, 0o755); // C2 runs as nobody below it
    const passphrase = `restore-e2e-${crypto.randomBytes(8).toString('hex')}`;
    fs.writeFileSync(passFile, passphrase + '\n');
    keys = ageKeyPair(dir);
    pgs = await startThrowawayPostgres({ host: await pickLoopbackHostFor5432(), port: 5432 });
    // C2 runs as its own role, not as postgres: the restore must leave every object owned by it.
    sql(`CREATE ROLE e4c2 LOGIN PASSWORD 'c2-db-password-123'`);
    sql('CREATE DATABASE e4 OWNER e4c2');
    mq = await startThrowawayMosquitto();
    // The first start writes C2's configs dir and certificates (and migrates the schema); then C2 runs as a service.
    const first = await startC2({ dir: c2Dir, db: { host: pgs.host, database: 'e4', username: 'e4c2', password: 'c2-db-password-123' }, passphrase, mqttBroker: mq.url, mqttClientId: 'e4c2-prod', logLevel: 'info' });
    fs.writeFileSync(caFile, first.ca.certPem);
    const baseUrl = first.baseUrl;
    await first.stop();
    writeC2Service(service, c2Dir, passFile);
    execFileSync('sh', [service, 'start']);
    api = createC2Api({ baseUrl, ca: first.ca.certPem });
    for (let i = 0; i < 100; i++) { if (await api.countClients().then(() => true, () => false)) break; await new Promise((r) => setTimeout(r, 100)); }

    fleet = await createFleet({ brokerUrl: mq.url, devices: [...DEVICES, LATE_DEVICE].map((name) => ({ name })), logger: createMemoryLogger('fleet') });
    for (const n of DEVICES) await api.newClient(n, fleet.device(n).keyForC2);
    for (const t of [...TOPICS, ...BULK]) await api.newTopic(t);
    for (let i = 0; i < DEVICES.length; i++) for (const t of linked(i)) await api.linkClientTopic(DEVICES[i], t);
    await fleet.waitFor((f) => DEVICES.every((n, i) => linked(i).every((t) => f.device(n).topicKey(t))), { what: 'initial topic keys', timeoutMs: 60_000 });
    goDevices = await startE4goDevices(mq.url);
    const goKey = crypto.randomBytes(32);
    await goDevices.add({ name: GO_DEVICE, identityKey: goKey, topics: GO_TOPICS });
    await api.newClient(GO_DEVICE, goKey);
    for (const t of GO_TOPICS) await api.linkClientTopic(GO_DEVICE, t);
    await goDevices.waitFor(GO_DEVICE, (r) => GO_TOPICS.every((t) => r.topicKeys[t]), 30_000);

    // The dump says OWNER TO postgres for one table (as dumps of a C2 run as postgres do); the restore must not care.
    sql('ALTER TABLE topic_keys OWNER TO postgres', 'e4');
    const backup = await runBackup({
      databaseUrl: pgs.url('e4'), configsDir, targets: [path.join(dir, 'target')], recipients: [keys.recipient],
      passphraseFile: passFile, lockFile: path.join(dir, 'backup.lock'), log: createMemoryLogger('backup'),
    });
    setId = backup.setId;
    sql('ALTER TABLE topic_keys OWNER TO e4c2', 'e4');

    // After the backup: keys rotate twice (so not even a device's previous key is the backup's), a device and a
    // topic appear, a config file changes.
    const rotated = TOPICS.slice(0, 3);
    for (let round = 0; round < 2; round++) {
      const before = new Map(rotated.map((t) => [t, fleet.device('dev-a').topicKey(t) ?? fleet.device('dev-b').topicKey(t)!]));
      for (const t of rotated) {
        await api.newTopic(t);
        for (let i = 0; i < DEVICES.length; i++) if (linked(i).includes(t)) await api.linkClientTopic(DEVICES[i], t);
        if (GO_TOPICS.includes(t)) await api.linkClientTopic(GO_DEVICE, t);
      }
      await fleet.waitFor((f) => rotated.every((t) => !(f.device('dev-a').topicKey(t) ?? f.device('dev-b').topicKey(t))!.equals(before.get(t)!)), { what: `rotation ${round + 1}` });
    }
    await goDevices.waitFor(GO_DEVICE, (r) => r.commandsOk >= GO_TOPICS.length + 2, 30_000);
    await api.newClient(LATE_DEVICE, fleet.device(LATE_DEVICE).keyForC2);
    await api.newTopic('site/added-after-backup');
    for (const t of LATE_TOPICS) await api.linkClientTopic(LATE_DEVICE, t);
    await fleet.waitFor((f) => LATE_TOPICS.every((t) => f.device(LATE_DEVICE).topicKey(t)), { what: 'late device keys' });
    fs.writeFileSync(path.join(configsDir, 'changed-after-backup.txt'), 'not in the backup\n');
    fs.writeFileSync(path.join(dir, 'dev-f.key'), fleet.device(LATE_DEVICE).keyForC2.toString('hex'));
    fs.writeFileSync(inventoryFile, ['version: 1', 'cryptoMode: symkey', 'clients:',
      ...DEVICES.map((n, i) => `  - name: ${n}\n    topics: [${linked(i).slice(0, 3).join(', ')}]`),
      `  - name: ${GO_DEVICE}\n    topics: [${GO_TOPICS.join(', ')}]`,
      `  - name: ${LATE_DEVICE}\n    keyFile: dev-f.key\n    topics: [${LATE_TOPICS.join(', ')}]`].join('\n') + '\n');

    baseArgs = ['--target', path.join(dir, 'target'), '--identity', keys.identity, '--passphrase-file', passFile,
      '--database-url', `postgres://postgres:superuser-pw@${pgs.host}:5432/e4`, '--configs-dir', configsDir,
      '--c2-url', baseUrl, '--c2-ca', caFile, '--c2-stop-command', `sh ${service} stop`, '--c2-start-command', `sh ${service} start`,
      '--inventory', inventoryFile];
  }, 300_000);

  afterAll(async () => {
    await fleet?.close();
    await goDevices?.stop();
    api?.close();
    try { execFileSync('sh', [service, 'stop']); } catch { /* not running */ }
    await mq?.stop();
    await pgs?.stop();
    if (!process.env.E4OPS_KEEP_TEST_DIR) fs.rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  /** Every device (the late one too) reads a message C2 itself protects on each topic it is linked to. */
  async function everyDeviceReadsEveryLinkedTopic(): Promise<void> {
    const links = new Map([...DEVICES.map((n, i) => [n, linked(i)] as const), [LATE_DEVICE, LATE_TOPICS] as const]);
    await Promise.all([...links].map(([n, ts]) => Promise.all(ts.map((t) => fleet.subscribe(n, t, 1)))));
    const marker = `restored-${crypto.randomBytes(4).toString('hex')}`;
    for (const t of new Set([...links.values(), GO_TOPICS].flat())) await api.sendMessage(t, `${marker} ${t}`);
    const reads = (n: string, t: string) => fleet.readable(n, t).some((p) => p.toString() === `${marker} ${t}`);
    await fleet.waitFor(() => [...links].every(([n, ts]) => ts.every((t) => reads(n, t))), { timeoutMs: 60_000, what: 'every device to read every linked topic' })
      .catch(() => undefined);
    const missing = [...links].flatMap(([n, ts]) => ts.filter((t) => !reads(n, t)).map((t) => `${n}:${t}`));
    // The e4go v1.1.0 device opens C2's message on each of its topics with the key the resync sent it.
    const go = await goDevices.waitFor(GO_DEVICE, (r) => GO_TOPICS.every((t) => r.messages.some((m) => m.topic === t && m.payload === `${marker} ${t}`)), 30_000).catch((e) => e as Error);
    if (go instanceof Error) missing.push(`${GO_DEVICE} (e4go): ${go.message.slice(0, 300)}`);
    expect(missing, `device/topic pairs that did not read C2's message: ${missing.slice(0, 20).join(' ')}`).toEqual([]);
  }

  it('--plan prints every step and what it touches, and changes nothing (database, configs dir, C2)', async () => {
    const before = { dbs: databases(), rows: sql('SELECT count(*) FROM clients_topickeys', 'e4'), configs: hashTree(configsDir), clients: await api.countClients() };
    const stateDir = path.join(dir, 'state-plan');
    const r = await runRestoreCli([...baseArgs, '--state-dir', stateDir, '--plan']);
    expect(r.code, r.stderr).toBe(0);
    for (const step of ['preflight', 'stop-c2', 'restore-database', 'check-database', 'restore-configs', 'swap-database', 'start-c2', 'check-c2', 'resync', 'report']) expect(r.stdout).toContain(step);
    expect(r.stdout).toMatch(/create e4_restore_\d{8}_\d{6} owned by e4c2/);
    expect(r.stdout).toMatch(/e4 -> e4_before_\d{8}_\d{6}/);
    expect(r.stdout).toContain(`runs: sh ${service} stop`);
    expect({ dbs: databases(), rows: sql('SELECT count(*) FROM clients_topickeys', 'e4'), configs: hashTree(configsDir), clients: await api.countClients() }).toEqual(before);
    expect(fs.existsSync(stateDir)).toBe(false);
  }, 120_000);

  it('refuses without --yes when there is no terminal to ask on, and without the automation engine confirmed paused (exit 9, nothing changed)', async () => {
    const before = { dbs: databases(), configs: hashTree(configsDir) };
    const noYes = await runRestoreCli([...baseArgs, '--state-dir', path.join(dir, 'state-refused'), '--automation-engine-paused']);
    expect(noYes.code).toBe(9);
    expect(noYes.stderr).toMatch(/no terminal to ask on; pass --yes/);
    const noPause = await runRestoreCli([...baseArgs, '--state-dir', path.join(dir, 'state-refused'), '--yes']);
    expect(noPause.code).toBe(9);
    expect(noPause.stderr).toMatch(/automation engine is paused/);
    expect({ dbs: databases(), configs: hashTree(configsDir) }).toEqual(before);
    expect(await api.countClients()).toBe(backupCounts.clients + 1);
  }, 120_000);

  it('restores production after rows were destroyed: C2 serves the restored counts, every device reads every topic, the old database is kept until --finalize', async () => {
    sql('TRUNCATE clients_topickeys; DELETE FROM topic_keys', 'e4'); // the disaster: a botched change wiped the keys
    const stateDir = path.join(dir, 'state-a');
    const r = await runRestoreCli([...baseArgs, '--state-dir', stateDir, '--automation-engine-paused', '--yes']);
    expect(r.code, r.stderr.slice(-3000)).toBe(0);
    const report = JSON.parse(fs.readFileSync(path.join(stateDir, 'restore-report.json'), 'utf8')) as RestoreReport;
    validateRestoreReport(report);
    expect(fs.readFileSync(path.join(stateDir, 'restore-report.md'), 'utf8')).toContain(`Restore finished: e4 from set ${setId}`);
    expect(report.ok).toBe(true);
    expect(report.source.setId).toBe(setId);
    expect(report.counts).toEqual(backupCounts);
    expect(report.steps.map((s) => [s.step, s.status, s.runs])).toEqual(['preflight', 'stop-c2', 'restore-database', 'check-database', 'restore-configs', 'swap-database', 'start-c2', 'check-c2', 'resync', 'report'].map((s) => [s, 'done', 1]));
    expect(report.checks.filter((c) => !c.ok)).toEqual([]);
    expect(report.checks.map((c) => c.name)).toEqual(expect.arrayContaining(['set-verified', 'identity-matches', 'passphrase-fingerprint', 'schema', 'inventory-counts', 'keys-decrypt', 'owners', 'c2-serves-restored-data']));
    expect(report.rto.c2ServingSeconds).toBeGreaterThan(0);
    expect(report.rto.resyncDoneSeconds!).toBeGreaterThanOrEqual(report.rto.c2ServingSeconds!);
    expect(report.rpo.seconds).toBeGreaterThan(0);
    expect(report.resync!.rotated).toBe(backupCounts.topics);
    expect(report.resync!.clientsCreated).toBe(1);

    // The production name holds the restore, owned by C2's role; the old database is kept beside it.
    const kept = report.database.keptName!;
    expect(kept).toMatch(/^e4_before_\d{8}_\d{6}$/);
    expect(databases()).toBe(['e4', kept].sort().join(','));
    expect(sql(`SELECT string_agg(DISTINCT tableowner, ',') FROM pg_tables WHERE schemaname = 'public'`, 'e4')).toBe('e4c2');
    expect(sql('SELECT count(*) FROM topic_keys', kept)).toBe('0'); // the damaged one, for forensics or rollback
    // Configs: the backup's, the newer ones kept aside.
    expect(fs.existsSync(path.join(configsDir, 'changed-after-backup.txt'))).toBe(false);
    expect(fs.existsSync(path.join(report.configs!.keptAside!, 'changed-after-backup.txt'))).toBe(true);
    // C2 serves the restore plus what the inventory re-created; every device reads every linked topic.
    expect(await api.countClients()).toBe(backupCounts.clients + 1);
    expect(await api.countTopics()).toBe(backupCounts.topics + 1);
    await everyDeviceReadsEveryLinkedTopic();

    // A finished restore refuses to run again; --finalize drops what it kept.
    const again = await runRestoreCli([...baseArgs, '--state-dir', stateDir, '--automation-engine-paused', '--yes']);
    expect(again.code).toBe(9);
    expect(again.stderr).toMatch(/already finished/);
    expect(databases()).toContain(kept);
    const fin = await runRestoreCli(['--finalize', '--state-dir', stateDir, '--database-url', `postgres://postgres@${pgs.host}:5432/e4`, '--yes']);
    expect(fin.code, fin.stderr).toBe(0);
    expect(databases()).toBe('e4');
    expect(fs.existsSync(report.configs!.keptAside!)).toBe(false);
  }, 300_000);

  it('killed right after the database restore (production dropped): the re-run finishes, restores nothing twice, and the journal names the database to swap', async () => {
    sql('DROP DATABASE e4 WITH (FORCE)'); // the disaster
    const stateDir = path.join(dir, 'state-b');
    const journal = path.join(stateDir, 'restore-journal.jsonl');
    const args = [...baseArgs, '--state-dir', stateDir, '--automation-engine-paused', '--yes', '--c2-role', 'e4c2'];
    const first = await runRestoreCli(args, () => /"type":"step-done","step":"restore-database"/.test(journalText(journal)));
    expect(first.killed, first.stderr.slice(-2000)).toBe(true);
    const j = readRestoreJournal(journal);
    const restoreDb = j.identity!.restoreDatabase;
    // Production was gone before the restore; the journal says exactly which database holds the restore.
    expect(databases()).toBe(restoreDb);
    const oid = sql(`SELECT oid FROM pg_database WHERE datname = '${restoreDb}'`);

    const second = await runRestoreCli(args);
    expect(second.code, second.stderr.slice(-3000)).toBe(0);
    const after = readRestoreJournal(journal);
    expect(after.runs).toBe(2);
    // Steps finished before the kill did not run again; the restored database is the same one, now under the production name.
    for (const s of ['preflight', 'stop-c2', 'restore-database'] as const) expect(after.begun.get(s)).toBe(1);
    expect(sql(`SELECT oid FROM pg_database WHERE datname = 'e4'`)).toBe(oid);
    expect(databases()).toBe('e4');
    const report = JSON.parse(fs.readFileSync(path.join(stateDir, 'restore-report.json'), 'utf8')) as RestoreReport;
    expect(report.ok).toBe(true);
    expect(report.runs).toBe(2);
    expect(report.database.keptName).toBeNull();
    expect(await api.countTopics()).toBe(backupCounts.topics + 1);
  }, 300_000);

  it('killed during the resync: the re-run resumes it, no topic is rotated twice, production is never missing', async () => {
    sql('TRUNCATE clients_topickeys', 'e4'); // the disaster: every link gone
    const stateDir = path.join(dir, 'state-c');
    const resyncJournal = path.join(stateDir, 'resync-journal.jsonl');
    const args = [...baseArgs, '--state-dir', stateDir, '--automation-engine-paused', '--yes'];
    const first = await runRestoreCli(args, () => (journalText(resyncJournal).match(/"type":"done"/g)?.length ?? 0) >= 30);
    expect(first.killed, `the resync finished before the kill: ${first.stderr.slice(-1000)}`).toBe(true);
    const j = readRestoreJournal(path.join(stateDir, 'restore-journal.jsonl'));
    expect(j.inProgress).toBe('resync');
    expect(databases()).toBe(['e4', j.identity!.keptDatabase].sort().join(',')); // the restore is already production

    const second = await runRestoreCli(args);
    expect(second.code, second.stderr.slice(-3000)).toBe(0);
    const after = readRestoreJournal(path.join(stateDir, 'restore-journal.jsonl'));
    for (const s of ['preflight', 'stop-c2', 'restore-database', 'check-database', 'restore-configs', 'swap-database', 'start-c2', 'check-c2'] as const) expect(after.begun.get(s)).toBe(1);
    expect(after.begun.get('resync')).toBe(2);
    // Each topic rotated exactly once across both runs.
    const done = journalText(resyncJournal).split('\n').filter((l) => l.includes('"type":"done"')).map((l) => JSON.parse(l).topic as string);
    expect(done.length).toBe(new Set(done).size);
    expect(readResyncJournal(resyncJournal).rotated.size).toBe(backupCounts.topics);
    expect(JSON.parse(fs.readFileSync(path.join(stateDir, 'restore-report.json'), 'utf8')).steps.find((s: { step: string }) => s.step === 'resync').runs).toBe(2);
    await everyDeviceReadsEveryLinkedTopic();
  }, 300_000);
});
