// Backups end to end against a real PostgreSQL seeded with C2's schema and sealed keys: local and
// rclone targets, list, verify (decrypting), prune by policy, the drill marker, and every fault the
// issue names: DB stopping mid-dump, damaged object, wrong identity, bad manifests, concurrent runs.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawn } from 'node:child_process';
import { startThrowawayPostgres, type ThrowawayPostgres } from '../../lib/servers/postgres.ts';
import { seedC2Database } from '../../lib/c2-db/seed-database.ts';
import { deriveDbKey, sealDbValue, passphraseFingerprint, openDbValue, openDbValuesBatch } from '../../lib/e4/keystore.ts';
import { readC2Inventory } from '../../lib/c2-db/inventory.ts';
import { verifyKeyStore } from '../../lib/c2-db/key-store.ts';
import { runBackup, type BackupOptions } from '../../backups/create-backup.ts';
import { listBackupSets, openBackupSet, openDecryptedObject, verifyBackupSet, markSetVerifiedByDrill } from '../../backups/backup-sets.ts';
import { pruneBackupSets } from '../../backups/retention.ts';
import { openTarget } from '../../backups/targets.ts';
import { MANIFEST_FILE } from '../../backups/manifest.ts';
import { EXIT } from '../../backups/exit-codes.ts';
import { NODE_FLAGS } from '../../backups/schedule.ts';
import { OPS_METRICS } from '../../lib/ops-metrics.ts';
import { renderBackupJobConfig } from '../../lib/render/backup-job.ts';
import MockPkg from '@elastic/elasticsearch-mock';

// CJS default export under ESM: take .default when present.
const EsMock: new () => { add(p: { method: string; path: string }, fn: (params: any) => any): void; getConnection(): any } = (MockPkg as any).default ?? MockPkg;

const repo = path.resolve(__dirname, '../..');
const PASSPHRASE = 'backup test passphrase, long enough';

function ageKeyPair(dir: string, name: string): { identity: string; recipient: string } {
  const identity = path.join(dir, `${name}.age`);
  execFileSync('age-keygen', ['-o', identity], { stdio: 'ignore' });
  return { identity, recipient: execFileSync('age-keygen', ['-y', identity], { encoding: 'utf8' }).trim() };
}

/** Run scripts/backup.ts by hand (npx tsx) or as the printed unit/cron line does (node NODE_FLAGS --import tsx). */
function cli(args: string[], env: NodeJS.ProcessEnv = {}, how: 'tsx' | 'scheduled' = 'tsx'): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const script = path.join(repo, 'scripts/backup.ts');
    const [cmd, pre] = how === 'tsx' ? [path.join(repo, 'node_modules/.bin/tsx'), []] : [process.execPath, [...NODE_FLAGS, '--import', 'tsx']];
    const child = spawn(cmd, [...pre, script, ...args], { env: { ...process.env, ...env }, cwd: repo });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('backups against a real C2-shaped PostgreSQL', () => {
  let server: ThrowawayPostgres;
  let url: string;
  let dir: string;
  let key: { identity: string; recipient: string };
  let base: Omit<BackupOptions, 'targets'>;
  let local: string;
  let remote: string;
  let rcloneConfig: string;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-backup-test-'));
    server = await startThrowawayPostgres();
    url = await server.createDatabase('c2');
    const dbKey = deriveDbKey(PASSPHRASE);
    await seedC2Database(url, { clients: 4000, topics: 1000, links: 20000, seal: (p) => sealDbValue(dbKey, p) });
    key = ageKeyPair(dir, 'operator');
    fs.mkdirSync(path.join(dir, 'configs'));
    fs.writeFileSync(path.join(dir, 'configs', 'config.yaml'), 'crypto-mode: symkey\ndb-type: postgres\n');
    fs.writeFileSync(path.join(dir, 'configs', 'c2.key'), 'not a real key, but secret');
    fs.writeFileSync(path.join(dir, 'passphrase'), PASSPHRASE + '\n');
    rcloneConfig = path.join(dir, 'rclone.conf');
    fs.writeFileSync(rcloneConfig, '[offsite]\ntype = local\n');
    local = path.join(dir, 'local-target');
    remote = `offsite:${path.join(dir, 'remote-target')}`;
    base = {
      databaseUrl: url, configsDir: path.join(dir, 'configs'), recipients: [key.recipient], passphraseFile: path.join(dir, 'passphrase'),
      lockFile: path.join(dir, 'backup.lock'), rcloneConfig, metricsFile: path.join(dir, 'textfile', 'e4ops_backup.prom'),
    };
  });
  afterAll(async () => {
    await server?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  let firstSet = '';
  it('stores one encrypted set on a local directory and an rclone remote, described by a valid manifest', async () => {
    fs.mkdirSync(path.join(dir, 'rendered'));
    fs.writeFileSync(path.join(dir, 'rendered', 'mosquitto.conf'), 'listener 1883\n');
    fs.writeFileSync(path.join(dir, 'stack-export.json'), JSON.stringify({ version: 3, deployment: { resources: [] } }));
    // Elasticsearch cannot run here: the snapshot step talks to @elastic/elasticsearch-mock.
    const es = new EsMock();
    es.add({ method: 'POST', path: '/_snapshot/c2/_verify' }, () => ({ nodes: {} }));
    es.add({ method: 'PUT', path: '/_snapshot/c2/:snap' }, (p: { path: string }) => ({ snapshot: { snapshot: p.path.split('/').pop(), state: 'SUCCESS', indices: ['messages-2026.11.25'] } }));
    const r = await runBackup({
      ...base, targets: [local, remote], renderedConfigsDir: path.join(dir, 'rendered'), pulumiStackExport: path.join(dir, 'stack-export.json'),
      elasticsearch: { node: 'http://127.0.0.1:9200', repository: 'c2', clientOptions: { Connection: es.getConnection() } },
    });
    firstSet = r.setId;
    expect(r.stored).toEqual([local, remote]);
    expect(r.failed).toEqual([]);
    const m = r.manifest;
    expect(m.c2).toEqual({ cryptoMode: 'symkey', cryptoModeSource: 'config', inventory: { clients: 4000, topics: 1000, topicLinks: 20000, clientLinks: 0 } });
    expect(m.postgres.serverVersion).toMatch(/^15\./);
    expect(m.recipients).toEqual([key.recipient]);
    expect(m.passphraseFingerprint?.value).toBe(passphraseFingerprint(PASSPHRASE));
    expect(m.objects.map((o) => o.name)).toEqual(['postgres.pgdump.zst.age', 'c2-configs.tar.zst.age', 'rendered-configs.tar.zst.age', 'pulumi-stack.json.zst.age']);
    expect(m.elasticsearch).toMatchObject({ repository: 'c2', snapshot: `e4ops-${r.setId.toLowerCase()}`, state: 'SUCCESS', indices: ['messages-2026.11.25'] });
    for (const spec of [local, remote]) {
      const t = openTarget(spec, { rcloneConfig });
      expect(await openBackupSet(t, r.setId)).toEqual(m);
    }
    // Nothing readable without the identity: neither the passphrase nor the configs appear in the stored bytes.
    const stored = fs.readdirSync(path.join(local, r.setId)).map((f) => fs.readFileSync(path.join(local, r.setId, f)));
    for (const b of stored) {
      expect(b.includes(Buffer.from(PASSPHRASE))).toBe(false);
      expect(b.includes(Buffer.from('not a real key'))).toBe(false);
    }
    const prom = fs.readFileSync(base.metricsFile!, 'utf8');
    expect(prom).toMatch(new RegExp(`^${OPS_METRICS.backupLastRunSuccess} 1$`, 'm'));
    expect(prom).toMatch(new RegExp(`^${OPS_METRICS.backupBytes} ${m.objects.reduce((a, o) => a + o.size, 0)}$`, 'm'));
    expect(prom).toContain(`${OPS_METRICS.backupSets}{target="${remote}"} 1`);
  });

  it('decrypts back to a pg_dump archive that pg_restore reads, and to the configs tar', async () => {
    const t = openTarget(local);
    const m = await openBackupSet(t, firstSet);
    const dump = path.join(dir, 'restored.pgdump');
    await new Promise<void>((resolve, reject) => {
      const s = openDecryptedObject(t, m, 'postgres.pgdump.zst.age', key.identity);
      s.on('error', reject);
      s.pipe(fs.createWriteStream(dump)).on('finish', () => resolve());
    });
    const toc = execFileSync('pg_restore', ['--list', dump], { encoding: 'utf8' });
    expect(toc).toMatch(/TABLE DATA public clients /);
    expect(toc).toMatch(/TABLE DATA public clients_topickeys /);
    // Round trip: restored into an empty database, the rows match the manifest and every key opens.
    const restored = await server.createDatabase('restored');
    execFileSync('pg_restore', ['--no-owner', '--exit-on-error', '-d', restored, dump]);
    expect(await readC2Inventory(restored)).toEqual(m.c2.inventory);
    const dbKey = deriveDbKey(PASSPHRASE);
    const keys = await verifyKeyStore(restored, (v) => openDbValue(dbKey, v), { openBatch: (xs) => openDbValuesBatch(dbKey, xs) });
    expect(keys.ok).toBe(true);
    expect(keys.clients.opened + keys.topics.opened).toBe(5000);
    const tarFile = path.join(dir, 'configs.tar');
    await new Promise<void>((resolve, reject) => {
      const s = openDecryptedObject(t, m, 'c2-configs.tar.zst.age', key.identity);
      s.on('error', reject);
      s.pipe(fs.createWriteStream(tarFile)).on('finish', () => resolve());
    });
    expect(execFileSync('tar', ['-tf', tarFile], { encoding: 'utf8' }).split('\n')).toEqual(expect.arrayContaining(['./config.yaml', './c2.key']));
    let stack = '';
    for await (const c of openDecryptedObject(t, m, 'pulumi-stack.json.zst.age', key.identity)) stack += c;
    expect(JSON.parse(stack)).toEqual({ version: 3, deployment: { resources: [] } });
  });

  it('CLI: list and verify a good set exit 0; verify re-reads and decrypts every object', async () => {
    const l = await cli(['list', '--target', local, '--target', remote, '--rclone-config', rcloneConfig, '--json']);
    expect(l.code).toBe(EXIT.ok);
    const listed = JSON.parse(l.stdout.trim().split('\n').pop()!);
    expect(listed.map((x: { sets: { setId: string; status: string }[] }) => x.sets.map((s) => [s.setId, s.status]))).toEqual([[[firstSet, 'complete']], [[firstSet, 'complete']]]);
    const v = await cli(['verify', '--target', remote, '--backup', 'latest', '--identity', key.identity, '--rclone-config', rcloneConfig]);
    expect(v.code).toBe(EXIT.ok);
    expect(v.stdout).toContain(`${firstSet}: OK`);
    expect(v.stdout).toMatch(/postgres\.pgdump\.zst\.age: ok .* decrypted/);
  });

  it('a flipped byte in a stored object: verify names the object and exits 6', async () => {
    const copy = path.join(dir, 'damaged-target');
    fs.cpSync(local, copy, { recursive: true });
    const obj = path.join(copy, firstSet, 'postgres.pgdump.zst.age');
    const b = fs.readFileSync(obj);
    b[Math.floor(b.length / 2)] ^= 0x01;
    fs.writeFileSync(obj, b);
    const r = await verifyBackupSet(openTarget(copy), firstSet, { identityFile: key.identity });
    expect(r.ok).toBe(false);
    expect(r.objects.find((o) => o.name === 'postgres.pgdump.zst.age')).toMatchObject({ ok: false, error: expect.stringMatching(/object postgres\.pgdump\.zst\.age .* is damaged: sha256/) });
    expect(r.objects.find((o) => o.name === 'c2-configs.tar.zst.age')?.ok).toBe(true);
    const v = await cli(['verify', '--target', copy, '--backup', firstSet, '--identity', key.identity]);
    expect(v.code).toBe(EXIT.integrity);
    expect(v.stdout).toMatch(/postgres\.pgdump\.zst\.age: object postgres\.pgdump\.zst\.age .*damaged/);
  });

  it('a dump object that decrypts but is not a pg_dump archive fails verify (pg_restore --list)', async () => {
    const copy = path.join(dir, 'not-a-dump-target');
    fs.cpSync(local, copy, { recursive: true });
    const obj = path.join(copy, firstSet, 'postgres.pgdump.zst.age');
    // Well-formed age + zstd of junk, with a manifest that matches it: only the content check can tell.
    execFileSync('sh', ['-c', `head -c 200000 /dev/urandom | zstd -q -c | age -r ${key.recipient} > ${obj}`]);
    const mf = path.join(copy, firstSet, MANIFEST_FILE);
    const m = JSON.parse(fs.readFileSync(mf, 'utf8'));
    const o = m.objects.find((x: { name: string }) => x.name === 'postgres.pgdump.zst.age');
    o.size = fs.statSync(obj).size;
    o.sha256 = execFileSync('sha256sum', [obj], { encoding: 'utf8' }).split(' ')[0];
    fs.writeFileSync(mf, JSON.stringify(m));
    const r = await verifyBackupSet(openTarget(copy), firstSet, { identityFile: key.identity });
    expect(r.objects[0]).toMatchObject({ ok: false, error: expect.stringMatching(/postgres\.pgdump\.zst\.age decrypts but is not a readable pg_dump archive/) });
    expect(r.errorKind).toBe('integrity');
  });

  it('a wrong identity file: verify says so and exits 7; checksums alone still pass', async () => {
    const other = ageKeyPair(dir, 'stranger');
    const r = await verifyBackupSet(openTarget(local), firstSet, { identityFile: other.identity });
    expect(r.ok).toBe(false);
    expect(r.errorKind).toBe('wrongIdentity');
    expect(r.objects[0].error).toMatch(/does not decrypt with identity file .*stranger\.age/);
    const v = await cli(['verify', '--target', local, '--backup', firstSet, '--identity', other.identity]);
    expect(v.code).toBe(EXIT.wrongIdentity);
    expect((await verifyBackupSet(openTarget(local), firstSet)).ok).toBe(true);
  });

  it('a corrupt or schema-invalid manifest: the set is listed as invalid and verify exits 6 naming the manifest', async () => {
    for (const [label, mutate] of [
      ['corrupt', (s: string) => s.slice(0, s.length / 2)],
      ['schema-invalid', (s: string) => JSON.stringify({ ...JSON.parse(s), objects: [{ name: 'x', size: -1 }] })],
    ] as const) {
      const copy = path.join(dir, `manifest-${label}`);
      fs.cpSync(local, copy, { recursive: true });
      const mf = path.join(copy, firstSet, MANIFEST_FILE);
      fs.writeFileSync(mf, mutate(fs.readFileSync(mf, 'utf8')));
      const sets = await listBackupSets(openTarget(copy));
      expect(sets).toEqual([expect.objectContaining({ setId: firstSet, status: 'invalid' })]);
      await expect(verifyBackupSet(openTarget(copy), firstSet)).rejects.toMatchObject({
        kind: 'integrity', message: expect.stringMatching(label === 'corrupt' ? /manifest\.json is not valid JSON/ : /manifest\.json does not match backups\/manifest-schema\.json: \/objects\/0/),
      });
      const v = await cli(['verify', '--target', copy, '--backup', firstSet]);
      expect(v.code).toBe(EXIT.integrity);
      expect(v.stderr).toContain(MANIFEST_FILE);
      // Pruning never deletes a damaged set: a human decides.
      const p = await pruneBackupSets(openTarget(copy), { keepLast: 1 });
      expect(p.removed).toEqual([]);
      expect(p.invalid.map((i) => i.setId)).toEqual([firstSet]);
    }
  });

  it('two runs at once: the second exits 5 with a clear message and the first completes', async () => {
    let release!: () => void;
    const paused = new Promise<void>((r) => { release = r; });
    let started!: () => void;
    const isRunning = new Promise<void>((r) => { started = r; });
    let once = false;
    const first = runBackup({ ...base, targets: [local], onProgress: async () => { if (!once) { once = true; started(); await paused; } } });
    await isRunning;
    const second = await cli(['--database-url', url, '--target', local, '--recipient', key.recipient, '--lock-file', base.lockFile!]);
    release();
    const r = await first;
    expect(second.code).toBe(EXIT.locked);
    expect(second.stderr).toMatch(/another backup run holds the lock .*backup\.lock \(pid \d+/);
    expect(r.stored).toEqual([local]);
    expect((await listBackupSets(openTarget(local))).filter((s) => s.status === 'complete')).toHaveLength(2);
  });

  it('prune by policy: --dry-run deletes nothing; the newest set and the newest drill-verified set always stay', async () => {
    // Spread copies of a real set over days (manifests rewritten and still schema-valid).
    const t = openTarget(path.join(dir, 'retention-target'));
    const src = await openBackupSet(openTarget(local), firstSet);
    const days = ['2026-01-05T02:30:00Z', '2026-01-20T02:30:00Z', '2026-02-10T02:30:00Z', '2026-02-11T02:30:00Z', '2026-02-11T14:30:00Z', '2026-02-12T02:30:00Z'];
    const ids: string[] = [];
    for (const [i, d] of days.entries()) {
      const id = `${d.replace(/[-:]/g, '').replace('Z', '')}Z-00000${i}`;
      ids.push(id);
      await t.prepareSet(id);
      for (const o of src.objects) fs.copyFileSync(path.join(local, firstSet, o.name), path.join(dir, 'retention-target', id, o.name));
      await t.writeText(id, MANIFEST_FILE, JSON.stringify({ ...src, setId: id, startedAt: d, finishedAt: d }));
    }
    await markSetVerifiedByDrill(t, ids[0], { rtoSeconds: 42 });
    const dry = await pruneBackupSets(t, { keepDaily: 2 }, { dryRun: true });
    // keep-daily 2 → newest of 02-12 and of 02-11 (14:30); ids[0] stays as the newest drill-verified set.
    expect(dry.wouldRemove.sort()).toEqual([ids[1], ids[2], ids[3]].sort());
    expect(dry.removed).toEqual([]);
    expect((await listBackupSets(t)).length).toBe(6);
    expect(dry.decisions.find((d) => d.setId === ids[0])?.reasons).toEqual(['newest set verified by a restore drill']);
    const cliDry = await cli(['prune', '--target', path.join(dir, 'retention-target'), '--keep-daily', '2', '--dry-run']);
    expect(cliDry.code).toBe(EXIT.ok);
    expect(cliDry.stdout).toContain(`would delete ${ids[1]}`);
    const real = await pruneBackupSets(t, { keepDaily: 2, keepMonthly: 2 });
    // keep-monthly 2 also keeps the newest of February (ids[5]) and of January (ids[1]).
    expect(real.removed.sort()).toEqual([ids[2], ids[3]].sort());
    expect((await listBackupSets(t)).map((s) => s.setId).sort()).toEqual([ids[0], ids[1], ids[4], ids[5]].sort());
    const last = await pruneBackupSets(t, { keepLast: 0 });
    expect(last.removed.sort()).toEqual([ids[1], ids[4]].sort()); // never the newest, never the drill-verified
  });

  it('the database stops mid-dump: no manifest, exit code 3, and the next run removes the partial set', async () => {
    const doomed = await startThrowawayPostgres();
    try {
      const durl = await doomed.createDatabase('c2');
      await seedC2Database(durl, { clients: 60000, topics: 100, links: 0 });
      const target = path.join(dir, 'middump-target');
      let killed = false;
      const run = runBackup({
        ...base, databaseUrl: durl, passphraseFile: undefined, targets: [target], metricsFile: path.join(dir, 'middump.prom'),
        onProgress: async (p) => {
          if (killed || p.object !== 'postgres.pgdump.zst.age') return;
          killed = true;
          await doomed.daemon.stop('SIGQUIT'); // immediate shutdown: every backend dies now
        },
      });
      await expect(run).rejects.toMatchObject({ kind: 'sourceUnreachable', message: expect.stringMatching(/pg_dump of .* failed/) });
      expect(killed).toBe(true);
      const sets = await listBackupSets(openTarget(target));
      expect(sets).toHaveLength(1);
      expect(sets[0].status).toBe('incomplete');
      expect(fs.existsSync(path.join(target, sets[0].setId, MANIFEST_FILE))).toBe(false);
      const prom = fs.readFileSync(path.join(dir, 'middump.prom'), 'utf8');
      expect(prom).toMatch(new RegExp(`^${OPS_METRICS.backupLastRunSuccess} 0$`, 'm'));
      expect(prom).not.toContain(OPS_METRICS.backupLastSuccessTimestamp);

      const next = await runBackup({ ...base, targets: [target], metricsFile: path.join(dir, 'middump.prom') });
      expect(next.removedIncomplete[target]).toEqual([sets[0].setId]);
      expect((await listBackupSets(openTarget(target))).map((s) => [s.setId, s.status])).toEqual([[next.setId, 'complete']]);
    } finally { await doomed.stop(); }
  });

  it('runs from the job file the stacks render (run --config), with extra files restored to their paths', async () => {
    const keyFile = path.join(dir, 'c2-key-outside', 'c2.key');
    fs.mkdirSync(path.dirname(keyFile));
    fs.writeFileSync(keyFile, 'pubkey-mode C2 key');
    const jobTargets = [path.join(dir, 'job-local'), `offsite:${path.join(dir, 'job-remote')}`];
    const jobFile = path.join(dir, 'backup.json');
    const rendered = JSON.parse(renderBackupJobConfig({
      database: { host: server.host, port: server.port, name: 'c2', user: 'postgres' },
      files: [keyFile],
      targets: [{ name: 'local', type: 'local', path: jobTargets[0] }, { name: 'offsite', type: 'rclone', remote: jobTargets[1] }],
      ageRecipients: [key.recipient],
      retention: { keepLast: 1, keepDaily: 0, keepWeekly: 0, keepMonthly: 0 },
      metricsTextfileDir: path.join(dir, 'job-textfile'),
    }));
    // The CLI computes the fingerprint in a worker thread (memory budget): it must equal lib/e4's.
    fs.writeFileSync(jobFile, JSON.stringify({ ...rendered, passphraseFile: base.passphraseFile, createTarget: true }));
    for (let i = 0; i < 2; i++) {
      const r = await cli(['run', '--config', jobFile, '--lock-file', base.lockFile!, '--json'], { RCLONE_CONFIG: rcloneConfig, PGPASSWORD: 'from-the-environment' });
      expect(r.code).toBe(EXIT.ok);
    }
    for (const spec of jobTargets) {
      const t = openTarget(spec, { rcloneConfig });
      const sets = await listBackupSets(t);
      expect(sets.map((x) => x.status)).toEqual(['complete']); // keepLast 1 pruned the first run's set
      const m = sets[0].manifest!;
      expect(m.objects.map((o) => o.name)).toEqual(['postgres.pgdump.zst.age', 'extra-files.tar.zst.age']);
      expect(m.passphraseFingerprint).toEqual({ algorithm: 'e4ops/passphrase-fingerprint/v1', value: passphraseFingerprint(PASSPHRASE) });
      const tarFile = path.join(dir, 'extra.tar');
      await new Promise<void>((resolve, reject) => {
        const st = openDecryptedObject(t, m, 'extra-files.tar.zst.age', key.identity);
        st.on('error', reject);
        st.pipe(fs.createWriteStream(tarFile)).on('finish', () => resolve());
      });
      const back = path.join(dir, `extra-restore-${spec.startsWith('offsite') ? 'r' : 'l'}`);
      fs.mkdirSync(back);
      execFileSync('tar', ['-x', '-C', back, '-f', tarFile]);
      expect(fs.readFileSync(path.join(back, keyFile), 'utf8')).toBe('pubkey-mode C2 key');
    }
    expect(fs.readFileSync(path.join(dir, 'job-textfile', 'e4ops_backup.prom'), 'utf8')).toMatch(/^e4ops_backup_last_run_success 1$/m);
    const bad = path.join(dir, 'bad-job.json');
    fs.writeFileSync(bad, JSON.stringify({ database: { host: 'x', name: 'c2', user: 'u' }, targets: [{ name: 'a', type: 'rclone' }], ageRecipients: [] }));
    const r = await cli(['run', '--config', bad]);
    expect(r.code).toBe(EXIT.usage);
    expect(r.stderr).toMatch(/--config .*bad-job\.json: targets\[0\] \(a\) is rclone but has no remote/);
  }, 180_000);

  it('the scheduled command line (node with NODE_FLAGS) records the same passphrase fingerprint', async () => {
    const target = path.join(dir, 'scheduled-target');
    const r = await cli(['--database-url', url, '--target', target, '--recipient', key.recipient, '--passphrase-file', base.passphraseFile!,
      '--lock-file', base.lockFile!, '--json', '--create-target'], {}, 'scheduled');
    expect(r.code).toBe(EXIT.ok);
    const m = await openBackupSet(openTarget(target), JSON.parse(r.stdout.trim().split('\n').pop()!).setId);
    expect(m.passphraseFingerprint?.value).toBe(passphraseFingerprint(PASSPHRASE));
  });

  it('CLI config errors exit 2 before touching anything; an unreachable database exits 3', async () => {
    const secret = execFileSync('grep', ['AGE-SECRET-KEY', key.identity], { encoding: 'utf8' }).trim();
    const r1 = await cli(['--database-url', url, '--target', local, '--recipient', secret, '--lock-file', base.lockFile!]);
    expect(r1.code).toBe(EXIT.usage);
    expect(r1.stderr).toMatch(/SECRET key: give its public key/);
    expect(r1.stderr).not.toContain(secret);
    const port = server.port + 1;
    const r2 = await cli(['--database-url', `postgres://c2:hunter2hunter2@127.0.0.1:${port}/c2`, '--target', path.join(dir, 'unreach'), '--recipient', key.recipient, '--lock-file', base.lockFile!, '--create-target']);
    expect(r2.code).toBe(EXIT.sourceUnreachable);
    expect(r2.stderr).toMatch(/cannot connect to the database postgres:\/\/c2:\*\*\*@127\.0\.0\.1/);
    expect(r2.stderr).not.toContain('hunter2');
  });
});
