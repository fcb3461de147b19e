// Topic-key resync after C2's database was restored from an older backup. Topic keys rotated
// since the backup are lost and C2 holds stale ones, so every topic gets a fresh key (NewTopic on an
// existing topic rotates it and pushes the key to every linked client). Clients, topics and links
// that the fleet inventory lists but the restored database lacks are re-created first.
//
// Safety rails: refuses to run unless the operator confirms the automation engine is paused;
// refuses to change anything unless the C2 it talks to shows the counts of the restored set;
// a journal makes an interrupted run resumable without rotating any topic twice.
import crypto from 'node:crypto';
import type { Logger } from '../../lib/log.ts';
import { createLogger } from '../../lib/log.ts';
import { JournalWriter, readJournal, type JournalState } from './resync-journal.ts';
import { forEachBounded, withRetries, RetriesExhaustedError } from './retry-with-backoff.ts';
import { createProgressLine } from './progress-line.ts';
import { inventoryTopics, readInventoryKey, type FleetInventory } from './fleet-inventory.ts';
import type { ResyncReport, ReportCheck } from './resync-report.ts';

/**
 * Requests in flight by default. Enough to hide a network round trip to a remote C2; not more,
 * because C2 keeps at most two idle PostgreSQL connections (Go database/sql defaults; it sets no
 * pool size), so each request beyond that opens and closes a connection of its own. On one machine
 * C2 is CPU-bound at about 1,000 API calls/s whatever the concurrency (README, "Restore drills").
 */
export const DEFAULT_RESYNC_CONCURRENCY = 4;

/** What the resync needs from C2's API (lib/c2/c2-api.ts provides it through c2-resync-adapter.ts). */
export interface ResyncC2 {
  /** Where this C2 is, for reports and logs (no credentials). */
  endpoint: string;
  countClients(): Promise<number>;
  countTopics(): Promise<number>;
  /** Every topic, fetched page by page. */
  listTopics(): Promise<string[]>;
  /** Every client name, fetched page by page. */
  listClients(): Promise<string[]>;
  topicsOfClient(name: string): Promise<string[]>;
  /** Every client linked to a topic, fetched page by page. */
  clientsOfTopic(topic: string): Promise<string[]>;
  /** Whether NewTopic on an existing topic sends the new key to the linked clients (2020 C2) or only stores it (2019 C2). */
  rotationPushesKeys?(): Promise<boolean>;
  /** NewTopic: creates, or rotates an existing topic's key (and, on 2020 C2, pushes it to linked clients). */
  newTopic(topic: string): Promise<void>;
  /** NewClient (upsert: overwrites the stored key). */
  newClient(name: string, key: Uint8Array): Promise<void>;
  /** Link a client to a topic (sends the topic key to the client). */
  linkClientTopic(name: string, topic: string): Promise<void>;
  /** True for errors a retry can fix (network, 5xx); false for 4xx. */
  isTransientError?(err: unknown): boolean;
}

/** Reads digests of the sealed topic keys straight from the restored database, when one is given. */
export interface SealedTopicKeyProbe {
  digests(topics: string[]): Promise<Map<string, string>>;
  /** Linked client names per topic, in one query (saves a paged API listing per topic when keys must be pushed). */
  clientsByTopic?(topics: string[]): Promise<Map<string, string[]>>;
}

export interface ExpectedCounts {
  clients: number;
  topics: number;
  /** Where the numbers come from (manifest, drill report, flags), for the error message. */
  source: string;
}

export interface ResyncOptions {
  c2: ResyncC2;
  journalFile: string;
  /** The operator's confirmation that the automation engine is paused (--automation-engine-paused). */
  automationEnginePaused: boolean;
  /** Counts of the restored set; C2 must show exactly these before anything changes. */
  expected?: ExpectedCounts;
  inventory?: FleetInventory;
  /** Time the restored backup was taken: devices whose identity key changed after it are at risk. */
  backupTakenAt?: Date;
  dryRun?: boolean;
  concurrency?: number;
  attempts?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  probe?: SealedTopicKeyProbe;
  /** Send each rotated key to every linked client through the link call (default: only when C2 does not do it). */
  pushKeysToLinkedClients?: boolean;
  logger?: Logger;
  /** Stops taking new topics (in-flight requests finish and are journalled). */
  signal?: AbortSignal;
  /** Called after each journalled rotation; tests use it to interrupt a run halfway. */
  onRotated?: (topic: string, rotatedSoFar: number) => void;
  now?: () => Date;
  progress?: boolean;
}

export class ResyncRefusedError extends Error {}

const OFFLINE_LIMIT_MS = 10 * 60 * 1000;

function check(name: string, ok: boolean, detail: string): ReportCheck {
  return { name, ok, detail };
}

/** Devices that a resync alone cannot bring back, with what the operator should do for each. */
export function listDevicesAtRisk(inv: FleetInventory | undefined, opts: { backupTakenAt?: Date; now: Date; recreated: Set<string> }): ResyncReport['atRisk'] {
  const out: ResyncReport['atRisk'] = [];
  if (!inv) return out;
  for (const c of inv.clients) {
    const rotatedAt = c.identityKeyRotatedAt ? new Date(c.identityKeyRotatedAt) : undefined;
    if (inv.cryptoMode === 'symkey') {
      if (!opts.backupTakenAt) {
        if (!c.keyFile) out.push({ name: c.name, reason: 'symkey mode: the backup time is unknown, so the identity key C2 holds may be older than the device\'s', action: 'confirm the device\'s identity key did not change, or add its current key (keyFile) to the inventory and re-run, or re-provision the device' });
      } else if (rotatedAt && rotatedAt > opts.backupTakenAt && !opts.recreated.has(c.name)) {
        out.push({
          name: c.name,
          reason: `symkey mode: identity key changed at ${c.identityKeyRotatedAt}, after the backup (${opts.backupTakenAt.toISOString()}); C2 holds the old key and the device cannot read commands`,
          action: c.keyFile ? 'its current key is in the inventory: re-run the resync (it re-registers the client with NewClient), then re-link its topics' : 're-provision the device with a new identity key (NewClientKey would seal the new key with the old one and make it worse)',
        });
      }
    }
    if (c.lastSeen && opts.now.getTime() - new Date(c.lastSeen).getTime() > OFFLINE_LIMIT_MS) {
      out.push({
        name: c.name,
        reason: `offline since ${c.lastSeen} (more than 10 minutes): it will reject the retained SetTopicKey commands as stale and only ever see the last one`,
        action: `when it is back online, re-send each of its topic keys (PUT /e4/client/${c.name}/topic/<topic>) or re-run the resync for its topics`,
      });
    }
  }
  return out;
}

/** Run (or resume) a topic-key resync. Never throws for per-topic failures: they land in the report. */
export async function resyncTopicKeys(opts: ResyncOptions): Promise<ResyncReport> {
  const log = opts.logger ?? createLogger({ component: 'resync' });
  const now = opts.now ?? (() => new Date());
  const started = now();
  const c2 = opts.c2;
  const checks: ReportCheck[] = [];

  if (!opts.automationEnginePaused) {
    throw new ResyncRefusedError('refusing to resync: confirm the automation engine is paused (it rotates keys on its own and would race the resync; pause it, then pass --automation-engine-paused)');
  }

  const journal: JournalState = readJournal(opts.journalFile);
  if (journal.finished) {
    throw new ResyncRefusedError(`the resync journal ${opts.journalFile} belongs to a resync that already finished at its last line (ok=${journal.finishedOk}); running it again would rotate every topic a second time. Start a new resync with a new --journal file`);
  }
  const resumed = journal.exists && !!journal.resyncId;

  // Identity: the C2 we talk to must be the restored one, before anything changes.
  const [clientCount, topicCount] = await Promise.all([c2.countClients(), c2.countTopics()]);
  if (resumed) {
    // An earlier run may have created clients/topics from the inventory: accept the journal's start counts plus those.
    const sc = journal.startCounts!;
    const okClients = clientCount >= sc.clients && clientCount <= sc.clients + journal.clientsCreated.size;
    const okTopics = topicCount >= sc.topics && topicCount <= sc.topics + journal.created.size;
    if (!okClients || !okTopics) {
      throw new ResyncRefusedError(`refusing to resume: C2 at ${c2.endpoint} has ${clientCount} clients and ${topicCount} topics, but the journal ${opts.journalFile} started on ${sc.clients} clients and ${sc.topics} topics (plus ${journal.clientsCreated.size} clients and ${journal.created.size} topics it created). Is this the same C2?`);
    }
    checks.push(check('c2-is-restored-one', true, `resuming: C2 shows ${clientCount} clients, ${topicCount} topics, consistent with the journal`));
  } else if (opts.expected) {
    const ok = opts.expected.clients === clientCount && opts.expected.topics === topicCount;
    if (!ok) {
      throw new ResyncRefusedError(`refusing to resync: C2 at ${c2.endpoint} has ${clientCount} clients and ${topicCount} topics, but the restored set (${opts.expected.source}) has ${opts.expected.clients} clients and ${opts.expected.topics} topics. Point --c2-url at the restored C2, or give the right --expected-counts`);
    }
    checks.push(check('c2-is-restored-one', true, `C2 shows ${clientCount} clients and ${topicCount} topics, as ${opts.expected.source}`));
  } else {
    throw new ResyncRefusedError('refusing to resync: no expected counts to check that this C2 is the restored one; give --expected-counts FILE (backup manifest or drill report) or --expect-clients N --expect-topics N');
  }

  const resyncId = journal.resyncId ?? `resync-${started.toISOString().replace(/[:.]/g, '-')}-${crypto.randomBytes(3).toString('hex')}`;
  const dryRun = !!opts.dryRun;
  const writer = dryRun ? undefined : new JournalWriter(opts.journalFile);
  const at = () => now().toISOString();
  if (writer) {
    if (resumed) writer.append({ type: 'resume', at: at(), pid: process.pid });
    else await writer.appendDurable({ type: 'start', resyncId, at: at(), c2: c2.endpoint, counts: { clients: clientCount, topics: topicCount }, pid: process.pid });
  }
  log.info('resync.start', { resyncId, c2: c2.endpoint, resumed, dryRun, clients: clientCount, topics: topicCount, alreadyRotated: journal.rotated.size });

  const retry = {
    attempts: opts.attempts ?? 5,
    baseDelayMs: opts.baseDelayMs ?? 200,
    maxDelayMs: opts.maxDelayMs ?? 5_000,
    retryable: c2.isTransientError ? (e: unknown) => c2.isTransientError!(e) : undefined,
  };
  const call = <T>(what: string, fn: () => Promise<T>) =>
    withRetries(() => fn(), { ...retry, onRetry: (e, attempt, delayMs) => log.warn('resync.retry', { what, attempt, delayMs, error: (e as Error)?.message }) });

  // Does this C2 push a rotated key to the linked clients itself (2020 builds), or only store it (2019 builds)?
  const pushKeys = opts.pushKeysToLinkedClients ?? (c2.rotationPushesKeys ? !(await c2.rotationPushesKeys()) : false);
  log.info('resync.push-mode', { resyncPushesKeys: pushKeys });

  // 1. Re-create what the inventory lists but the restored database lacks.
  const existingTopics = await c2.listTopics();
  const existingTopicSet = new Set(existingTopics);
  const createdTopics: string[] = [...journal.created];
  const clientsCreated: string[] = [...journal.clientsCreated];
  let linksCreated = journal.linksCreated;
  const failed: { topic: string; error: string }[] = [];
  const recreatedClients = new Set<string>(journal.clientsCreated);
  if (opts.inventory) {
    const inv = opts.inventory;
    const missingTopics = inventoryTopics(inv).filter((t) => !existingTopicSet.has(t));
    const existingClients = new Set(await c2.listClients());
    const missingClients = inv.clients.filter((c) => !existingClients.has(c.name));
    log.info('resync.inventory', { missingTopics: missingTopics.length, missingClients: missingClients.length });
    checks.push(check('inventory-topics-present', missingTopics.length === 0,
      missingTopics.length ? `${missingTopics.length} topic(s) in the inventory were missing from the restored database (created after the backup): ${missingTopics.slice(0, 20).join(', ')}${missingTopics.length > 20 ? ' ...' : ''}` : 'every inventory topic exists in the restored database'));
    checks.push(check('inventory-clients-present', missingClients.length === 0,
      missingClients.length ? `${missingClients.length} client(s) in the inventory were missing from the restored database: ${missingClients.slice(0, 20).map((c) => c.name).join(', ')}${missingClients.length > 20 ? ' ...' : ''}` : 'every inventory client exists in the restored database'));
    if (!dryRun) {
      for (const t of missingTopics) {
        await call(`create topic ${t}`, () => c2.newTopic(t));
        writer!.append({ type: 'topic-created', topic: t, at: at() });
        createdTopics.push(t);
        existingTopicSet.add(t);
      }
      const unrecoverable: string[] = [];
      for (const c of missingClients) {
        const key = readInventoryKey(inv, c);
        if (!key) { unrecoverable.push(c.name); continue; }
        await call(`create client ${c.name}`, () => c2.newClient(c.name, key));
        writer!.append({ type: 'client-created', name: c.name, at: at() });
        clientsCreated.push(c.name);
        recreatedClients.add(c.name);
      }
      if (unrecoverable.length) {
        checks.push(check('inventory-clients-recreated', false, `${unrecoverable.length} missing client(s) have no keyFile in the inventory and could not be re-created: ${unrecoverable.slice(0, 20).join(', ')}`));
      }
      // Links: for every inventory client C2 now knows, add the links it lacks.
      const linkJobs: { name: string; topic: string }[] = [];
      await forEachBounded(inv.clients.filter((c) => (c.topics?.length ?? 0) > 0 && (existingClients.has(c.name) || recreatedClients.has(c.name))), opts.concurrency ?? DEFAULT_RESYNC_CONCURRENCY, async (c) => {
        const have = new Set(recreatedClients.has(c.name) && !existingClients.has(c.name) ? [] : await c2.topicsOfClient(c.name));
        for (const t of c.topics ?? []) if (!have.has(t)) linkJobs.push({ name: c.name, topic: t });
      });
      await forEachBounded(linkJobs, opts.concurrency ?? DEFAULT_RESYNC_CONCURRENCY, async (j) => {
        await call(`link ${j.name} ${j.topic}`, () => c2.linkClientTopic(j.name, j.topic));
        writer!.append({ type: 'link-created', name: j.name, topic: j.topic, at: at() });
        linksCreated++;
      });
      log.info('resync.inventory.repaired', { topicsCreated: missingTopics.length, clientsCreated: clientsCreated.length, linksCreated });
    } else {
      createdTopics.push(...missingTopics);
    }
  }

  // 2. Rotate every topic that existed in the restored database, once.
  const createdSet = new Set(createdTopics);
  const todo = existingTopics.filter((t) => !journal.rotated.has(t) && !createdSet.has(t));
  const alreadyRotated = existingTopics.filter((t) => journal.rotated.has(t)).length;
  const inDoubtRotatedAgain: string[] = [];
  let rotated = 0;
  let alreadyRotatedTotal = alreadyRotated;

  if (dryRun) {
    const report = finishReport();
    report.topics.wouldRotate = todo;
    return report;
  }

  // In-doubt topics from a killed run: if the sealed key in the database changed since the `begin`, the rotation happened.
  const digests = opts.probe ? await opts.probe.digests(todo) : undefined;
  const toRotate: string[] = [];
  const pushOnly = new Set<string>(journal.rotatedNotPushed);
  for (const t of todo) {
    const doubt = journal.inDoubt.get(t);
    if (doubt && doubt.keyDigest && digests?.has(t) && digests.get(t) !== doubt.keyDigest) {
      if (pushKeys) { writer!.append({ type: 'rotated', topic: t, at: at(), attempts: 0, confirmedBy: 'database' }); pushOnly.add(t); }
      else { writer!.append({ type: 'done', topic: t, at: at(), attempts: 0, confirmedBy: 'database' }); journal.rotated.add(t); }
      log.info('resync.in-doubt.confirmed', { topic: t });
      if (!pushKeys) continue;
    } else if (doubt) inDoubtRotatedAgain.push(t);
    toRotate.push(t);
  }
  alreadyRotatedTotal = alreadyRotated + (todo.length - toRotate.length) + [...pushOnly].filter((t) => toRotate.includes(t)).length;

  let completed = 0;
  let pushes = 0;
  // Who must receive each new key: from the restored database in one query, else through the API from
  // whichever side needs fewer paged calls (per client when there are fewer clients than topics).
  let linkMap: Map<string, string[]> | undefined;
  if (pushKeys && toRotate.length) {
    if (opts.probe?.clientsByTopic) linkMap = await opts.probe.clientsByTopic(toRotate);
    else if (clientCount + clientsCreated.length < toRotate.length) {
      linkMap = new Map();
      const m = linkMap;
      const wanted = new Set(toRotate);
      const clients = await c2.listClients();
      await forEachBounded(clients, opts.concurrency ?? DEFAULT_RESYNC_CONCURRENCY, async (name) => {
        const { value: topics } = await call(`list topics of ${name}`, () => c2.topicsOfClient(name));
        for (const t of topics) {
          if (!wanted.has(t)) continue;
          const list = m.get(t);
          if (list) list.push(name); else m.set(t, [name]);
        }
      });
    }
  }
  const progress = createProgressLine('rotating topic keys', toRotate.length);
  await forEachBounded(toRotate, opts.concurrency ?? DEFAULT_RESYNC_CONCURRENCY, async (topic) => {
    const rotateNow = !pushOnly.has(topic);
    let attempts = 0;
    try {
      if (rotateNow) {
        // On disk before the request leaves: a crash after this point leaves the topic in doubt, never forgotten.
        await writer!.appendDurable({ type: 'begin', topic, at: at(), ...(digests?.get(topic) ? { keyDigest: digests.get(topic) } : {}) });
        ({ attempts } = await call(`rotate ${topic}`, () => c2.newTopic(topic)));
        if (pushKeys) writer!.append({ type: 'rotated', topic, at: at(), attempts, confirmedBy: 'api' });
      }
      let pushedTo: number | undefined;
      if (pushKeys) {
        // This C2 stores the new key without telling the devices: send it to every linked client.
        const clients = linkMap ? (linkMap.get(topic) ?? []) : (await call(`list clients of ${topic}`, () => c2.clientsOfTopic(topic))).value;
        for (const name of clients) await call(`push ${topic} to ${name}`, () => c2.linkClientTopic(name, topic));
        pushedTo = clients.length;
        pushes += clients.length;
      }
      writer!.append({ type: 'done', topic, at: at(), attempts, confirmedBy: 'api', ...(pushedTo !== undefined ? { pushedTo } : {}) });
      completed++;
      if (rotateNow) {
        rotated++;
        opts.onRotated?.(topic, rotated);
      }
    } catch (e) {
      const error = e instanceof RetriesExhaustedError ? e.message : (e as Error)?.message ?? String(e);
      writer!.append({ type: 'failed', topic, at: at(), attempts: e instanceof RetriesExhaustedError ? e.attempts : 1, error });
      failed.push({ topic, error });
      log.error('resync.topic.failed', { topic, error });
    }
    progress.tick(completed + failed.length, failed.length);
    if ((completed + failed.length) % 1000 === 0) log.info('resync.progress', { rotated, pushes, failed: failed.length, total: toRotate.length });
  }, opts.signal);
  progress.end();
  if (pushKeys) {
    checks.push(check('keys-pushed-to-devices', failed.length === 0, `this C2 stores a rotated key without sending it (2019 builds); the resync sent each new key to every linked client itself: ${pushes} SetTopicKey pushes`));
  }

  const interrupted = !!opts.signal?.aborted && completed + failed.length < toRotate.length;
  const report = finishReport();
  if (interrupted) {
    report.ok = false;
    report.checks.push(check('all-topics-rotated', false, `interrupted after ${completed} of ${toRotate.length} topics; re-run with the same --journal to finish the rest`));
  } else {
    writer!.append({ type: 'finish', at: at(), ok: report.ok });
  }
  writer!.close();
  log.info('resync.finish', { ok: report.ok, rotated, failed: failed.length, created: createdTopics.length });
  return report;

  function finishReport(): ResyncReport {
    const finished = now();
    const allChecks = [...checks];
    if (!dryRun) {
      allChecks.push(check('all-topics-rotated', failed.length === 0,
        failed.length ? `${failed.length} topic(s) failed after retries: ${failed.slice(0, 20).map((f) => f.topic).join(', ')}; re-run with the same --journal to retry only those` : `${rotated + alreadyRotatedTotal} of ${existingTopics.length} topics rotated (${rotated} by this run)`));
    }
    const atRisk = listDevicesAtRisk(opts.inventory, { backupTakenAt: opts.backupTakenAt, now: finished, recreated: recreatedClients });
    return {
      kind: 'topic-key-resync',
      ok: allChecks.every((c) => c.ok || c.name === 'inventory-topics-present' || c.name === 'inventory-clients-present'),
      resyncId,
      dryRun,
      resumed,
      journal: opts.journalFile,
      startedAt: started.toISOString(),
      finishedAt: finished.toISOString(),
      durationSeconds: (finished.getTime() - started.getTime()) / 1000,
      c2: c2.endpoint,
      counts: { clients: clientCount, topics: topicCount },
      topics: {
        total: existingTopics.length,
        rotated,
        alreadyRotated: alreadyRotatedTotal,
        created: createdTopics,
        failed,
        inDoubtRotatedAgain,
      },
      clientsCreated,
      linksCreated,
      atRisk,
      checks: allChecks,
    };
  }
}

/**
 * Expected counts from a backup manifest (c2.inventory) or a drill report (counts), plus the time the
 * backup was taken (manifest startedAt / report backupTakenAt), for the identity check and the at-risk list.
 */
export function expectedCountsFromDocument(doc: unknown, source: string): { expected: ExpectedCounts; backupTakenAt?: Date } {
  const d = doc as Record<string, any>;
  if (d?.kind === 'e4ops-backup-set' && d.c2?.inventory) {
    return { expected: { clients: d.c2.inventory.clients, topics: d.c2.inventory.topics, source: `manifest ${source} (set ${d.setId})` }, backupTakenAt: new Date(d.startedAt) };
  }
  if (d?.kind === 'restore-drill' && d.counts) {
    return { expected: { clients: d.counts.clients, topics: d.counts.topics, source: `drill report ${source} (set ${d.backupId})` }, ...(d.backupTakenAt ? { backupTakenAt: new Date(d.backupTakenAt) } : {}) };
  }
  throw new ResyncRefusedError(`--expected-counts ${source} is neither a backup manifest (kind e4ops-backup-set) nor a restore-drill report (kind restore-drill)`);
}
