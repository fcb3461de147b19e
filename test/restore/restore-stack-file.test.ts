// `e4ops restore --stack-file` against a running container stack: C2 runs from the image stacks/docker/c2.Dockerfile
// builds, as the container `c2-0` the stacks create, on a private Docker engine that the stack file names as its
// host (`hosts[0].url: unix://<socket>`). No --c2-stop-command / --c2-start-command: the restore stops and starts
// that container through the stack's Docker host, takes C2's database name and role from the file (the disaster
// dropped the database, so no owner is left to read), and C2 serves the restored data from the same container.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { c2BinaryAvailable, pickLoopbackHostFor5432, startC2 } from '../../lib/servers/c2.ts';
import { startThrowawayPostgres, type ThrowawayPostgres } from '../../lib/servers/postgres.ts';
import { startThrowawayMosquitto, type ThrowawayMosquitto } from '../../lib/servers/mosquitto.ts';
import { dockerEngineInstalled, importDebianBaseImage, startPrivateDockerEngine, type PrivateDockerEngine } from '../../lib/servers/docker-engine.ts';
import { buildC2ImageFromBinaries, C2_IMAGE_BASE_PACKAGES } from '../../lib/servers/c2-image.ts';
import { createC2Api, type C2Api } from '../../lib/c2/c2-api.ts';
import { createMemoryLogger } from '../../lib/log.ts';
import { runBackup } from '../../backups/create-backup.ts';
import { validateRestoreReport, type RestoreReport } from '../../backups/restore/restore-report.ts';
import { readRestoreJournal } from '../../backups/restore/restore-journal.ts';
import { runE4ops } from '../harness/e4ops-cli.ts';

const CLIENTS = ['stack-a', 'stack-b', 'stack-c'];
const TOPICS = ['stack/one', 'stack/two'];

const runCli = (args: string[], killWhen?: () => boolean) => runE4ops(['restore', ...args], killWhen);

describe.skipIf((!c2BinaryAvailable() || !dockerEngineInstalled()) && !process.env.CI)('e4ops restore --stack-file (C2 container on the stack\'s Docker host, private engine)', () => {
  let engine: PrivateDockerEngine;
  let pgs: ThrowawayPostgres;
  let mq: ThrowawayMosquitto;
  let api: C2Api;
  let setId: string;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-restore-stack-'));
  const passFile = path.join(dir, 'passphrase');
  const caFile = path.join(dir, 'c2-ca.pem');
  const stackFile = path.join(dir, 'Pulumi.test.yaml');
  const identity = path.join(dir, 'ops.age-identity');
  let baseUrl: string;
  const sql = (q: string, db = 'postgres') => pgs.psql(q, db).trim();
  const container = (f: string) => engine.docker(['inspect', '--format', f, 'c2-0']).trim();

  beforeAll(async () => {
    fs.chmodSync(dir, 0o755); // C2 runs as nobody below it
    const passphrase = `stack-file-${crypto.randomBytes(8).toString('hex')}`;
    fs.writeFileSync(passFile, passphrase + '\n');
    execFileSync('age-keygen', ['-o', identity], { stdio: 'ignore' });
    const recipient = /public key: (age1\w+)/.exec(fs.readFileSync(identity, 'utf8'))![1];
    engine = await startPrivateDockerEngine();
    importDebianBaseImage(engine.host, 'e4ops/debian-base:test', { include: C2_IMAGE_BASE_PACKAGES });
    const image = buildC2ImageFromBinaries(engine.host, { tag: 'e4ops/c2:stack-file-test', baseImage: 'e4ops/debian-base:test' });
    pgs = await startThrowawayPostgres({ host: await pickLoopbackHostFor5432(), port: 5432 });
    sql(`CREATE ROLE e4c2 LOGIN PASSWORD 'c2-db-password-123'`);
    sql('CREATE DATABASE e4 OWNER e4c2');
    mq = await startThrowawayMosquitto();
    // startC2 from the image writes the configs dir and certificates and migrates the schema; then the stack's
    // long-lived container c2-0 (restart policy, as stacks/components/c2.ts creates it) runs C2 from them.
    const c2Dir = path.join(dir, 'c2');
    const first = await startC2({ dir: c2Dir, image, dockerHost: engine.host, db: { host: pgs.host, database: 'e4', username: 'e4c2', password: 'c2-db-password-123' }, passphrase, mqttBroker: mq.url, mqttClientId: 'e4c2-stack', logLevel: 'info' });
    baseUrl = first.baseUrl;
    fs.writeFileSync(caFile, first.ca.certPem);
    await first.stop();
    const owner = fs.statSync(c2Dir);
    engine.docker(['create', '--name', 'c2-0', '--restart', 'unless-stopped', '--network', 'host', '--user', `${owner.uid}:${owner.gid}`,
      '-e', `E4C2_DB_ENCRYPTION_PASSPHRASE=${passphrase}`, '-v', `${path.join(c2Dir, 'configs')}:/opt/e4/configs`, image]);
    engine.docker(['start', 'c2-0']);
    api = createC2Api({ baseUrl, ca: first.ca.certPem });
    for (let i = 0; i < 200 && !(await api.countClients().then(() => true, () => false)); i++) await new Promise((r) => setTimeout(r, 100));

    for (const n of CLIENTS) await api.newClient(n, crypto.randomBytes(32));
    for (const t of TOPICS) await api.newTopic(t);
    for (const n of CLIENTS) for (const t of TOPICS) await api.linkClientTopic(n, t);
    const backup = await runBackup({
      databaseUrl: pgs.url('e4'), targets: [path.join(dir, 'target')], recipients: [recipient],
      passphraseFile: passFile, lockFile: path.join(dir, 'backup.lock'), log: createMemoryLogger('backup'),
    });
    setId = backup.setId;
    fs.writeFileSync(stackFile, [
      'config:', '  e4ops:settings:', '    profile: minimal', '    hosts:', '      - name: local', `        url: ${engine.host}`,
      '    c2:', '      cryptoMode: symkey', '    postgres:', '      database: e4', '      username: e4c2', '    backup:', '      enabled: false', '',
    ].join('\n'));
  }, 600_000);

  afterAll(async () => {
    api?.close();
    await engine?.stop();
    await mq?.stop();
    await pgs?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  it('stops and starts the stack\'s C2 container, takes the database role from the stack file, and C2 serves the restored data', async () => {
    const args = ['--stack-file', stackFile, '--target', path.join(dir, 'target'), '--backup', setId, '--identity', identity, '--passphrase-file', passFile,
      '--database-url', `postgres://postgres@${pgs.host}:5432/e4`, '--c2-url', baseUrl, '--c2-ca', caFile, '--no-resync', '--state-dir', path.join(dir, 'state')];
    const plan = await runCli([...args, '--plan']);
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stdout).toContain(`runs: docker --host ${engine.host} stop --time 20 c2-0`);
    expect(plan.stdout).toContain(`docker --host ${engine.host} start c2-0`);

    sql('DROP DATABASE e4 WITH (FORCE)'); // the disaster: no database, so no owner to tell C2's role
    const startedBefore = container('{{.State.StartedAt}}');
    const r = await runCli([...args, '--automation-engine-paused', '--yes']);
    expect(r.code, r.stderr.slice(-3000)).toBe(0);
    const report = JSON.parse(fs.readFileSync(path.join(dir, 'state', 'restore-report.json'), 'utf8')) as RestoreReport;
    validateRestoreReport(report);
    expect(report.ok).toBe(true);
    expect(report.database.c2Role).toBe('e4c2');
    expect(sql(`SELECT string_agg(DISTINCT tableowner, ',') FROM pg_tables WHERE schemaname = 'public'`, 'e4')).toBe('e4c2');
    const j = readRestoreJournal(path.join(dir, 'state', 'restore-journal.jsonl'));
    expect((j.done.get('stop-c2')!.result.commands as { command: string }[]).map((c) => c.command)).toEqual([`docker --host ${engine.host} stop --time 20 c2-0`]);
    expect((j.done.get('start-c2')!.result.commands as { command: string }[]).map((c) => c.command)).toEqual([`docker --host ${engine.host} start c2-0`]);
    // The same container was stopped and started again (not replaced), and it serves the restored data.
    expect(container('{{.State.Running}}')).toBe('true');
    expect(Date.parse(container('{{.State.StartedAt}}'))).toBeGreaterThan(Date.parse(startedBefore));
    expect(await api.countClients()).toBe(CLIENTS.length);
    expect(await api.countTopics()).toBe(TOPICS.length);
    for (const n of CLIENTS) expect((await api.allTopicsForClient(n)).sort()).toEqual([...TOPICS].sort());
  }, 300_000);

  it('refuses a stack file whose database is not the one --database-url names (exit 2, nothing changed)', async () => {
    const r = await runCli(['--stack-file', stackFile, '--target', path.join(dir, 'target'), '--identity', identity, '--passphrase-file', passFile,
      '--database-url', `postgres://postgres@${pgs.host}:5432/other`, '--c2-url', baseUrl, '--state-dir', path.join(dir, 'state-other'), '--automation-engine-paused', '--yes']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`--database-url names database other, but ${stackFile} says C2 uses e4`);
    expect(fs.existsSync(path.join(dir, 'state-other'))).toBe(false);
    expect(container('{{.State.Running}}')).toBe('true');
  }, 60_000);
});
