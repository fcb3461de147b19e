// The typo the old minimist parsing let through: `--dry-rn` on a resync was ignored and the resync ran
// for real, rotating every topic key. Against a real C2 (real PostgreSQL + Mosquitto): `e4ops resync`
// with --dry-rn exits 2 naming the flag, writes no journal and leaves every sealed topic key as it was;
// the same line with --dry-run spelt right is accepted (so the typo was the only thing wrong). Also the
// exit codes an operator's wrapper keys on: 9 when the C2 is not the restored one, 10 when a topic
// could not be rotated (C2's database refuses one topic's new key, a fault injected with a trigger).
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
  const resyncArgs = (journal: string, ...extra: string[]) => [
    'resync', '--c2-url', stack.c2.baseUrl, '--c2-ca', stack.c2.ca.certFile, '--journal', journal,
    '--automation-engine-paused', '--expect-clients', String(CLIENTS.length), '--expect-topics', String(TOPICS.length), ...extra,
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
    const r = await runE4ops(resyncArgs(journal, '--dry-run', '--report', report));
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(fs.readFileSync(report, 'utf8')).topics.wouldRotate.sort()).toEqual(TOPICS);
    expect(fs.existsSync(journal)).toBe(false);
    expect(await sealedKeys()).toEqual(before);
  }, 120_000);

  it('exits 9 (refused) and changes nothing when C2 does not show the counts of the restored set', async () => {
    const before = await sealedKeys();
    const journal = path.join(dir, 'wrong-c2.jsonl');
    const args = resyncArgs(journal).map((a, i, all) => (all[i - 1] === '--expect-topics' ? String(TOPICS.length + 5) : a));
    const r = await runE4ops(args);
    expect(r.code, r.stderr).toBe(9);
    expect(r.stderr).toContain(`${TOPICS.length} topics`);
    expect(await sealedKeys()).toEqual(before);
  }, 120_000);

  it('exits 10 (topicsFailed) naming the topic C2 could not rotate; the others get new keys', async () => {
    const before = await sealedKeys();
    const failing = TOPICS[1];
    stack.postgres.psql(`CREATE FUNCTION refuse_one_topic() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.topic = '${failing}' THEN RAISE EXCEPTION 'injected fault: no new key for %', NEW.topic; END IF; RETURN NEW; END $$;
      CREATE TRIGGER refuse_one_topic BEFORE INSERT OR UPDATE ON topic_keys FOR EACH ROW EXECUTE FUNCTION refuse_one_topic();`, stack.database);
    try {
      const report = path.join(dir, 'failed-report.json');
      const r = await runE4ops(resyncArgs(path.join(dir, 'failed.jsonl'), '--attempts', '1', '--report', report));
      expect(r.code, r.stderr).toBe(10);
      const failed = JSON.parse(fs.readFileSync(report, 'utf8')).topics.failed as { topic: string }[];
      expect(failed.map((f) => f.topic)).toEqual([failing]);
      const after = await sealedKeys();
      expect(after.get(failing)).toBe(before.get(failing));
      for (const t of TOPICS.filter((x) => x !== failing)) expect(after.get(t)).not.toBe(before.get(t));
    } finally {
      stack.postgres.psql('DROP TRIGGER refuse_one_topic ON topic_keys; DROP FUNCTION refuse_one_topic();', stack.database);
    }
  }, 180_000);
});
