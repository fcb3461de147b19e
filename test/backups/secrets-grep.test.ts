// A whole operator run against a real C2 (PostgreSQL + Mosquitto + C2): backup to a directory and to an
// rclone remote (a crypt remote over `type = local`, so rclone holds a real secret), the printers and the
// rclone refusal, a restore drill, and a topic-key resync. Then every file the run wrote and every line it
// printed or logged is searched for the DB password, C2's DB passphrase, the age identity and the
// rclone secrets. None may appear anywhere.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { execFileSync, spawn } from 'node:child_process';
import { startC2TestStack, type C2TestStack } from '../../lib/servers/c2.ts';
import { createC2Api, type C2Api } from '../../lib/c2/c2-api.ts';
import { skipWithoutC2, C2_MISSING_REASON } from '../c2/c2-stack.ts';

const repo = path.resolve(import.meta.dirname, '../..');
const DB_PASSWORD = 'Db-Pa55word-never-logged-7f3a';
const RCLONE_CRYPT_PASSWORD = 'rclone-crypt-clear-91bd';
const S3_SECRET = 'S3SecretAccessKeyNeverLogged0042';

function run(script: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(repo, 'scripts', script), ...args], { cwd: repo, env: { ...process.env, ...env } });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    child.on('close', (code) => resolve({ code, out }));
  });
}

function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...filesUnder(p));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

describe.skipIf(skipWithoutC2)(`secrets never leave their files during a whole backup + drill + resync run${skipWithoutC2 ? ` (${C2_MISSING_REASON})` : ''}`, () => {
  let stack: C2TestStack;
  let api: C2Api;
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-secrets-grep-'));
  const inputs = path.join(base, 'inputs'); // what the operator provides: the only place secrets may be
  const written = path.join(base, 'written'); // everything the run writes, its TMPDIR included
  const outputs: string[] = [];
  let secrets: Record<string, string>;
  let env: NodeJS.ProcessEnv;
  let dbUrlWithPassword: string;
  let dbUrl: string;
  let identity: string;
  let recipient: string;
  let rcloneConfig: string;
  let passFile: string;

  beforeAll(async () => {
    fs.mkdirSync(inputs);
    fs.mkdirSync(path.join(written, 'tmp'), { recursive: true });
    // The drill's scratch PostgreSQL runs as user postgres, with its folders in our TMPDIR.
    fs.chmodSync(base, 0o755);
    fs.chmodSync(written, 0o755);
    fs.chmodSync(path.join(written, 'tmp'), 0o1777);
    // A passphrase of this test alone (the launcher's default is a literal in the source, so in tsx's cache).
    stack = await startC2TestStack({ passphrase: `c2-db-passphrase-${crypto.randomBytes(12).toString('hex')}` });
    api = createC2Api({ baseUrl: stack.c2.baseUrl, ca: stack.c2.ca.certPem });
    for (let i = 0; i < 5; i++) await api.newClient(`dev-${i}`, crypto.randomBytes(32));
    for (let i = 0; i < 8; i++) await api.newTopic(`site/t-${i}`);
    for (let i = 0; i < 5; i++) await api.linkClientTopic(`dev-${i}`, `site/t-${i}`);
    dbUrl = stack.postgres.url(stack.database);
    stack.postgres.psql(`ALTER ROLE CURRENT_USER PASSWORD '${DB_PASSWORD}'`);
    const u = new URL(dbUrl);
    u.password = DB_PASSWORD;
    dbUrlWithPassword = u.toString();
    identity = path.join(inputs, 'drill.age');
    execFileSync('age-keygen', ['-o', identity], { stdio: 'ignore' });
    recipient = execFileSync('age-keygen', ['-y', identity], { encoding: 'utf8' }).trim();
    passFile = path.join(inputs, 'c2-db-passphrase');
    fs.writeFileSync(passFile, stack.passphrase + '\n', { mode: 0o600 });
    const obscured = execFileSync('rclone', ['obscure', RCLONE_CRYPT_PASSWORD], { encoding: 'utf8' }).trim();
    rcloneConfig = path.join(inputs, 'rclone.conf');
    fs.writeFileSync(rcloneConfig, `[vault]\ntype = local\n\n[offsite]\ntype = crypt\nremote = vault:${path.join(written, 'remote-store')}\npassword = ${obscured}\n\n`
      + `[unused-s3]\ntype = s3\nprovider = Other\naccess_key_id = AKIAUNUSED\nsecret_access_key = ${S3_SECRET}\n`, { mode: 0o600 });
    secrets = {
      'DB password': DB_PASSWORD, 'C2 DB passphrase': stack.passphrase,
      'age identity': fs.readFileSync(identity, 'utf8').split('\n').find((l) => l.startsWith('AGE-SECRET-KEY-'))!,
      'rclone crypt password': RCLONE_CRYPT_PASSWORD, 'rclone obscured password': obscured, 'rclone s3 secret': S3_SECRET,
    };
    env = { TMPDIR: path.join(written, 'tmp'), HOME: path.join(written, 'home'), E4OPS_LOG_LEVEL: 'debug' };
  }, 180_000);
  afterAll(async () => {
    api?.close();
    await stack?.stop();
    fs.rmSync(base, { recursive: true, force: true });
  }, 120_000);

  it('backup (directory and rclone remote), printers, refusal, drill and resync run; no secret in any file or log line', async () => {
    const local = path.join(written, 'local-target');
    const common = ['--recipient', recipient, '--passphrase-file', passFile, '--lock-file', path.join(written, 'backup.lock'), '--create-target'];
    const step = async (what: string, script: string, args: string[], expected: number, extraEnv: NodeJS.ProcessEnv = {}) => {
      const r = await run(script, args, { ...env, ...extraEnv });
      outputs.push(`## ${what}\n${r.out}`);
      expect(r.code, `${what}: ${r.out}`).toBe(expected);
      return r.out;
    };
    // A password in the URL (the worst habit) and, on the second run, PGPASSWORD in the environment.
    await step('backup to a directory', 'backup.ts', ['--database-url', dbUrlWithPassword, '--target', local, ...common,
      '--metrics-file', path.join(written, 'textfile', 'backup.prom')], 0);
    await step('backup to an rclone remote', 'backup.ts', ['--database-url', dbUrl, '--target', 'offsite:c2', '--rclone-config', rcloneConfig, ...common], 0, { PGPASSWORD: DB_PASSWORD });
    await step('list', 'backup.ts', ['list', '--target', local, '--target', 'offsite:c2', '--rclone-config', rcloneConfig, '--json'], 0);
    await step('dry run', 'backup.ts', ['--database-url', dbUrlWithPassword, '--target', local, ...common, '--dry-run', '--json'], 0);
    await step('printer with a password', 'backup.ts', ['--print-systemd-timer', '--print-crontab', '--database-url', dbUrlWithPassword, '--target', local, '--recipient', recipient], 2);
    await step('printer', 'backup.ts', ['--print-systemd-timer', '--print-crontab', '--database-url', dbUrl, '--target', 'offsite:c2', '--rclone-config', rcloneConfig, '--recipient', recipient], 0);
    await step('rclone connection string', 'backup.ts', ['list', '--target', `:s3,access_key_id=AKIAUNUSED,secret_access_key=${S3_SECRET}:bucket`], 2);
    await step('verify with the identity', 'backup.ts', ['verify', '--all', '--target', 'offsite:c2', '--rclone-config', rcloneConfig, '--identity', identity], 0);
    await step('drill from the rclone remote', 'restore-drill.ts', ['--target', 'offsite:c2', '--rclone-config', rcloneConfig, '--identity', identity, '--passphrase-file', passFile,
      '--report', path.join(written, 'drill.json'), '--metrics-file', path.join(written, 'textfile', 'drill.prom')], 0);
    await step('resync', 'resync-topic-keys.ts', ['--c2-url', stack.c2.baseUrl, '--c2-ca', stack.c2.ca.certFile, '--journal', path.join(written, 'resync.jsonl'),
      '--automation-engine-paused', '--expected-counts', path.join(written, 'drill.json'), '--database-url', dbUrlWithPassword, '--report', path.join(written, 'resync.json')], 0);

    const files = filesUnder(written);
    // The run did write: sets on both targets, reports, journal, metrics.
    expect(files.some((f) => f.endsWith('manifest.json') && f.startsWith(local))).toBe(true);
    expect(files.some((f) => f.includes('remote-store'))).toBe(true);
    for (const f of ['drill.json', 'drill.md', 'resync.jsonl', 'resync.json', 'resync.md', path.join('textfile', 'backup.prom')]) expect(files).toContain(path.join(written, f));
    const leaks: string[] = [];
    for (const [name, secret] of Object.entries(secrets)) {
      for (const f of files) if (fs.readFileSync(f).includes(Buffer.from(secret))) leaks.push(`${name} in ${path.relative(written, f)}`);
      for (const o of outputs) if (o.includes(secret)) leaks.push(`${name} in the output of ${o.split('\n')[0]}`);
    }
    expect(leaks).toEqual([]);
    // And the check can fail: the inputs hold every secret.
    const inputText = filesUnder(inputs).map((f) => fs.readFileSync(f, 'utf8')).join('\n') + DB_PASSWORD + RCLONE_CRYPT_PASSWORD;
    for (const s of Object.values(secrets)) expect(inputText).toContain(s);
  }, 400_000);
});
