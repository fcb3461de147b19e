// Safety rails of the resync that hold before C2 is contacted, the journal format, the inventory
// schema and the at-risk device list. The end-to-end runs against a real C2 are in resync-c2.test.ts.
import { runCommand } from '../../lib/cli/command.ts';
import { describe, it, expect, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { resyncTopicKeys, listDevicesAtRisk, ResyncRefusedError, type ResyncC2 } from '../../backups/resync/resync-topic-keys.ts';
import { readJournal, JournalWriter } from '../../backups/resync/resync-journal.ts';
import { parseInventory, inventoryTopics, readInventoryKey, InventoryError } from '../../lib/fleet-inventory/fleet-inventory.ts';
import { validateResyncReport } from '../../backups/resync/resync-report.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-resync-safety-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A C2 that must never be reached: every call fails the test. */
function untouchableC2(): ResyncC2 & { calls: string[] } {
  const calls: string[] = [];
  const no = (name: string) => async () => { calls.push(name); throw new Error(`C2 was called (${name}) although the resync should have refused first`); };
  return {
    endpoint: 'https://127.0.0.1:1', calls,
    countClients: no('countClients'), countTopics: no('countTopics'), listTopics: no('listTopics'), listClients: no('listClients'),
    topicsOfClient: no('topicsOfClient'), clientsOfTopic: no('clientsOfTopic'), newTopic: no('newTopic'), newClient: no('newClient'), linkClientTopic: no('linkClientTopic'),
  };
}

describe('resync safety rails', () => {
  it('the script refuses a bad --concurrency naming the flag (exit 2), before it reaches any C2', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', path.resolve(import.meta.dirname, '../../scripts/resync-topic-keys.ts'),
      '--c2-url', 'https://127.0.0.1:1', '--journal', path.join(dir, 'flags.jsonl'), '--automation-engine-paused',
      '--expect-clients', '1', '--expect-topics', '1', '--concurrency', '0'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('--concurrency must be a whole number >= 1, not "0"');
    expect(fs.existsSync(path.join(dir, 'flags.jsonl'))).toBe(false);
  });

  it('presence flags: --follow needs a broker and the inventory, credentials stay out of URLs, --follow-up needs --follow (exit 2)', async () => {
    const { command } = await import('../../scripts/resync-topic-keys.ts');
    const run = async (...extra: string[]) => {
      let err = '';
      const code = await runCommand(command, ['--c2-url', 'https://127.0.0.1:1', '--automation-engine-paused', '--expect-clients', '1', '--expect-topics', '1', ...extra],
        { stdout: () => {}, stderr: (t) => { err += t; } });
      return { code, err };
    };
    const inv = path.join(dir, 'flags-inv.yaml');
    fs.writeFileSync(inv, 'version: 1\ncryptoMode: symkey\nclients:\n  - name: d1\n');
    expect(await run('--journal', path.join(dir, 'f1.jsonl'), '--follow', '10m')).toMatchObject({ code: 2, err: expect.stringContaining('--follow needs --broker-url and --inventory') });
    expect(await run('--journal', path.join(dir, 'f2.jsonl'), '--inventory', inv, '--broker-url', 'mqtt://monitor:hunter2@127.0.0.1:1883'))
      .toMatchObject({ code: 2, err: expect.stringContaining('--broker-url must not hold credentials') });
    expect(await run('--follow-up', path.join(dir, 'f3.jsonl'), '--inventory', inv, '--broker-url', 'mqtt://127.0.0.1:1883'))
      .toMatchObject({ code: 2, err: expect.stringContaining('--follow-up needs --follow DURATION') });
    expect(await run('--inventory', inv)).toMatchObject({ code: 2, err: expect.stringContaining('--journal FILE is required') });
    for (const f of ['f1.jsonl', 'f2.jsonl', 'f3.jsonl']) expect(fs.existsSync(path.join(dir, f))).toBe(false);
  });

  it('prints a follow-up unit that holds file paths, never the broker password', async () => {
    const { command } = await import('../../scripts/resync-topic-keys.ts');
    const pw = path.join(dir, 'broker.pw');
    fs.writeFileSync(pw, 'hunter2-secret\n');
    const inv = path.join(dir, 'unit-inv.yaml');
    fs.writeFileSync(inv, 'version: 1\ncryptoMode: symkey\nclients:\n  - name: d1\n');
    let out = '';
    const code = await runCommand(command, ['--c2-url', 'https://c2.example:8888', '--journal', path.join(dir, 'unit.jsonl'), '--inventory', inv,
      '--broker-url', 'mqtt://broker:1883', '--broker-username', 'monitor', '--broker-password-file', pw, '--follow', '24h', '--print-follow-up-unit'],
    { stdout: (t) => { out += t; }, stderr: () => {} });
    expect(code).toBe(0);
    expect(out).toMatch(/^ExecStart=\/.*\/bin\/e4ops resync --follow-up \/.*unit\.jsonl --follow 86400s .*--broker-password-file \/.*broker\.pw/m);
    expect(out).not.toContain('hunter2');
    expect(out).toContain('SuccessExitStatus=11');
    expect(fs.existsSync(path.join(dir, 'unit.jsonl'))).toBe(false);
  });

  it('refuses to start unless the operator confirms the automation engine is paused, before touching C2', async () => {
    const c2 = untouchableC2();
    await expect(resyncTopicKeys({ c2, journalFile: path.join(dir, 'j1.jsonl'), automationEnginePaused: false }))
      .rejects.toThrow(/automation engine is paused.*--automation-engine-paused/);
    expect(c2.calls).toEqual([]);
  });

  it('refuses to reuse the journal of a finished resync (that would rotate every topic twice)', async () => {
    const file = path.join(dir, 'finished.jsonl');
    const w = new JournalWriter(file);
    w.append({ type: 'start', resyncId: 'r1', at: new Date().toISOString(), c2: 'x', counts: { clients: 1, topics: 1 }, pid: 1 });
    w.append({ type: 'done', topic: 't', at: new Date().toISOString(), attempts: 1 });
    w.append({ type: 'finish', at: new Date().toISOString(), ok: true });
    w.close();
    const c2 = untouchableC2();
    const err = await resyncTopicKeys({ c2, journalFile: file, automationEnginePaused: true }).catch((e) => e);
    expect(err).toBeInstanceOf(ResyncRefusedError);
    expect(err.message).toMatch(/already finished.*new --journal/);
    expect(c2.calls).toEqual([]);
  });
});

describe('resync journal', () => {
  it('reads back rotated, in-doubt and failed topics, and ignores the torn last line of a killed run', () => {
    const file = path.join(dir, 'torn.jsonl');
    const at = new Date().toISOString();
    const lines = [
      { type: 'start', resyncId: 'r2', at, c2: 'x', counts: { clients: 3, topics: 4 }, pid: 1 },
      { type: 'begin', topic: 'a', at }, { type: 'done', topic: 'a', at, attempts: 1 },
      { type: 'begin', topic: 'b', at, keyDigest: 'abc' },
      { type: 'begin', topic: 'c', at }, { type: 'failed', topic: 'c', at, attempts: 5, error: 'HTTP 500' },
    ].map((l) => JSON.stringify(l)).join('\n');
    fs.writeFileSync(file, lines + '\n{"type":"done","topic":"b","a');
    const st = readJournal(file);
    expect(st.resyncId).toBe('r2');
    expect(st.startCounts).toEqual({ clients: 3, topics: 4 });
    expect([...st.rotated]).toEqual(['a']);
    expect([...st.inDoubt.entries()]).toEqual([['b', { keyDigest: 'abc' }]]);
    expect([...st.failed.keys()]).toEqual(['c']);
    expect(st.finished).toBe(false);
  });

  it('rejects a journal damaged in the middle, naming the line', () => {
    const file = path.join(dir, 'damaged.jsonl');
    fs.writeFileSync(file, '{"type":"begin","topic":"a","at":"x"}\nnot json\n{"type":"done","topic":"a","at":"x","attempts":1}\n\n');
    expect(() => readJournal(file)).toThrow(/line 2 is not JSON/);
  });
});

describe('fleet inventory', () => {
  it('validates against the schema and names the bad field', () => {
    expect(() => parseInventory('version: 1\ncryptoMode: symkey\nclients:\n  - name: d1\n    topics: ["fleet/#"]\n', 'inv.yaml'))
      .toThrow(/inv\.yaml .*\/clients\/0\/topics\/0/);
    expect(() => parseInventory('version: 1\ncryptoMode: symkey\nclients:\n  - name: d1\n  - name: d1\n', 'inv.yaml'))
      .toThrow(/"d1" is listed twice/);
    expect(() => parseInventory('version: 1\ncryptoMode: symkey\nclients:\n  - name: d1\n    lastSeen: yesterday\n', 'inv.yaml'))
      .toThrow(InventoryError);
  });

  it('lists every topic once and reads hex key files relative to the inventory', () => {
    fs.writeFileSync(path.join(dir, 'd1.key'), 'ab'.repeat(32) + '\n');
    const inv = parseInventory('version: 1\ncryptoMode: symkey\ntopics: [alarms]\nclients:\n  - name: d1\n    keyFile: d1.key\n    topics: [t1, alarms]\n  - name: d2\n    topics: [t2, t1]\n', 'inv.yaml', dir);
    expect(inventoryTopics(inv)).toEqual(['alarms', 't1', 't2']);
    expect(readInventoryKey(inv, inv.clients[0])!.toString('hex')).toBe('ab'.repeat(32));
    expect(readInventoryKey(inv, inv.clients[1])).toBeUndefined();
  });

  it('lists devices at risk with what to do: identity key changed after the backup, offline over 10 minutes', () => {
    const now = new Date('2026-03-01T12:00:00Z');
    const inv = parseInventory([
      'version: 1', 'cryptoMode: symkey', 'clients:',
      '  - name: rotated-no-key', '    identityKeyRotatedAt: 2026-03-01T10:00:00Z', '    lastSeen: 2026-03-01T11:59:00Z',
      '  - name: rotated-before-backup', '    identityKeyRotatedAt: 2026-02-01T10:00:00Z', '    lastSeen: 2026-03-01T11:59:00Z',
      '  - name: offline', '    lastSeen: 2026-03-01T11:00:00Z',
      '  - name: fine', '    lastSeen: 2026-03-01T11:55:00Z',
    ].join('\n'), 'inv.yaml');
    const risk = listDevicesAtRisk(inv, { backupTakenAt: new Date('2026-03-01T08:00:00Z'), now, recreated: new Set() });
    expect(risk.map((r) => r.name)).toEqual(['rotated-no-key', 'offline']);
    expect(risk[0].action).toMatch(/re-provision/);
    expect(risk[1].reason).toMatch(/more than 10 minutes/);
  });
});

describe('resync report schema', () => {
  it('rejects a report without the fields operators and alerts read', () => {
    expect(() => validateResyncReport({ kind: 'topic-key-resync', ok: true })).toThrow(/resyncId/);
  });
});
