// Provisioning against the real C2 (2019 build), real Mosquitto and real devices built on e4go v1.1.0:
// devices switched on only after provisioning read every topic; factory-keyed and TOFU devices are
// rotated on first use and the old key opens nothing C2 sends afterwards; bad input registers nothing.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import { c2BinaryAvailable } from '../../lib/servers/c2.ts';
import { createC2Api, type C2Api } from '../../lib/c2/c2-api.ts';
import { clientIdFromName, commandTopicForClient } from '../../lib/e4/ids.ts';
import { unprotectSymKey } from '../../lib/e4/protect.ts';
import { decodeCommand } from '../../lib/e4/commands.ts';
import { runCommand } from '../../lib/cli/command.ts';
import { command } from '../../scripts/provision.ts';
import { createMemoryLogger } from '../../lib/log.ts';
import { provisionDevices, devicesFromFactoryRows, ProvisionRefusedError } from '../../provisioning/provision-new.ts';
import { provisioningC2FromApi, registrationCheck, type ProvisioningC2 } from '../../provisioning/provisioning-c2.ts';
import { parseFactoryKeysCsv, ProvisionInputError } from '../../provisioning/provisioning-input.ts';
import { readDeviceBundle } from '../../provisioning/device-bundle.ts';
import { connectBrokerWatch, type BrokerWatch } from '../../provisioning/broker-watch.ts';
import { watchFirstUse, type FirstUseReport } from '../../provisioning/first-use.ts';
import { openProvisioningInventory, readEscrowedKey, findClient } from '../../provisioning/provisioning-inventory.ts';
import { hasFirstUseKey } from '../../provisioning/first-use-keys.ts';
import { listProvisionedDevices } from '../../provisioning/provision-list.ts';
import { loadInventory } from '../../lib/fleet-inventory/fleet-inventory.ts';
import { startE4goDevices, type E4goDevices } from '../e4go-devices/e4go-devices.ts';
import { startProvisioningStack, PROVISIONING_TEST_PASSPHRASE, type ProvisioningStack } from './provisioning-stack.ts';
import { runE4ops } from '../cli/e4ops-run.ts';
import { deriveDbKey, openDbValue } from '../../lib/e4/keystore.ts';
import { REPO_ROOT } from '../../lib/repo-root.ts';
import { spawn } from 'node:child_process';
import { skipWithoutC2 } from '../c2/c2-stack.ts';

const TOPICS = ['plant/temperature', 'plant/alarms', 'plant/firmware'];
const lateKey = crypto.randomBytes(32);

describe.skipIf(skipWithoutC2)('provisioning with the real C2, Mosquitto and e4go v1.1.0 devices', () => {
  let stack: ProvisioningStack;
  let api: C2Api;
  let c2: ProvisioningC2;
  let devices: E4goDevices;
  let broker: BrokerWatch;
  let dir: string;
  let inventoryFile: string;
  let escrowIdentity: string;
  let escrowRecipient: string;

  const cli = async (argv: string[]) => {
    let out = '';
    let err = '';
    const code = await runCommand(command, argv, { stdout: (t) => void (out += t), stderr: (t) => void (err += t) });
    return { code, out, err };
  };
  const c2Flags = () => ['--c2-url', stack.c2.baseUrl, '--c2-ca', path.join(dir, 'ca.pem')];
  /** Watch for first use while `switchOn` brings devices online. */
  const firstUseLog = createMemoryLogger('provision-first-use');
  const firstUse = async (switchOn: () => Promise<void>, followSeconds = 60): Promise<FirstUseReport> => {
    const watching = watchFirstUse({ c2, broker, inventoryFile, followSeconds, logger: firstUseLog });
    await new Promise((r) => setTimeout(r, 200));
    await switchOn();
    return watching;
  };
  /** The next command C2 publishes on a device's command topic (a live one, not the retained one). */
  const nextCommand = async (name: string, trigger: () => Promise<void>): Promise<Buffer> => {
    const sub = await mqtt.connectAsync(stack.mosquitto.url, { clientId: `probe-${name}-${Date.now()}` });
    const got = new Promise<Buffer>((resolve) => sub.on('message', (_t, p, packet) => { if (!packet.retain) resolve(p); }));
    await sub.subscribeAsync(commandTopicForClient(clientIdFromName(name)), { qos: 1 });
    await trigger();
    const payload = await got;
    await sub.endAsync();
    return payload;
  };
  const expectReadsEverything = async (names: string[]) => {
    for (const n of names) {
      const r = await devices.waitFor(n, (x) => Object.keys(x.topicKeys).length === TOPICS.length);
      expect(r.commandsFailed).toBe(0);
      await devices.clear(n);
    }
    for (const t of TOPICS) {
      await devices.publish(names[0], t, `peer ${t}`);
      await api.sendMessage(t, `c2 ${t}`);
    }
    for (const n of names) {
      const expected = TOPICS.flatMap((t) => [`c2 ${t}`, ...(n === names[0] ? [] : [`peer ${t}`])].map((payload) => ({ topic: t, payload })));
      const has = (x: { messages: { topic: string; payload?: string }[] }) => expected.every((e) => x.messages.some((m) => m.topic === e.topic && m.payload === e.payload));
      const r = await devices.waitFor(n, has);
      expect(has(r)).toBe(true);
      expect(r.messages.filter((m) => m.error)).toEqual([]);
    }
  };

  beforeAll(async () => {
    if (!c2BinaryAvailable()) throw new Error('C2 binary not built: run scripts/build-c2.sh');
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-provision-'));
    inventoryFile = path.join(dir, 'inventory', 'fleet.yaml');
    escrowIdentity = path.join(dir, 'escrow-officer.key');
    execFileSync('age-keygen', ['-o', escrowIdentity], { stdio: 'ignore' });
    escrowRecipient = /public key: (age1\S+)/.exec(fs.readFileSync(escrowIdentity, 'utf8'))![1];
    stack = await startProvisioningStack();
    fs.writeFileSync(path.join(dir, 'ca.pem'), stack.c2.ca.certPem);
    api = createC2Api({ baseUrl: stack.c2.baseUrl, ca: stack.c2.ca.certPem });
    c2 = provisioningC2FromApi(api);
    devices = await startE4goDevices(stack.mosquitto.url);
    broker = await connectBrokerWatch(stack.mosquitto.url);
  }, 240_000);
  afterAll(async () => {
    await broker?.close();
    await devices?.stop();
    api?.close();
    await stack?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('bad input is refused naming the line or name, and nothing is registered', async () => {
    const before = await api.countClients();
    const names = path.join(dir, 'names.txt');
    fs.writeFileSync(names, 'cam-1\ncam-2\ncam-1\n');
    const common = ['--topics', TOPICS.join(','), '--inventory', inventoryFile, '--escrow-recipient', escrowRecipient, ...c2Flags()];
    const bundleFlags = ['--broker', stack.mosquitto.url, '--out', path.join(dir, 'b0')];
    const dup = await cli(['new', '--names-file', names, ...bundleFlags, '--create-topics', ...common]);
    expect(dup.code).toBe(2);
    expect(dup.err).toContain(`${names} line 3: device name "cam-1" is listed twice`);
    const csv = path.join(dir, 'factory-bad.csv');
    fs.writeFileSync(csv, `serial,key\nSN-1,${'11'.repeat(32)}\nSN-2,${'22'.repeat(31)}\n`);
    const short = await cli(['import', '--factory-keys', csv, '--create-topics', ...common]);
    expect(short.code).toBe(2);
    expect(short.err).toContain(`${csv} line 3: key of "SN-2" has 31 bytes`);
    fs.writeFileSync(csv, `serial,key\nSN-1,${'11'.repeat(32)},extra\n`);
    const malformed = await cli(['import', '--factory-keys', csv, '--create-topics', ...common]);
    expect(malformed.code).toBe(2);
    expect(malformed.err).toContain(`${csv} line 2: 3 column(s)`);
    const unknown = await cli(['new', '--count', '2', '--name-prefix', 'cam-', ...bundleFlags, ...common.map((a) => (a === TOPICS.join(',') ? 'plant/temprature' : a))]);
    expect(unknown.code).toBe(2);
    expect(unknown.err).toMatch(/unknown topic "plant\/temprature": C2 at .* has no such topic/);
    const pubkey = await cli(['new', '--count', '2', '--name-prefix', 'cam-', ...bundleFlags, '--crypto-mode', 'pubkey', '--create-topics', ...common]);
    expect(pubkey.code).toBe(9);
    expect(pubkey.err).toMatch(/has no pubkey mode .*symkey only/);
    expect(await api.countClients()).toBe(before);
    expect(await api.countTopics()).toBe(0);
    expect(fs.existsSync(inventoryFile)).toBe(false);
    expect(fs.existsSync(path.join(dir, 'b0'))).toBe(false);
  });

  it('pre-keyed devices switched on only after `provision new` finished load their bundles and read every topic', async () => {
    const out = path.join(dir, 'bundles');
    const r = await cli(['new', '--count', '3', '--name-prefix', 'pk-', '--out', out, '--create-topics', '--topics', TOPICS.join(','), '--broker', stack.mosquitto.url, '--inventory', inventoryFile, '--escrow-recipient', escrowRecipient, '--json', ...c2Flags()]);
    expect(r.code, r.err).toBe(0);
    expect(JSON.parse(r.out).provisioned.sort()).toEqual(['pk-0001', 'pk-0002', 'pk-0003']);
    expect(r.err).not.toMatch(/[0-9a-f]{64}/); // no key in the log
    const names = ['pk-0001', 'pk-0002', 'pk-0003'];
    for (const n of names) expect((await api.allTopicsForClient(n)).sort()).toEqual([...TOPICS].sort());

    // Without first-use: a device switched on now gets only the last of its three keys (one retained command).
    const early = readDeviceBundle(path.join(out, 'pk-0003.json'));
    await devices.add({ name: early.name, identityKey: Buffer.from(early.idKey, 'hex'), topics: early.topics });
    await devices.waitFor(early.name, (x) => x.commandsOk >= 1);
    await new Promise((r) => setTimeout(r, 500));
    expect(Object.keys((await devices.report(early.name)).topicKeys)).toHaveLength(1);
    await devices.offline(early.name);

    const report = await firstUse(async () => {
      await devices.online(early.name);
      for (const n of names.slice(0, 2)) {
        const b = readDeviceBundle(path.join(out, `${n}.json`));
        expect(b.broker).toBe(stack.mosquitto.url);
        await devices.add({ name: b.name, clientId: b.mqttClientId, identityKey: Buffer.from(b.idKey, 'hex'), topics: b.topics });
      }
    });
    expect(report).toMatchObject({ rotated: [], pending: [], failed: [] });
    expect(report.delivered.sort()).toEqual(names);
    await expectReadsEverything(names);

    // The escrowed key is the bundle's key.
    const inv = openProvisioningInventory(inventoryFile);
    const escrowed = await readEscrowedKey(inv, findClient(inv, 'pk-0002')!, escrowIdentity);
    expect(escrowed.toString('hex')).toBe(readDeviceBundle(path.join(out, 'pk-0002.json')).idKey);
    // The run's devices share one escrow file (0600): the age CLI opens it, each key under its device's name.
    const files = new Set(names.map((n) => findClient(inv, n)!.escrowedKeyFile));
    expect(files.size).toBe(1);
    const escrowFile = path.join(path.dirname(inventoryFile), [...files][0]!);
    expect(escrowFile).toMatch(/\/escrow\/batch-[^/]+\.keys\.age$/);
    expect(fs.statSync(escrowFile).mode & 0o777).toBe(0o600);
    const doc = JSON.parse(execFileSync('age', ['--decrypt', '-i', escrowIdentity, escrowFile]).toString()) as Record<string, string>;
    expect(Object.keys(doc).sort()).toEqual(names);
    for (const n of names) expect(doc[n], n).toBe(readDeviceBundle(path.join(out, `${n}.json`)).idKey);
  });

  it('a factory-keyed device is rotated on first use, keeps reading, and its factory key no longer opens C2\'s next command', async () => {
    const factoryKeys = { 'SN-7001': crypto.randomBytes(32), 'SN-7002': crypto.randomBytes(32) };
    const csv = path.join(dir, 'factory.csv');
    fs.writeFileSync(csv, `serial,key\n${Object.entries(factoryKeys).map(([s, k]) => `${s},${k.toString('hex')}`).join('\n')}\n`);
    const r = await cli(['import', '--factory-keys', csv, '--topics', TOPICS.join(','), '--inventory', inventoryFile, ...c2Flags()]);
    expect(r.code, r.err).toBe(0);
    let inv = openProvisioningInventory(inventoryFile);
    expect(findClient(inv, 'SN-7001')!.provisioning).toMatchObject({ method: 'factory', state: 'waitingForFirstUse', rotateOnFirstUse: true, serial: 'SN-7001' });
    expect(hasFirstUseKey(inv, 'SN-7001')).toBe(true);

    const report = await firstUse(async () => {
      for (const [name, key] of Object.entries(factoryKeys)) await devices.add({ name, identityKey: key, topics: TOPICS });
    });
    expect(report.failed).toEqual([]);
    expect(report.rotated.sort()).toEqual(['SN-7001', 'SN-7002']);
    expect(report.pending).toEqual([]);
    await expectReadsEverything(['SN-7001', 'SN-7002', 'pk-0001']);

    inv = openProvisioningInventory(inventoryFile);
    const entry = findClient(inv, 'SN-7001')!;
    expect(entry.provisioning!.state).toBe('rotated');
    expect(Date.parse(entry.identityKeyRotatedAt!)).toBeGreaterThan(Date.now() - 120_000);
    expect(hasFirstUseKey(inv, 'SN-7001')).toBe(false);
    const current = await readEscrowedKey(inv, entry, escrowIdentity);
    expect(current.equals(factoryKeys['SN-7001'])).toBe(false);

    // Neither the factory key nor the new one appears in the log.
    const logged = JSON.stringify(firstUseLog.lines);
    expect(logged).toContain('first_use.rotated');
    for (const k of [factoryKeys['SN-7001'], current]) expect(logged).not.toContain(k.toString('hex'));
    const sealed = await nextCommand('SN-7001', () => api.linkClientTopic('SN-7001', TOPICS[0]));
    expect(() => unprotectSymKey(sealed, factoryKeys['SN-7001'])).toThrow();
    expect(decodeCommand(unprotectSymKey(sealed, current)).type).toBe('SetTopicKey');
  });

  it('a TOFU device: no key escrowed before first use; rotated, escrowed and reading after it; the bundle key opens nothing new', async () => {
    const out = path.join(dir, 'tofu-bundles');
    const r = await cli(['new', '--tofu', '--count', '1', '--name-prefix', 'tofu-', '--out', out, '--topics', TOPICS.join(','), '--broker', stack.mosquitto.url, '--inventory', inventoryFile, ...c2Flags()]);
    expect(r.code, r.err).toBe(0);
    let inv = openProvisioningInventory(inventoryFile);
    expect(findClient(inv, 'tofu-0001')!.escrowedKeyFile).toBeUndefined();
    expect(fs.existsSync(path.join(path.dirname(inventoryFile), 'escrow', 'tofu-0001.key.age'))).toBe(false);
    const bundle = readDeviceBundle(path.join(out, 'tofu-0001.json'));

    const report = await firstUse(() => devices.add({ name: bundle.name, identityKey: Buffer.from(bundle.idKey, 'hex'), topics: bundle.topics }).then(() => undefined));
    expect(report).toMatchObject({ rotated: ['tofu-0001'], delivered: ['tofu-0001'], pending: [], failed: [] });
    await expectReadsEverything(['tofu-0001', 'pk-0003']);
    inv = openProvisioningInventory(inventoryFile);
    const current = await readEscrowedKey(inv, findClient(inv, 'tofu-0001')!, escrowIdentity);
    const sealed = await nextCommand('tofu-0001', () => api.linkClientTopic('tofu-0001', TOPICS[1]));
    expect(() => unprotectSymKey(sealed, Buffer.from(bundle.idKey, 'hex'))).toThrow();
    expect(decodeCommand(unprotectSymKey(sealed, current)).type).toBe('SetTopicKey');
  });

  it('re-running `provision new` with the same names changes nothing; --force is refused for rotated devices; list shows each state', async () => {
    const out = path.join(dir, 'bundles');
    const before = fs.readFileSync(path.join(out, 'pk-0001.json'), 'utf8');
    const again = await cli(['new', '--count', '3', '--name-prefix', 'pk-', '--out', out, '--topics', TOPICS.join(','), '--broker', stack.mosquitto.url, '--inventory', inventoryFile, '--json', ...c2Flags()]);
    expect(again.code, again.err).toBe(0);
    expect(JSON.parse(again.out)).toMatchObject({ provisioned: [], unchanged: ['pk-0001', 'pk-0002', 'pk-0003'] });
    expect(fs.readFileSync(path.join(out, 'pk-0001.json'), 'utf8')).toBe(before);
    await devices.clear('pk-0001');
    await api.sendMessage(TOPICS[0], 'still readable');
    await devices.waitFor('pk-0001', (x) => x.messages.some((m) => m.payload === 'still readable'));

    await expect(provisionDevices({
      c2, devices: [{ name: 'tofu-0001' }], method: 'tofu', topics: TOPICS, inventoryFile, outDir: path.join(dir, 'force'), broker: stack.mosquitto.url, force: true,
    })).rejects.toThrow(ProvisionRefusedError);
    const forced = await cli(['new', '--tofu', '--force', '--count', '1', '--name-prefix', 'tofu-', '--out', path.join(dir, 'force'), '--topics', TOPICS.join(','), '--broker', stack.mosquitto.url, '--inventory', inventoryFile, ...c2Flags()]);
    expect(forced.code).toBe(9);
    expect(forced.err).toMatch(/--force refused for tofu-0001: already rotated on first use/);

    // A name registered in C2 by hand is not overwritten without --force.
    await api.newClient('by-hand', crypto.randomBytes(32));
    // Found both ways C2 is asked: one name (asked by name) and a batch of 12 (C2's whole list read).
    expect(registrationCheck(await api.countClients(), 1)).toBe('per-name');
    expect(registrationCheck(await api.countClients(), 12)).toBe('list');
    for (const names of [['by-hand'], [...Array.from({ length: 11 }, (_, i) => `batch-${i}`), 'by-hand']]) {
      await expect(provisionDevices({ c2, devices: names.map((name) => ({ name })), method: 'prekeyed', topics: TOPICS, inventoryFile, broker: stack.mosquitto.url }))
        .rejects.toThrow(/by-hand: already registered in C2 but not provisioned by this inventory/);
      expect(await api.hasClient('batch-0')).toBe(false);
    }

    const list = await cli(['list', '--inventory', inventoryFile, '--json']);
    expect(list.code).toBe(0);
    const rows = JSON.parse(list.out) as ReturnType<typeof listProvisionedDevices>;
    const byName = Object.fromEntries(rows.map((x) => [x.name, x]));
    expect(byName['pk-0001']).toMatchObject({ method: 'prekeyed', state: 'registered', topicKeysDelivered: true });
    expect(byName['SN-7001']).toMatchObject({ method: 'factory', state: 'rotated', firstUseKeyHeld: false });
    expect(byName['tofu-0001'].escrowedKey).toMatch(/escrow\/tofu-0001\.key\.age$/);
    // The resync reads the same file: every device with its topics, escrow and rotation time.
    const forResync = loadInventory(inventoryFile);
    expect(forResync.escrowRecipients).toEqual([escrowRecipient]);
    const sn = forResync.clients.find((c) => c.name === 'SN-7001')!;
    expect(sn.topics).toEqual(TOPICS);
    expect(sn.escrowedKeyFile).toBe('escrow/SN-7001.key.age');
    expect(sn.identityKeyRotatedAt).toBeDefined();
    const table = await cli(['list', '--inventory', inventoryFile]);
    expect(table.out).toMatch(/SN-7002\s+factory\s+rotated/);
  });

  it('NewClientKey on this C2 build sends SetIDKey sealed with the old key, then seals with the new one', async () => {
    const old = crypto.randomBytes(32);
    await api.newClient('nck-probe', old);
    const sealed = await nextCommand('nck-probe', () => api.newClientKey('nck-probe'));
    const cmd = decodeCommand(unprotectSymKey(sealed, old));
    if (cmd.type !== 'SetIdKey') throw new Error(`expected SetIdKey, got ${cmd.type}`);
    expect(cmd.key.equals(old)).toBe(false);
    const next = await nextCommand('nck-probe', () => api.resetClient('nck-probe'));
    expect(() => unprotectSymKey(next, old)).toThrow();
    expect(decodeCommand(unprotectSymKey(next, cmd.key)).type).toBe('ResetTopics');
  });

  it('a factory device that never connects is reported pending when the follow window ends', async () => {
    const rows = parseFactoryKeysCsv(`name,key\nlate-1,${lateKey.toString('hex')}\n`, 'late.csv');
    await provisionDevices({ c2, devices: devicesFromFactoryRows(rows), method: 'factory', topics: TOPICS, inventoryFile, broker: stack.mosquitto.url });
    const report = await watchFirstUse({ c2, broker, inventoryFile, followSeconds: 1 });
    expect(report.pending).toEqual(['late-1']);
    expect(report.rotated).toEqual([]);
    expect(() => { throw new ProvisionInputError('x'); }).toThrow(ProvisionInputError);
  });

  it('devices provisioned while first-use runs join the watch, and both runs end up in the one inventory', async () => {
    const watching = watchFirstUse({ c2, broker, inventoryFile, followSeconds: 60, logger: firstUseLog });
    await new Promise((r) => setTimeout(r, 300));
    const out = path.join(dir, 'concurrent');
    await provisionDevices({ c2, devices: [{ name: 'conc-1' }], method: 'prekeyed', topics: TOPICS, inventoryFile, outDir: out, broker: stack.mosquitto.url });
    const b = readDeviceBundle(path.join(out, 'conc-1.json'));
    // Switched on at once: it subscribes before the watch re-reads the inventory, and is served all the same.
    await devices.add({ name: b.name, identityKey: Buffer.from(b.idKey, 'hex'), topics: b.topics });
    await devices.waitFor('conc-1', (x) => Object.keys(x.topicKeys).length === TOPICS.length, 20_000);
    await devices.add({ name: 'late-1', identityKey: lateKey, topics: TOPICS }); // the last pending device: the watch ends
    const r = await watching;
    expect(r).toMatchObject({ pending: [], failed: [] });
    expect(r.delivered.sort()).toEqual(['conc-1', 'late-1']);
    expect(r.rotated).toEqual(['late-1']);
    const inv = loadInventory(inventoryFile);
    expect(inv.clients.map((c) => c.name)).toEqual(expect.arrayContaining(['pk-0001', 'SN-7001', 'tofu-0001', 'late-1', 'conc-1']));
    expect(inv.clients.find((c) => c.name === 'conc-1')!.provisioning!.topicKeysDeliveredAt).toBeDefined();
    expect(inv.clients.find((c) => c.name === 'late-1')!.provisioning!.state).toBe('rotated');
    expect(fs.existsSync(`${inventoryFile}.lock`)).toBe(false);
  });

  it('first-use exits 16 when it cannot serve a device (its first-use key is gone), and says which', async () => {
    const key = crypto.randomBytes(32);
    await provisionDevices({ c2, devices: [{ name: 'lost-1', key }], method: 'factory', topics: TOPICS, inventoryFile, broker: stack.mosquitto.url });
    fs.rmSync(path.join(path.dirname(inventoryFile), 'first-use', 'lost-1.key.age'));
    const running = cli(['first-use', '--inventory', inventoryFile, '--broker-url', stack.mosquitto.url, '--follow', '30s', ...c2Flags()]);
    await new Promise((r) => setTimeout(r, 1500));
    await devices.add({ name: 'lost-1', identityKey: key, topics: TOPICS });
    const r = await running;
    expect(r.code).toBe(16);
    expect(r.out).toMatch(/lost-1: no first-use key for lost-1/);
  });

  it('`provision new` killed with SIGKILL mid-run resumes: finished devices are not registered again, every device ends with one inventory entry and a bundle and escrow holding the key C2 has', async () => {
    const N = 240;
    const kdir = path.join(dir, 'killed');
    const inv = path.join(kdir, 'inventory', 'fleet.yaml');
    const out = path.join(kdir, 'bundles');
    const args = ['provision', 'new', '--count', String(N), '--name-prefix', 'kill-', '--out', out, '--topics', TOPICS.join(','), '--broker', stack.mosquitto.url,
      '--inventory', inv, '--escrow-recipient', escrowRecipient, '--json', ...c2Flags()];
    // The operator's command in a child process, killed as an operator's power cut would.
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'scripts', 'e4ops.ts'), ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    const exited = new Promise((r) => child.once('close', r));
    const journalOf = () => fs.readdirSync(path.dirname(inv)).filter((f) => f.startsWith('fleet.yaml.journal-')).map((f) => path.join(path.dirname(inv), f));
    const doneIn = (files: string[]) => files.flatMap((f) => fs.readFileSync(f, 'utf8').split('\n')).filter((l) => l.includes('"op":"done"')).length;
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline && !(fs.existsSync(path.dirname(inv)) && doneIn(journalOf()) >= 40)) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGKILL');
    await exited;
    const journals = journalOf();
    expect(journals).toHaveLength(1);
    const lines = fs.readFileSync(journals[0], 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { op: string; name?: string; entry?: { name: string } });
    const finished = lines.filter((l) => l.op === 'done').map((l) => l.entry!.name);
    const unfinished = lines.filter((l) => l.op === 'prepared').map((l) => l.name!).filter((n) => !finished.includes(n));
    expect(finished.length).toBeGreaterThanOrEqual(40);
    expect(finished.length).toBeLessThan(N); // killed mid-run, not after
    expect(unfinished.length).toBeGreaterThan(0); // devices prepared ahead of the C2 lanes (in C2 perhaps) when it died
    const bundleBefore = new Map(finished.map((n) => [n, fs.readFileSync(path.join(out, `${n}.json`), 'utf8')]));

    const again = await runE4ops(args, { timeoutMs: 120_000 });
    expect(again.code, again.stderr).toBe(0);
    const report = JSON.parse(again.stdout) as { provisioned: string[]; unchanged: string[]; resumed: { fromJournal: number; again: number } };
    // Finished devices come from the journal (or the last checkpoint): none is provisioned a second time.
    expect(report.provisioned.filter((n) => finished.includes(n))).toEqual([]);
    expect(report.resumed.fromJournal).toBeGreaterThanOrEqual(1);
    expect(report.resumed.again).toBe(unfinished.length);
    expect(new Set([...report.provisioned, ...report.unchanged]).size).toBe(N);
    expect(journalOf()).toEqual([]);
    for (const [n, text] of bundleBefore) expect(fs.readFileSync(path.join(out, `${n}.json`), 'utf8'), n).toBe(text);

    const fleet = loadInventory(inv); // refuses a name listed twice
    const names = fleet.clients.map((c) => c.name).filter((n) => n.startsWith('kill-'));
    expect(names).toHaveLength(N);
    // C2 holds exactly the key of each device's bundle and escrow (sampled: the ones in flight at the kill, and some finished).
    const dbKey = deriveDbKey(PROVISIONING_TEST_PASSPHRASE);
    const rows = stack.postgres.psql(`select name, encode(key,'hex') from clients where name like 'kill-%'`, stack.database).trim().split('\n');
    expect(rows).toHaveLength(N);
    const inC2 = new Map(rows.map((r) => r.split('|')).map(([n, k]) => [n, openDbValue(dbKey, Buffer.from(k, 'hex'), 'clients.key').toString('hex')]));
    for (const n of names) expect(readDeviceBundle(path.join(out, `${n}.json`)).idKey, n).toBe(inC2.get(n));
    const owner = openProvisioningInventory(inv);
    for (const n of [...unfinished, ...finished.slice(0, 5)]) {
      expect((await readEscrowedKey(owner, findClient(owner, n)!, escrowIdentity)).toString('hex'), n).toBe(inC2.get(n));
    }
  }, 240_000);
});
