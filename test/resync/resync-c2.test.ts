// The topic-key resync against the real C2 (real PostgreSQL + Mosquitto): every topic rotated once,
// a run killed halfway resumes with only the rest, the wrong C2 is refused, and the inventory
// re-creates what the restored database lacks.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { spawn } from 'node:child_process';
import { c2BinaryAvailable, c2BinaryDir, startC2TestStack, type C2TestStack } from '../../lib/servers/c2.ts';
import { createC2Api, type C2Api } from '../../lib/c2/c2-api.ts';
import { createResyncC2 } from '../../backups/resync/c2-resync-adapter.ts';
import { createSealedTopicKeyProbe } from '../../backups/resync/sealed-topic-key-probe.ts';
import { resyncTopicKeys, ResyncRefusedError } from '../../backups/resync/resync-topic-keys.ts';
import { readJournal } from '../../backups/resync/resync-journal.ts';
import { parseInventory, renderInventory } from '../../lib/fleet-inventory/fleet-inventory.ts';
import { validateResyncReport } from '../../backups/resync/resync-report.ts';
import { createMemoryLogger } from '../../lib/log.ts';

const REPO = path.resolve(import.meta.dirname, '../..');
const TOPICS = Array.from({ length: 40 }, (_, i) => `plant/line-${String(i).padStart(2, '0')}`);
const CLIENTS = Array.from({ length: 6 }, (_, i) => `sensor-${i}`);

describe('topic-key resync against the real C2', () => {
  let stack: C2TestStack;
  let api: C2Api;
  let dbUrl: string;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-resync-c2-'));

  beforeAll(async () => {
    if (!c2BinaryAvailable()) throw new Error(`the C2 binary is not built (looked in ${c2BinaryDir()}): run bash scripts/build-c2.sh first (CI does this before the tests)`);
    stack = await startC2TestStack();
    api = createC2Api({ baseUrl: stack.c2.baseUrl, ca: stack.c2.ca.certPem });
    dbUrl = stack.postgres.url(stack.database);
    for (const c of CLIENTS) await api.newClient(c, crypto.randomBytes(32));
    for (const t of TOPICS) await api.newTopic(t);
    for (let i = 0; i < CLIENTS.length; i++) for (let j = 0; j < 8; j++) await api.linkClientTopic(CLIENTS[i], TOPICS[(i * 7 + j) % TOPICS.length]);
  });
  afterAll(async () => {
    api?.close();
    await stack?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const digests = () => createSealedTopicKeyProbe(dbUrl).digests(TOPICS);

  it('refuses to touch a C2 whose counts are not those of the restored set', async () => {
    const before = await digests();
    const { c2, api: a } = createResyncC2({ baseUrl: stack.c2.baseUrl, ca: stack.c2.ca.certPem });
    const err = await resyncTopicKeys({
      c2, journalFile: path.join(dir, 'wrong.jsonl'), automationEnginePaused: true,
      expected: { clients: CLIENTS.length, topics: TOPICS.length + 1, source: 'manifest of another set' },
      logger: createMemoryLogger(),
    }).catch((e) => e);
    a.close();
    expect(err).toBeInstanceOf(ResyncRefusedError);
    expect(err.message).toContain(`has ${CLIENTS.length} clients and ${TOPICS.length} topics`);
    expect(await digests()).toEqual(before);
  }, 180_000);

  it('dry run lists every topic it would rotate and changes nothing', async () => {
    const before = await digests();
    const { c2, api: a } = createResyncC2({ baseUrl: stack.c2.baseUrl, ca: stack.c2.ca.certPem });
    const report = await resyncTopicKeys({
      c2, journalFile: path.join(dir, 'dry.jsonl'), automationEnginePaused: true, dryRun: true,
      expected: { clients: CLIENTS.length, topics: TOPICS.length, source: 'test' }, logger: createMemoryLogger(),
    });
    a.close();
    expect(report.topics.wouldRotate!.sort()).toEqual([...TOPICS].sort());
    expect(fs.existsSync(path.join(dir, 'dry.jsonl'))).toBe(false);
    expect(await digests()).toEqual(before);
  }, 180_000);

  it('rotates every topic key once; a run killed halfway is finished by a re-run that rotates only the rest', async () => {
    const original = await digests();
    const journal = path.join(dir, 'killed.jsonl');
    const args = [
      '--import', 'tsx', path.join(REPO, 'scripts/resync-topic-keys.ts'),
      '--c2-url', stack.c2.baseUrl, '--c2-ca', stack.c2.ca.certFile, '--journal', journal,
      '--automation-engine-paused', '--expect-clients', String(CLIENTS.length), '--expect-topics', String(TOPICS.length),
      '--database-url', dbUrl, '--concurrency', '2',
    ];
    const child = spawn(process.execPath, args, { cwd: REPO, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => { stderr += d; });
    const exited = new Promise<NodeJS.Signals | number | null>((r) => child.on('exit', (code, sig) => r(sig ?? code)));
    // Kill it (SIGKILL: no clean-up possible) once about a third of the topics are rotated.
    const deadline = Date.now() + 60_000;
    for (;;) {
      const done = fs.existsSync(journal) ? fs.readFileSync(journal, 'utf8').split('\n').filter((l) => l.includes('"type":"done"')).length : 0;
      if (done >= 12) break;
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`resync ended or stalled before it could be killed: ${stderr}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');

    const afterKill = readJournal(journal);
    expect(afterKill.finished).toBe(false);
    const rotatedByFirst = [...afterKill.rotated];
    expect(rotatedByFirst.length).toBeGreaterThanOrEqual(12);
    expect(rotatedByFirst.length).toBeLessThan(TOPICS.length);
    const keysAfterKill = await digests();
    for (const t of rotatedByFirst) expect(keysAfterKill.get(t), t).not.toBe(original.get(t));

    // Re-run with the same journal (through the library this time).
    const { c2, api: a } = createResyncC2({ baseUrl: stack.c2.baseUrl, ca: stack.c2.ca.certPem });
    const rotatedNow: string[] = [];
    const report = await resyncTopicKeys({
      c2, journalFile: journal, automationEnginePaused: true, probe: createSealedTopicKeyProbe(dbUrl),
      onRotated: (t) => rotatedNow.push(t), logger: createMemoryLogger(),
    });
    a.close();
    validateResyncReport(report);
    expect(report.ok).toBe(true);
    expect(report.resumed).toBe(true);
    // Only the remaining topics were rotated, none of the first run's again.
    expect(rotatedNow.filter((t) => rotatedByFirst.includes(t))).toEqual([]);
    expect(report.topics.rotated + report.topics.alreadyRotated).toBe(TOPICS.length);
    const final = await digests();
    for (const t of TOPICS) expect(final.get(t), `${t} rotated`).not.toBe(original.get(t));
    for (const t of rotatedByFirst) expect(final.get(t), `${t} rotated a second time`).toBe(keysAfterKill.get(t));
    // The journal now says every topic is done exactly once, and is closed.
    const lines = fs.readFileSync(journal, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
    const doneCount = new Map<string, number>();
    for (const l of lines) if (l.type === 'done') doneCount.set(l.topic, (doneCount.get(l.topic) ?? 0) + 1);
    expect([...doneCount.keys()].sort()).toEqual([...TOPICS].sort());
    expect([...doneCount.values()].every((n) => n === 1)).toBe(true);
    expect(lines.at(-1)).toMatchObject({ type: 'finish', ok: true });

    // The finished journal cannot start the same resync again.
    await expect(resyncTopicKeys({ c2, journalFile: journal, automationEnginePaused: true })).rejects.toThrow(/already finished/);
  }, 180_000);

  it('settles a request that was in flight when a run died through the database, and only pushes what was pending', async () => {
    const before = await digests();
    const journal = path.join(dir, 'in-doubt.jsonl');
    const at = new Date().toISOString();
    const [inFlight, pushPending, ...rest] = TOPICS;
    // The dead run: it had written `begin` for one topic and its request reached C2; another topic was rotated but not pushed.
    await api.newTopic(inFlight);
    await api.newTopic(pushPending);
    const rotatedByDeadRun = await digests();
    fs.writeFileSync(journal, [
      { type: 'start', resyncId: 'dead-run', at, c2: stack.c2.baseUrl, counts: { clients: await api.countClients(), topics: await api.countTopics() }, pid: 1 },
      ...rest.map((t) => ({ type: 'done', topic: t, at, attempts: 1 })),
      { type: 'begin', topic: inFlight, at, keyDigest: before.get(inFlight) },
      { type: 'rotated', topic: pushPending, at, attempts: 1 },
    ].map((l) => JSON.stringify(l)).join('\n') + '\n');
    const { c2, api: a } = createResyncC2({ baseUrl: stack.c2.baseUrl, ca: stack.c2.ca.certPem });
    const report = await resyncTopicKeys({ c2, journalFile: journal, automationEnginePaused: true, probe: createSealedTopicKeyProbe(dbUrl), logger: createMemoryLogger() });
    a.close();
    expect(report.ok).toBe(true);
    expect(report.topics.rotated).toBe(0);
    expect(report.topics.alreadyRotated).toBe(TOPICS.length);
    expect(report.topics.inDoubtRotatedAgain).toEqual([]);
    const after = await digests();
    expect(after.get(inFlight)).toBe(rotatedByDeadRun.get(inFlight));
    expect(after.get(pushPending)).toBe(rotatedByDeadRun.get(pushPending));
    const lines = fs.readFileSync(journal, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toContainEqual(expect.objectContaining({ type: 'rotated', topic: inFlight, confirmedBy: 'database' }));
    const pushed = lines.filter((l) => l.type === 'done' && (l.topic === inFlight || l.topic === pushPending));
    expect(pushed).toHaveLength(2);
    for (const l of pushed) expect(l.pushedTo).toBe(await api.countClientsForTopic(l.topic));
  }, 180_000);

  it('re-creates clients, topics and links the inventory lists but the restored database lacks, and reports them', async () => {
    fs.writeFileSync(path.join(dir, 'late-device.key'), crypto.randomBytes(32).toString('hex'));
    const inv = parseInventory(renderInventory({
      version: 1, cryptoMode: 'symkey',
      clients: [
        { name: CLIENTS[0], topics: [TOPICS[0], 'plant/added-after-backup'] },
        { name: 'late-device', keyFile: 'late-device.key', topics: ['plant/added-after-backup', TOPICS[1]], lastSeen: new Date(Date.now() - 3600_000).toISOString() },
        { name: 'lost-device', topics: [TOPICS[2]] },
      ],
    }), 'inventory.yaml', dir);
    const counts = { clients: await api.countClients(), topics: await api.countTopics() };
    const { c2, api: a } = createResyncC2({ baseUrl: stack.c2.baseUrl, ca: stack.c2.ca.certPem });
    const report = await resyncTopicKeys({
      c2, journalFile: path.join(dir, 'inventory.jsonl'), automationEnginePaused: true, inventory: inv,
      expected: { ...counts, source: 'test' }, backupTakenAt: new Date(Date.now() - 86_400_000), logger: createMemoryLogger(),
    });
    a.close();
    validateResyncReport(report);
    expect(report.topics.created).toEqual(['plant/added-after-backup']);
    expect(report.clientsCreated).toEqual(['late-device']);
    expect(await api.allTopicsForClient('late-device')).toEqual(expect.arrayContaining(['plant/added-after-backup', TOPICS[1]]));
    expect(await api.allTopicsForClient(CLIENTS[0])).toContain('plant/added-after-backup');
    // lost-device has no key in the inventory: reported, not invented.
    expect(report.checks.find((c) => c.name === 'inventory-clients-recreated')?.detail).toContain('lost-device');
    expect(report.ok).toBe(false);
    expect(report.atRisk.map((r) => r.name)).toContain('late-device');
    expect(report.topics.rotated).toBe(TOPICS.length);
  }, 180_000);
});
