// The typo the old minimist parsing let through: `--dry-rn` on a resync was ignored and the resync ran
// for real, rotating every topic key. Against a real C2 (real PostgreSQL + Mosquitto): `e4ops resync`
// with --dry-rn exits 2 naming the flag, writes no journal and leaves every sealed topic key as it was;
// the same line with --dry-run spelt right is accepted (so the typo was the only thing wrong).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { startC2TestStack, type C2TestStack } from '../../lib/servers/c2.ts';
import { createC2Api, type C2Api } from '../../lib/c2/c2-api.ts';
import { createSealedTopicKeyProbe } from '../../backups/resync/sealed-topic-key-probe.ts';
import { skipWithoutC2, C2_MISSING_REASON } from '../c2/c2-stack.ts';
import { runE4ops } from './e4ops-run.ts';

const TOPICS = ['plant/a', 'plant/b', 'plant/c'];
const CLIENTS = ['dev-1', 'dev-2'];

describe.skipIf(skipWithoutC2)(`e4ops resync --dry-rn against the real C2${skipWithoutC2 ? ` (${C2_MISSING_REASON})` : ''}`, () => {
  let stack: C2TestStack;
  let api: C2Api;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-cli-typo-'));

  beforeAll(async () => {
    stack = await startC2TestStack();
    api = createC2Api({ baseUrl: stack.c2.baseUrl, ca: stack.c2.ca.certPem });
    for (const c of CLIENTS) await api.newClient(c, crypto.randomBytes(32));
    for (const t of TOPICS) await api.newTopic(t);
    for (const c of CLIENTS) for (const t of TOPICS) await api.linkClientTopic(c, t);
  });
  afterAll(async () => {
    api?.close();
    await stack?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const sealedKeys = () => createSealedTopicKeyProbe(stack.postgres.url(stack.database)).digests(TOPICS);
  const resyncArgs = (journal: string, dryRunFlag: string) => [
    'resync', '--c2-url', stack.c2.baseUrl, '--c2-ca', stack.c2.ca.certFile, '--journal', journal,
    '--automation-engine-paused', '--expect-clients', String(CLIENTS.length), '--expect-topics', String(TOPICS.length), dryRunFlag,
  ];

  it('exits 2 naming --dry-rn and --dry-run, writes no journal, and changes no topic key', async () => {
    const before = await sealedKeys();
    expect(before.size).toBe(TOPICS.length);
    const journal = path.join(dir, 'typo.jsonl');
    const r = await runE4ops(resyncArgs(journal, '--dry-rn'), { viaShim: true });
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain('unknown flag --dry-rn; did you mean --dry-run?');
    expect(fs.existsSync(journal)).toBe(false);
    expect(await sealedKeys()).toEqual(before);
    expect(await api.countTopics()).toBe(TOPICS.length);
    expect(await api.countClients()).toBe(CLIENTS.length);
  }, 120_000);

  it('the same line spelt right is a dry run that C2 accepts and that also changes nothing', async () => {
    const before = await sealedKeys();
    const journal = path.join(dir, 'dry.jsonl');
    const report = path.join(dir, 'dry-report.json');
    const r = await runE4ops([...resyncArgs(journal, '--dry-run'), '--report', report]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(fs.readFileSync(report, 'utf8')).topics.wouldRotate.sort()).toEqual(TOPICS);
    expect(fs.existsSync(journal)).toBe(false);
    expect(await sealedKeys()).toEqual(before);
  }, 120_000);
});
