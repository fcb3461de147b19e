// The state one resync run carries from step to step (identify → repair inventory → rotate →
// in-doubt pushes → follow → report), and the first step: make sure the C2 we talk to is the
// restored one and open the journal.
import crypto from 'node:crypto';
import type { Logger } from '../../lib/log.ts';
import { createLogger } from '../../lib/log.ts';
import { withRetries } from '../../lib/retry-with-backoff.ts';
import { JournalWriter, readJournal, type JournalState } from './resync-journal.ts';
import type { ReportCheck } from './resync-report.ts';
import type { ResyncOptions, ResyncC2 } from './resync-topic-keys.ts';
import { DevicePacer, type DeliveryLedger } from './device-delivery.ts';

export class ResyncRefusedError extends Error {}

/**
 * Requests in flight by default. Enough to hide a network round trip to a remote C2; not more,
 * because C2 keeps at most two idle PostgreSQL connections (Go database/sql defaults; it sets no
 * pool size), so each request beyond that opens and closes a connection of its own. On one machine
 * C2 is CPU-bound at about 1,000 API calls/s whatever the concurrency (README, "Restore drills").
 */
export const DEFAULT_RESYNC_CONCURRENCY = 4;

export interface ResyncRun {
  opts: ResyncOptions;
  log: Logger;
  c2: ResyncC2;
  now: () => Date;
  started: Date;
  at: () => string;
  journal: JournalState;
  writer?: JournalWriter;
  resyncId: string;
  resumed: boolean;
  dryRun: boolean;
  counts: { clients: number; topics: number };
  checks: ReportCheck[];
  concurrency: number;
  /** C2 stores a rotated key without sending it (2019 builds): the resync pushes it through the link call. */
  pushKeys: boolean;
  call: <T>(what: string, fn: () => Promise<T>) => Promise<{ value: T; attempts: number }>;
  existingTopics: string[];
  createdTopics: string[];
  clientsCreated: string[];
  recreatedClients: Set<string>;
  linksCreated: number;
  /** Links the inventory lists but C2 lacks, made after their topic's rotation so the device gets only the fresh key. */
  deferredLinks: { name: string; topic: string }[];
  identityReRegistered: Map<string, boolean | 'unknown'>;
  /** Inventory devices whose identity key changed after the backup with no current key to re-register. */
  needReprovision: string[];
  rotation: { rotated: number; alreadyRotated: number; failed: { topic: string; error: string }[]; inDoubtRotatedAgain: string[]; pushes: number; wouldRotate?: string[]; interrupted: boolean };
  /** Paces the commands to each device within the broker's inflight window (every push goes through it). */
  pacer: DevicePacer;
  delivery?: { ledger: DeliveryLedger; close: () => Promise<void>; follow?: FollowSummary };
}

export interface FollowSummary {
  durationSeconds: number;
  /** Devices served after they (re)connected. */
  reconnectsServed: number;
  /** Per served reconnect: commands sent and ms from its connect notice to its last command accepted by C2. */
  perReconnect: { name: string; pushes: number; ms: number }[];
}

export const check = (name: string, ok: boolean, detail: string): ReportCheck => ({ name, ok, detail });

/** Step 1: refuse unless it is safe, then open (or resume) the journal. A follow-up reopens a finished one. */
export async function identifyRestoredC2(opts: ResyncOptions, mode: 'run' | 'follow-up' = 'run'): Promise<ResyncRun> {
  const log = opts.logger ?? createLogger({ component: 'resync' });
  const now = opts.now ?? (() => new Date());
  const started = now();
  if (!opts.automationEnginePaused) {
    throw new ResyncRefusedError('refusing to resync: confirm the automation engine is paused (it rotates keys on its own and would race the resync; pause it, then pass --automation-engine-paused)');
  }
  const journal = readJournal(opts.journalFile);
  if (journal.finished && mode === 'run') {
    throw new ResyncRefusedError(`the resync journal ${opts.journalFile} belongs to a resync that already finished at its last line (ok=${journal.finishedOk}); running it again would rotate every topic a second time. Start a new resync with a new --journal file, or serve devices still waiting with --follow-up ${opts.journalFile} --follow DURATION`);
  }
  const resumed = journal.exists && !!journal.resyncId;
  const [clients, topics] = await Promise.all([opts.c2.countClients(), opts.c2.countTopics()]);
  const checks = [checkCounts(opts, journal, resumed, clients, topics)];
  const resyncId = journal.resyncId ?? `resync-${started.toISOString().replace(/[:.]/g, '-')}-${crypto.randomBytes(3).toString('hex')}`;
  const dryRun = !!opts.dryRun && mode === 'run';
  const run: ResyncRun = {
    opts, log, c2: opts.c2, now, started, at: () => now().toISOString(), journal, resyncId, resumed, dryRun,
    counts: { clients, topics }, checks, concurrency: opts.concurrency ?? DEFAULT_RESYNC_CONCURRENCY, pushKeys: false,
    pacer: new DevicePacer(opts.pacing?.burst, opts.pacing?.windowMs),
    call: retryingCall(opts, log),
    existingTopics: [], createdTopics: [...journal.created], clientsCreated: [...journal.clientsCreated],
    recreatedClients: new Set(journal.clientsCreated), linksCreated: journal.linksCreated, deferredLinks: [],
    identityReRegistered: new Map(journal.identityReRegistered), needReprovision: [],
    rotation: { rotated: 0, alreadyRotated: 0, failed: [], inDoubtRotatedAgain: [], pushes: 0, interrupted: false },
  };
  if (!dryRun) {
    run.writer = new JournalWriter(opts.journalFile);
    if (resumed) run.writer.append({ type: 'resume', at: run.at(), pid: process.pid });
    else await run.writer.appendDurable({ type: 'start', resyncId, at: run.at(), c2: opts.c2.endpoint, counts: { clients, topics }, pid: process.pid });
  }
  log.info('resync.start', { resyncId, c2: opts.c2.endpoint, resumed, dryRun, clients, topics, alreadyRotated: journal.rotated.size });
  // Does this C2 push a rotated key to the linked clients itself (2020 builds), or only store it (2019 builds)?
  run.pushKeys = opts.pushKeysToLinkedClients ?? (opts.c2.rotationPushesKeys ? !(await opts.c2.rotationPushesKeys()) : false);
  log.info('resync.push-mode', { resyncPushesKeys: run.pushKeys });
  return run;
}

/** The C2 we talk to must show the restored set's counts (or, resuming, the journal's start counts plus what it created). */
function checkCounts(opts: ResyncOptions, journal: JournalState, resumed: boolean, clients: number, topics: number): ReportCheck {
  const where = opts.c2.endpoint;
  if (resumed) {
    const sc = journal.startCounts!;
    const okClients = clients >= sc.clients && clients <= sc.clients + journal.clientsCreated.size;
    const okTopics = topics >= sc.topics && topics <= sc.topics + journal.created.size;
    if (!okClients || !okTopics) {
      throw new ResyncRefusedError(`refusing to resume: C2 at ${where} has ${clients} clients and ${topics} topics, but the journal ${opts.journalFile} started on ${sc.clients} clients and ${sc.topics} topics (plus ${journal.clientsCreated.size} clients and ${journal.created.size} topics it created). Is this the same C2?`);
    }
    return check('c2-is-restored-one', true, `resuming: C2 shows ${clients} clients, ${topics} topics, consistent with the journal`);
  }
  if (!opts.expected) {
    throw new ResyncRefusedError('refusing to resync: no expected counts to check that this C2 is the restored one; give --expected-counts FILE (backup manifest or drill report) or --expect-clients N --expect-topics N');
  }
  if (opts.expected.clients !== clients || opts.expected.topics !== topics) {
    throw new ResyncRefusedError(`refusing to resync: C2 at ${where} has ${clients} clients and ${topics} topics, but the restored set (${opts.expected.source}) has ${opts.expected.clients} clients and ${opts.expected.topics} topics. Point --c2-url at the restored C2, or give the right --expected-counts`);
  }
  return check('c2-is-restored-one', true, `C2 shows ${clients} clients and ${topics} topics, as ${opts.expected.source}`);
}

function retryingCall(opts: ResyncOptions, log: Logger): ResyncRun['call'] {
  const c2 = opts.c2;
  const retry = {
    attempts: opts.attempts ?? 5,
    baseDelayMs: opts.baseDelayMs ?? 200,
    maxDelayMs: opts.maxDelayMs ?? 5_000,
    retryable: c2.isTransientError ? (e: unknown) => c2.isTransientError!(e) : undefined,
  };
  return (what, fn) => withRetries(() => fn(), { ...retry, onRetry: (e, attempt, delayMs) => log.warn('resync.retry', { what, attempt, delayMs, error: (e as Error)?.message }) });
}

/** Send `topic`'s current key to one device (the link call), paced per device and recorded for delivery. */
export async function pushKeyToDevice(run: ResyncRun, name: string, topic: string): Promise<void> {
  await run.pacer.acquire(name);
  await run.call(`push ${topic} to ${name}`, () => run.c2.linkClientTopic(name, topic));
  run.delivery?.ledger.recordPush(name, topic);
}
