// Without C2: what the provisioning station and the label printer get, and how bad input is refused.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import jsQRModule from 'jsqr';
import { PNG } from 'pngjs';
import { buildDeviceBundle, writeDeviceBundle, readDeviceBundle, renderLabel, labelText } from '../../provisioning/device-bundle.ts';
import { parseFactoryKeysCsv, namesFromFile, namesFromCount, checkTopics, ProvisionInputError } from '../../provisioning/provisioning-input.ts';
import { ageDecrypt, ageEncrypt, checkAgeRecipient, decodeAgeRecipient } from '../../lib/age.ts';
import { clientIdFromName } from '../../lib/e4/ids.ts';
import { runCommand } from '../../lib/cli/command.ts';
import { command } from '../../scripts/provision.ts';
import { freeLoopbackPort } from '../../lib/ports.ts';
import { registrationCheck } from '../../provisioning/provisioning-c2.ts';
import { updateInventoryFile, upsertClient, openProvisioningInventory, renderProvisioningInventory } from '../../provisioning/provisioning-inventory.ts';
import { openProvisionJournal, readLeftOverJournals } from '../../provisioning/provision-journal.ts';

let dir: string;
let identity: string;
let recipient: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-prov-'));
  identity = path.join(dir, 'station.key');
  execFileSync('age-keygen', ['-o', identity], { stdio: 'ignore' });
  recipient = /public key: (age1\S+)/.exec(fs.readFileSync(identity, 'utf8'))![1];
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

// jsqr ships CommonJS typed as an ES default export: the default import is the function at run time.
const jsQR = jsQRModule as unknown as (data: Uint8ClampedArray, width: number, height: number) => { data: string } | null;
const decodeQrPng = (file: string) => {
  const png = PNG.sync.read(fs.readFileSync(file));
  return jsQR(new Uint8ClampedArray(png.data), png.width, png.height)?.data;
};

// The SVG label's path (rectangles `Mx yhNv1h-Nz` on a viewBox of modules), painted at 4 px per module.
const decodeQrSvg = (svg: string) => {
  const n = Number(/viewBox="0 0 (\d+) \1"/.exec(svg)![1]);
  const scale = 4;
  const px = new Uint8ClampedArray(n * scale * n * scale * 4).fill(255);
  for (const [, x, y, w] of svg.matchAll(/M(\d+) (\d+)h(\d+)v1h-\3z/g)) {
    for (let yy = Number(y) * scale; yy < (Number(y) + 1) * scale; yy++) {
      for (let xx = Number(x) * scale; xx < (Number(x) + Number(w)) * scale; xx++) px.fill(0, (yy * n * scale + xx) * 4, (yy * n * scale + xx) * 4 + 3);
    }
  }
  return jsQR(px, n * scale, n * scale)?.data;
};

describe('device bundles and labels', () => {
  it('the bundle holds name, id, key, command topic, topics and broker, readable by its owner only; the QR label (PNG and SVG) decodes to name and id, no key', async () => {
    const key = crypto.randomBytes(32);
    const b = buildDeviceBundle('sensor-0001', key, ['plant/t', 'plant/a'], 'tcp://mqtt.plant:1883');
    const out = path.join(dir, 'plain');
    fs.mkdirSync(out);
    const paths = await writeDeviceBundle(out, b);
    expect(fs.statSync(paths.bundle).mode & 0o777).toBe(0o600);
    const back = readDeviceBundle(paths.bundle);
    expect(back).toMatchObject({ name: 'sensor-0001', idKey: key.toString('hex'), topics: ['plant/t', 'plant/a'], broker: 'tcp://mqtt.plant:1883' });
    const id = clientIdFromName('sensor-0001').toString('hex');
    expect(back.id).toBe(id);
    expect(back.commandTopic).toBe(`e4/${id}`);

    const qr = decodeQrPng(paths.labelPng);
    expect(JSON.parse(qr!)).toEqual({ name: 'sensor-0001', id });
    const svg = fs.readFileSync(paths.labelSvg, 'utf8');
    expect(svg).toMatch(/^<svg/);
    expect(JSON.parse(decodeQrSvg(svg)!)).toEqual({ name: 'sensor-0001', id });
    for (const f of [paths.labelPng, paths.labelSvg]) {
      const bytes = fs.readFileSync(f);
      expect(bytes.includes(key.toString('hex'))).toBe(false);
      expect(bytes.includes(key)).toBe(false);
    }
    expect(qr).not.toContain(key.toString('hex'));
  });

  it('labels decode for every name length C2 allows (1 to 256 characters: QR versions 4 to 13)', () => {
    for (const name of ['a', 'sensor-0001', `line-7:${'x'.repeat(56)}`, `p.${'y'.repeat(160)}`, 'z'.repeat(256)]) {
      const text = labelText({ name, id: clientIdFromName(name).toString('hex') });
      const { png, svg } = renderLabel(text);
      const file = path.join(dir, `label-${name.length}.png`);
      fs.writeFileSync(file, png);
      expect(decodeQrPng(file), `PNG label of a ${name.length}-character name`).toBe(text);
      expect(decodeQrSvg(svg), `SVG label of a ${name.length}-character name`).toBe(text);
    }
  });

  it('with a bundle recipient the bundle is age-encrypted: no key in the file, the station identity opens it', async () => {
    const key = crypto.randomBytes(32);
    const out = path.join(dir, 'sealed');
    fs.mkdirSync(out);
    const paths = await writeDeviceBundle(out, buildDeviceBundle('sensor-0002', key, ['plant/t'], 'tcp://b:1883'), [recipient]);
    expect(paths.bundle.endsWith('.json.age')).toBe(true);
    const raw = fs.readFileSync(paths.bundle);
    expect(raw.subarray(0, 21).toString()).toBe('age-encryption.org/v1');
    expect(raw.includes(key.toString('hex'))).toBe(false);
    expect(fs.statSync(paths.bundle).mode & 0o777).toBe(0o600);
    const opened = JSON.parse((await ageDecrypt(raw, identity)).toString());
    expect(opened.idKey).toBe(key.toString('hex'));
  });
});

describe('age in process (escrow and bundles)', () => {
  it('what e4ops encrypts (the age-encryption package), the real age CLI decrypts, for one or two recipients; a mistyped recipient is refused', async () => {
    const other = path.join(dir, 'other.key');
    execFileSync('age-keygen', ['-o', other], { stdio: 'ignore' });
    const otherRecipient = /public key: (age1\S+)/.exec(fs.readFileSync(other, 'utf8'))![1];
    // An identity key and a bundle-sized document: what provisioning encrypts.
    for (const data of [crypto.randomBytes(32), Buffer.from(JSON.stringify({ idKey: crypto.randomBytes(32).toString('hex'), pad: 'x'.repeat(400) }))]) {
      const sealed = await ageEncrypt(data, [recipient, otherRecipient]);
      expect(sealed.includes(data)).toBe(false);
      expect((await ageDecrypt(sealed, identity)).equals(data)).toBe(true);
      expect((await ageDecrypt(sealed, other)).equals(data)).toBe(true);
      const single = await ageEncrypt(data, [recipient]);
      expect((await ageDecrypt(single, identity)).equals(data)).toBe(true);
      await expect(ageDecrypt(single, other)).rejects.toThrow(/age --decrypt/);
    }
    const typo = recipient.slice(0, 10) + (recipient[10] === 'q' ? 'p' : 'q') + recipient.slice(11);
    expect(() => decodeAgeRecipient(typo)).toThrow(/bad checksum/);
    await expect(ageEncrypt(Buffer.from('x'), [typo])).rejects.toThrow(/bad checksum/);
    // Refused where the operator gives it, naming the flag, before anything is encrypted to it.
    expect(checkAgeRecipient(recipient, '--escrow-recipient #1')).toBe(recipient);
    expect(() => checkAgeRecipient(typo, '--escrow-recipient #1')).toThrow(/^--escrow-recipient #1: .*bad checksum/);
    expect(() => checkAgeRecipient(`age1${'q'.repeat(58)}`, 'backup.ageRecipients[0]')).toThrow(/backup.ageRecipients\[0\]: .*bad checksum/);
  });
});

describe('operator input is checked line by line before anything is registered', () => {
  const k = () => crypto.randomBytes(32).toString('hex');
  it('factory CSV: a good file parses (serial column becomes the name)', () => {
    const rows = parseFactoryKeysCsv(`serial,key\nSN-001,${k()}\n# comment\nSN-002,${k()}\n`, 'f.csv');
    expect(rows.map((r) => [r.name, r.serial, r.key.length])).toEqual([['SN-001', 'SN-001', 32], ['SN-002', 'SN-002', 32]]);
  });
  it.each([
    ['malformed row', `name,key\ndev-1,${'ab'.repeat(32)}\ndev-2\n`, /f\.csv line 3: 1 column\(s\), the header has 2/],
    ['key of the wrong length', `name,key\ndev-1,${'ab'.repeat(16)}\n`, /f\.csv line 2: key of "dev-1" has 16 bytes .* 32 bytes/],
    ['key not hex', `name,key\ndev-1,${'zz'.repeat(32)}\n`, /line 2: key of "dev-1" is not hexadecimal/],
    ['duplicate names', `name,key\ndev-1,${'ab'.repeat(32)}\ndev-1,${'cd'.repeat(32)}\n`, /f\.csv line 3: device name "dev-1" is listed twice \(first at f\.csv line 2\)/],
    ['the same key twice', `name,key\ndev-1,${'ab'.repeat(32)}\ndev-2,${'ab'.repeat(32)}\n`, /line 3: "dev-2" has the same key as f\.csv line 2/],
    ['bad header', `device,secret\n`, /line 1: header "device,secret" must name the columns name \(or serial\) and key/],
    ['bad name', `name,key\ndev 1,${'ab'.repeat(32)}\n`, /line 2: device name "dev 1" is not allowed/],
  ])('factory CSV refused: %s', (_what, text, message) => {
    expect(() => parseFactoryKeysCsv(text, 'f.csv')).toThrow(message);
  });
  it('names file: duplicates are refused naming both lines; topics with wildcards are refused', () => {
    const f = path.join(dir, 'names.txt');
    fs.writeFileSync(f, 'a-1\na-2\n\na-1\n');
    expect(() => namesFromFile(f)).toThrow(new RegExp(`${f} line 4: device name "a-1" is listed twice \\(first at ${f} line 1\\)`));
    expect(namesFromCount(3, 'dev-')).toEqual(['dev-0001', 'dev-0002', 'dev-0003']);
    expect(() => checkTopics(['ok', 'bad/#'])).toThrow(ProvisionInputError);
    expect(() => checkTopics(['$SYS/x'])).toThrow(/not allowed/);
  });
});

describe('asking C2 which names it has', () => {
  it('a few new devices against a large fleet are asked by name; a batch as large as the fleet reads the list', () => {
    expect(registrationCheck(1_000_000, 10)).toBe('per-name');
    expect(registrationCheck(1_000_000, 100_000)).toBe('per-name'); // 10,001 pages deep into an OFFSET scan
    expect(registrationCheck(0, 10_000)).toBe('list'); // an empty C2: one page
    expect(registrationCheck(17_700, 2_500)).toBe('list'); // bench:provision's last round
    expect(registrationCheck(1_000_000, 1_000_000)).toBe('list');
  });
});

describe('the inventory file shared by provision runs and the first-use watcher', () => {
  const entry = (name: string) => ({ name, topics: ['t'], provisioning: { method: 'prekeyed' as const, state: 'registered' as const, rotateOnFirstUse: false, provisionedAt: '2026-12-03T00:00:00Z' } });
  it('a checkpoint adds to what is on disk: a write by another process in between is kept, even one of the same size in place', async () => {
    const file = path.join(dir, 'shared-inventory', 'fleet.yaml');
    await updateInventoryFile(file, (inv) => upsertClient(inv, entry('a')), { checkpoint: true });
    // Another process renames its version in (new inode) ...
    const other = openProvisioningInventory(file);
    upsertClient(other, entry('b'));
    fs.writeFileSync(`${file}.other`, renderProvisioningInventory(other));
    fs.renameSync(`${file}.other`, file);
    await updateInventoryFile(file, (inv) => upsertClient(inv, entry('c')), { checkpoint: true });
    expect(openProvisioningInventory(file).clients.map((c) => c.name)).toEqual(['a', 'b', 'c']);
    // ... or rewrites it in place with the same length (same inode, same size: only mtime/ctime tell).
    const text = fs.readFileSync(file, 'utf8');
    fs.writeFileSync(file, text.replace('"name": "b"', '"name": "x"'));
    await updateInventoryFile(file, (inv) => upsertClient(inv, entry('d')));
    expect(openProvisioningInventory(file).clients.map((c) => c.name)).toEqual(['a', 'x', 'c', 'd']);
  });

  it("the journal's done records, written without a flush of their own, are on disk by the next turn of the event loop and before the next prepared record", async () => {
    const inventory = path.join(dir, 'journal-inventory', 'fleet.yaml');
    fs.mkdirSync(path.dirname(inventory), { recursive: true });
    const journal = openProvisionJournal(inventory);
    const lines = () => fs.readFileSync(journal.file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { op: string });
    await journal.append({ op: 'prepared', name: 'a' });
    await journal.append({ op: 'prepared', name: 'b' });
    await journal.append({ op: 'done', entry: entry('a') }, { durable: false });
    await journal.append({ op: 'done', entry: entry('b') }, { durable: false });
    expect(lines().map((r) => r.op)).toEqual(['prepared', 'prepared']); // still in this turn
    await journal.append({ op: 'prepared', name: 'c' }); // the fsync of 'c' carries both done records, in order
    expect(lines().map((r) => r.op)).toEqual(['prepared', 'prepared', 'done', 'done', 'prepared']);
    await journal.append({ op: 'done', entry: entry('c') }, { durable: false });
    await new Promise((r) => setImmediate(r));
    expect(lines()).toHaveLength(6);
    // What a later run reads from this journal if this run died now: every device finished.
    const copy = `${path.dirname(inventory)}/fleet.yaml.journal-999999`;
    fs.copyFileSync(journal.file, copy);
    expect(readLeftOverJournals(inventory)).toMatchObject({ unfinished: [], done: [{ name: 'a' }, { name: 'b' }, { name: 'c' }] });
    fs.rmSync(copy);
    await journal.close();
    expect(fs.existsSync(journal.file)).toBe(false);
    expect(journal.error).toBeUndefined();
  });
});

describe('e4ops provision command line', () => {
  const run = async (argv: string[]) => {
    let out = '';
    let err = '';
    const code = await runCommand(command, argv, { stdout: (t) => void (out += t), stderr: (t) => void (err += t) });
    return { code, out, err };
  };
  it('--help lists the subcommands; bad flags exit 2 naming the flag; a bad CSV exits 2 naming the line', async () => {
    const help = await run(['--help']);
    expect(help.code).toBe(0);
    for (const s of ['new', 'import', 'first-use', 'list']) expect(help.out).toContain(s);
    const typo = await run(['new', '--cuont', '3']);
    expect(typo.code).toBe(2);
    expect(typo.err).toMatch(/unknown flag --cuont; did you mean --count\?/);
    const both = await run(['new', '--count', '3', '--names-file', 'x', '--out', dir, '--topics', 't', '--broker', 'tcp://b:1', '--inventory', 'i.yaml', '--c2-url', 'https://127.0.0.1:1']);
    expect(both.code).toBe(2);
    expect(both.err).toMatch(/either --count N with --name-prefix P, or --names-file FILE/);
    const csv = path.join(dir, 'bad.csv');
    fs.writeFileSync(csv, `name,key\ndev-1,abc\n`);
    const imp = await run(['import', '--factory-keys', csv, '--topics', 't', '--inventory', path.join(dir, 'i.yaml'), '--c2-url', 'https://127.0.0.1:1']);
    expect(imp.code).toBe(2);
    expect(imp.err).toContain(`${csv} line 2: key of "dev-1"`);
    const list = await run(['list', '--inventory', path.join(dir, 'missing.yaml')]);
    expect(list.code).toBe(2);
  });

  it('a C2 that does not answer exits 15 naming it, with nothing written', async () => {
    const port = await freeLoopbackPort('127.0.0.1');
    const out = path.join(dir, 'unreachable-bundles');
    const inventory = path.join(dir, 'unreachable', 'fleet.yaml');
    const r = await run(['new', '--count', '1', '--name-prefix', 'x-', '--out', out, '--topics', 't', '--broker', 'tcp://b:1', '--inventory', inventory, '--escrow-recipient', recipient, '--c2-url', `https://127.0.0.1:${port}`]);
    expect(r.code).toBe(15);
    expect(r.err).toContain(`is C2 running at https://127.0.0.1:${port}?`);
    expect(fs.existsSync(out)).toBe(false);
    expect(fs.existsSync(inventory)).toBe(false);
  }, 30_000);
});
