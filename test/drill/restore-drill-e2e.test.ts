// End to end with the real C2, real PostgreSQL and real Mosquitto: a live fleet, a backup, topic keys
// rotated and a topic created after it; the drill restores into scratch servers, starts a scratch C2,
// rehearses the resync with the fleet's keys of the moment before the restore, and every simulated
// device reads every topic again. Then the failures an operator must see named.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { c2BinaryAvailable, c2BinaryDir, startC2TestStack, type C2TestStack } from '../../lib/servers/c2.ts';
import { createC2Api, type C2Api } from '../../lib/c2/c2-api.ts';
import { createFleet, type Fleet, type FleetSnapshot } from '../../lib/fleet/fleet.ts';
import { runBackup } from '../../backups/create-backup.ts';
import { openTarget } from '../../backups/targets.ts';
import { readDrillVerification } from '../../backups/backup-sets.ts';
import { runRestoreDrill, runRestoreDrillAndRecord } from '../../backups/drill/restore-drill.ts';
import { validateDrillReport } from '../../backups/drill/drill-report.ts';
import { parseInventory } from '../../lib/fleet-inventory/fleet-inventory.ts';
import { createMemoryLogger } from '../../lib/log.ts';
import { OPS_METRICS } from '../../lib/ops-metrics.ts';
import { startPrivateDockerEngine, importDebianBaseImage } from '../../lib/servers/docker-engine.ts';
import { buildC2ImageFromBinaries, C2_IMAGE_BASE_PACKAGES } from '../../lib/servers/c2-image.ts';

const REPO = path.resolve(import.meta.dirname, '../..');
const DEVICES = ['dev-a', 'dev-b', 'dev-c', 'dev-d', 'dev-e'];
const TOPICS = ['site/temp', 'site/door', 'site/alarm', 'site/power', 'site/water', 'site/air'];

function ageKeyPair(dir: string, name: string): { identity: string; recipient: string } {
  const identity = path.join(dir, `${name}.age-identity`);
  execFileSync('age-keygen', ['-o', identity], { stdio: 'ignore' });
  const recipient = /public key: (age1\w+)/.exec(fs.readFileSync(identity, 'utf8'))![1];
  return { identity, recipient };
}

describe('restore drill end to end (real C2, PostgreSQL, Mosquitto)', () => {
  let stack: C2TestStack;
  let api: C2Api;
  let fleet: Fleet;
  let snapshot: FleetSnapshot;
  let setId: string;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-drill-e2e-'));
  const targetDir = path.join(dir, 'target');
  const passFile = path.join(dir, 'passphrase');
  let keys: { identity: string; recipient: string };
  const linked = (i: number) => [TOPICS[i % TOPICS.length], TOPICS[(i + 2) % TOPICS.length], TOPICS[(i + 3) % TOPICS.length]];

  beforeAll(async () => {
    if (!c2BinaryAvailable()) throw new Error(`the C2 binary is not built (looked in ${c2BinaryDir()}): run bash scripts/build-c2.sh first (CI does this before the tests)`);
    stack = await startC2TestStack();
    api = createC2Api({ baseUrl: stack.c2.baseUrl, ca: stack.c2.ca.certPem });
    fs.writeFileSync(passFile, stack.passphrase + '\n');
    keys = ageKeyPair(dir, 'ops');

    // The production fleet: devices registered with their identity keys, linked to topics, holding keys.
    fleet = await createFleet({ brokerUrl: stack.mosquitto.url, devices: DEVICES.map((name) => ({ name })), logger: createMemoryLogger('fleet') });
    for (const d of fleet.devices()) await api.newClient(d.name, d.keyForC2);
    for (const t of TOPICS) await api.newTopic(t);
    for (let i = 0; i < DEVICES.length; i++) for (const t of linked(i)) await api.linkClientTopic(DEVICES[i], t);
    await fleet.waitFor((f) => DEVICES.every((n, i) => linked(i).every((t) => f.device(n).topicKey(t))), { what: 'initial topic keys' });

    // The backup (objects, then manifest), with C2's configs directory.
    const result = await runBackup({
      databaseUrl: stack.postgres.url(stack.database), configsDir: path.join(stack.c2.dir, 'configs'), targets: [targetDir],
      recipients: [keys.recipient], passphraseFile: passFile, lockFile: path.join(dir, 'backup.lock'), log: createMemoryLogger('backup'),
    });
    setId = result.setId;

    // After the backup: keys rotate and a topic appears. The devices follow; the backup does not know.
    const rotated = TOPICS.slice(0, 3);
    const before = new Map(rotated.map((t) => [t, fleet.device(DEVICES.find((_, i) => linked(i).includes(t))!).topicKey(t)!]));
    for (const t of rotated) {
      await api.newTopic(t);
      // The 2019 C2 stores a rotated key without sending it: deliver it as its link call does.
      for (let i = 0; i < DEVICES.length; i++) if (linked(i).includes(t)) await api.linkClientTopic(DEVICES[i], t);
    }
    await api.newTopic('site/added-after-backup');
    await api.linkClientTopic('dev-a', 'site/added-after-backup');
    await fleet.waitFor((f) => rotated.every((t) => DEVICES.every((n, i) => !linked(i).includes(t) || !f.device(n).topicKey(t)!.equals(before.get(t)!)))
      && !!f.device('dev-a').topicKey('site/added-after-backup'), { what: 'post-backup rotations' });
    snapshot = fleet.snapshot();
  });

  afterAll(async () => {
    await fleet?.close();
    api?.close();
    await stack?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }, 180_000);

  it('restores into scratch servers, a scratch C2 serves it, the resync brings every device back, and the set is marked verified', async () => {
    const inventory = parseInventory([
      'version: 1', 'cryptoMode: symkey', 'clients:',
      ...DEVICES.map((n, i) => `  - name: ${n}\n    topics: [${[...linked(i), ...(n === 'dev-a' ? ['site/added-after-backup'] : [])].join(', ')}]`),
    ].join('\n'), 'inventory.yaml', dir);
    const reportFile = path.join(dir, 'drill-report.json');
    const metricsFile = path.join(dir, 'drill.prom');
    const report = await runRestoreDrillAndRecord({
      target: targetDir, backup: 'latest', identityFile: keys.identity, passphraseFile: passFile,
      withC2: true, resync: true, fleetSnapshot: snapshot, inventory, reportFile, metricsFile, logger: createMemoryLogger('drill'),
    });
    expect(report.ok, JSON.stringify(report.checks, null, 1)).toBe(true);
    expect(report.backupId).toBe(setId);
    expect(report.counts).toEqual({ clients: DEVICES.length, topics: TOPICS.length, links: DEVICES.length * 3 });
    const names = report.checks.map((c) => c.name);
    for (const n of ['backup-set', 'checksums', 'decrypt', 'restore', 'schema', 'inventory-counts', 'passphrase-fingerprint', 'keys-decrypt',
      'orphan-links', 'configs-parse', 'certificates-valid', 'c2-serves-restored-data', 'resync-rehearsal', 'topics-created-after-backup']) {
      expect(names).toContain(n);
    }
    expect(report.resync!.devices).toBe(DEVICES.length);
    expect(report.resync!.devicesReadingAllTopics).toBe(DEVICES.length);
    expect(report.resync!.rotated).toBe(TOPICS.length);
    expect(report.resync!.topicsCreatedAfterBackup).toEqual(['site/added-after-backup']);
    // The rehearsal started from real damage: devices held keys the restored C2 did not know.
    const stale = /(\d+) of (\d+) device\/topic keys were stale before/.exec(report.checks.find((c) => c.name === 'resync-rehearsal')!.detail)!;
    expect(Number(stale[1])).toBeGreaterThan(0);
    expect(report.rtoSeconds).toBeGreaterThan(0);
    expect(report.rpoSeconds).toBeGreaterThanOrEqual(0);

    // Report on disk is schema-valid and has its Markdown summary; metrics say success; the set is marked.
    validateDrillReport(JSON.parse(fs.readFileSync(reportFile, 'utf8')));
    expect(fs.readFileSync(path.join(dir, 'drill-report.md'), 'utf8')).toContain(`Restore drill passed: ${setId}`);
    expect(fs.readFileSync(metricsFile, 'utf8')).toMatch(new RegExp(`^${OPS_METRICS.drillLastRunSuccess} 1$`, 'm'));
    expect((await readDrillVerification(openTarget(targetDir), setId))?.setId).toBe(setId);
    // Nothing of the drill is left running: no scratch Postgres or C2 directories.
    expect(fs.readdirSync(os.tmpdir()).filter((d) => d.startsWith('e4ops-drill-') && fs.existsSync(path.join(os.tmpdir(), d, 'c2-configs')))).toEqual([]);
  }, 180_000);

  it('a wrong passphrase fails the drill naming the fingerprint and key checks (script exit code 8)', () => {
    const wrong = path.join(dir, 'wrong-passphrase');
    fs.writeFileSync(wrong, 'this is not the escrowed passphrase\n');
    const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(REPO, 'scripts/restore-drill.ts'), '--target', targetDir, '--backup', setId,
      '--identity', keys.identity, '--passphrase-file', wrong, '--report', path.join(dir, 'wrong-pass.json'), '--no-mark-verified'], { cwd: REPO, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(8);
    expect(r.stderr).toMatch(/passphrase-fingerprint: the passphrase from --passphrase-file does not match/);
    expect(r.stderr).toMatch(/keys-decrypt: \d+ of \d+ sealed keys do not open/);
    const report = JSON.parse(fs.readFileSync(path.join(dir, 'wrong-pass.json'), 'utf8'));
    expect(report.ok).toBe(false);
    expect(report.failedChecks).toEqual(['passphrase-fingerprint', 'keys-decrypt']);
  }, 180_000);

  it('a wrong identity fails with a clear decrypt message', async () => {
    const other = ageKeyPair(dir, 'someone-else');
    const report = await runRestoreDrill({ target: targetDir, backup: setId, identityFile: other.identity, passphraseFile: passFile, logger: createMemoryLogger() });
    expect(report.ok).toBe(false);
    const c = report.checks.find((x) => x.name === 'decrypt')!;
    expect(c.ok).toBe(false);
    expect(c.detail).toMatch(/does not decrypt with identity file .*someone-else/);
  }, 180_000);

  it('a corrupted object fails the checksum check naming the object', async () => {
    const copy = path.join(dir, 'corrupt-target');
    fs.cpSync(targetDir, copy, { recursive: true });
    const dump = fs.readdirSync(path.join(copy, setId)).find((f) => f.startsWith('c2-db'))
      ?? fs.readdirSync(path.join(copy, setId)).find((f) => f.includes('dump') || f.includes('pg'))!;
    const file = path.join(copy, setId, dump);
    const bytes = fs.readFileSync(file);
    bytes[Math.floor(bytes.length / 2)] ^= 0xff;
    fs.writeFileSync(file, bytes);
    const report = await runRestoreDrill({ target: copy, backup: setId, identityFile: keys.identity, passphraseFile: passFile, logger: createMemoryLogger() });
    expect(report.ok).toBe(false);
    const bad = report.checks.find((x) => !x.ok)!;
    expect(bad.name).toBe('checksums');
    expect(bad.detail).toContain(dump);
  }, 180_000);

  it('a set without its manifest is refused as not a backup', async () => {
    const copy = path.join(dir, 'no-manifest-target');
    fs.cpSync(targetDir, copy, { recursive: true });
    fs.rmSync(path.join(copy, setId, 'manifest.json'));
    const report = await runRestoreDrill({ target: copy, backup: setId, identityFile: keys.identity, passphraseFile: passFile, logger: createMemoryLogger() });
    expect(report.ok).toBe(false);
    expect(report.checks[0]).toMatchObject({ name: 'backup-set', ok: false });
    expect(report.checks[0].detail).toMatch(/has no manifest\.json: it is incomplete/);
    const latest = await runRestoreDrill({ target: copy, backup: 'latest', identityFile: keys.identity, passphraseFile: passFile, logger: createMemoryLogger() });
    expect(latest.checks[0].detail).toMatch(/holds no complete backup set/);
  }, 180_000);

  it('refuses a scratch URL that is the production database, and restores nothing into it', async () => {
    const prod = stack.postgres.url(stack.database);
    const clientsBefore = await api.countClients();
    const report = await runRestoreDrill({
      target: targetDir, backup: setId, identityFile: keys.identity, passphraseFile: passFile,
      scratchDatabaseUrl: prod.replace('postgres://postgres@', 'postgresql://postgres:x@'), productionDatabaseUrl: prod, logger: createMemoryLogger(),
    });
    expect(report.ok).toBe(false);
    const c = report.checks.find((x) => x.name === 'scratch-is-not-production')!;
    expect(c.detail).toMatch(/points at the production database/);
    expect(await api.countClients()).toBe(clientsBefore);
  }, 180_000);

  it('--c2-image refuses, before starting anything, an image the Docker engine does not have, and flags that do not go together', async () => {
    const base = { target: targetDir, backup: setId, identityFile: keys.identity, passphraseFile: passFile, logger: createMemoryLogger() };
    // A temp folder of its own: anything the drill started (scratch data, work folders) would show up in it.
    const tmp = fs.mkdtempSync(path.join(dir, 'tmp-'));
    const savedTmp = process.env.TMPDIR;
    process.env.TMPDIR = tmp;
    try {
      await expect(runRestoreDrill({ ...base, withC2: true, c2Image: 'e4ops/no-such-c2:1', dockerHost: `unix://${path.join(dir, 'no-engine.sock')}` }))
        .rejects.toThrow(/--c2-image e4ops\/no-such-c2:1: not usable on the Docker engine at unix:.*no-engine\.sock .*build it from stacks\/docker\/c2\.Dockerfile/);
      await expect(runRestoreDrill({ ...base, c2Image: 'e4ops/c2:any' })).rejects.toThrow('--c2-image needs --with-c2');
      await expect(runRestoreDrill({ ...base, withC2: true, c2Image: 'e4ops/c2:any', c2Binary: '/bin/true' })).rejects.toThrow(/exclude each other/);
    } finally {
      if (savedTmp === undefined) delete process.env.TMPDIR; else process.env.TMPDIR = savedTmp;
    }
    expect(fs.readdirSync(tmp)).toEqual([]);
  });

  it('with --c2-image the scratch C2 runs from the image stacks/docker/c2.Dockerfile builds (private Docker engine), serves the restored data, and leaves no container', async () => {
    const engine = await startPrivateDockerEngine();
    try {
      importDebianBaseImage(engine.host, 'e4ops/debian-base:test', { include: C2_IMAGE_BASE_PACKAGES });
      const image = buildC2ImageFromBinaries(engine.host, { tag: 'e4ops/c2:drill-test', baseImage: 'e4ops/debian-base:test' });
      // The image is the deployment's: C2 in it runs as the unprivileged e4 user by default.
      expect(engine.docker(['image', 'inspect', '--format', '{{.Config.User}} {{json .Config.Entrypoint}}', image]).trim()).toBe('e4 ["/opt/e4/bin/c2"]');
      const report = await runRestoreDrill({
        target: targetDir, backup: setId, identityFile: keys.identity, passphraseFile: passFile,
        withC2: true, c2Image: image, dockerHost: engine.host, markVerified: false, logger: createMemoryLogger('drill'),
      });
      expect(report.ok, JSON.stringify(report.checks, null, 1)).toBe(true);
      const served = report.checks.find((c) => c.name === 'c2-serves-restored-data')!;
      expect(served.detail).toContain(`scratch C2 (image ${image})`);
      expect(served.detail).toContain(`serves ${DEVICES.length} clients and ${TOPICS.length} topics`);
      expect(engine.docker(['ps', '-a', '--format', '{{.Names}}']).trim()).toBe('');
    } finally {
      await engine.stop();
    }
  }, 600_000);
});
