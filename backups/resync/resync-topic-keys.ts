// Topic-key resync after C2's database was restored from an older backup. Topic keys rotated
// since the backup are lost and C2 holds stale ones, so every topic gets a fresh key (NewTopic on an
// existing topic rotates it and pushes the key to every linked client). Clients, topics and links
// that the fleet inventory lists but the restored database lacks are re-created first.
//
// Safety rails: refuses to run unless the operator confirms the automation engine is paused;
// refuses to change anything unless the C2 it talks to shows the counts of the restored set;
// a journal makes an interrupted run resumable without rotating any topic twice.
import type { Logger } from '../../lib/log.ts';
import type { WatchBrokerPresenceOptions } from '../../lib/broker-presence/broker-presence.ts';
import type { FleetInventory } from '../../lib/fleet-inventory/fleet-inventory.ts';
import type { ResyncReport } from './resync-report.ts';
import { buildResyncReport } from './resync-report.ts';
import { identifyRestoredC2, ResyncRefusedError, DEFAULT_RESYNC_CONCURRENCY, check, type ResyncRun } from './resync-run.ts';
import { repairInventory, createLinks } from './resync-inventory-repair.ts';
import { rotateTopics } from './resync-rotate.ts';
import { startDelivery, followDevices } from './resync-follow.ts';
import type { PresenceView } from './device-delivery.ts';
import { readJournal } from './resync-journal.ts';

export { ResyncRefusedError, DEFAULT_RESYNC_CONCURRENCY };
export { listDevicesAtRisk } from './devices-at-risk.ts';

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
  /** Digests of the sealed identity keys by client name (deterministic sealing: equal keys, equal digests). */
  clientKeyDigests?(names: string[]): Promise<Map<string, string>>;
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
  /** Broker to watch for device presence (connect/disconnect notices); needs the inventory. */
  broker?: WatchBrokerPresenceOptions;
  /** A presence watch already running (tests, a long-lived watcher); takes precedence over `broker`. */
  presence?: PresenceView;
  /** --follow: after the main pass, serve devices as they connect for this long (ms). */
  followMs?: number;
  /** A push counts as delivered when the device stays connected this long after it (default 1.5 s). */
  deliveryGraceMs?: number;
  /** Per-device burst limit (default 20 commands per 200 ms, within Mosquitto's inflight window of 20). */
  pacing?: { burst?: number; windowMs?: number };
  /** What to tell the operator for devices that need re-provisioning (e.g. the provisioning command). */
  reprovisionHint?: string;
}


/**
 * Run (or resume) a topic-key resync: identify → repair inventory → rotate (with in-doubt settling
 * and pushes) → links made after rotation → follow → report. Never throws for per-topic failures:
 * they land in the report.
 */
export async function resyncTopicKeys(opts: ResyncOptions): Promise<ResyncReport> {
  const run = await identifyRestoredC2(opts);
  try {
    await startDelivery(run);
    await repairInventory(run);
    await rotateTopics(run);
    if (!run.dryRun && !run.rotation.interrupted) await createLinks(run, run.deferredLinks);
    if (run.dryRun) return buildResyncReport(run);
    const report = buildResyncReport(run);
    if (run.rotation.interrupted) return report;
    run.writer!.append({ type: 'finish', at: run.at(), ok: report.ok });
    await followDevices(run, opts.followMs);
    return finalReport(run);
  } finally {
    await run.delivery?.close();
    run.writer?.close();
  }
}

function finalReport(run: ResyncRun): ResyncReport {
  const report = buildResyncReport(run);
  run.log.info('resync.finish', { ok: report.ok, rotated: run.rotation.rotated, failed: run.rotation.failed.length, created: run.createdTopics.length, devicesNotServed: report.devices?.notServed.length });
  return report;
}

export interface FollowUpOptions extends Omit<ResyncOptions, 'journalFile' | 'expected' | 'dryRun' | 'followMs'> {
  /** The journal of a finished resync. */
  journalFile: string;
  followMs: number;
}

/**
 * `--follow-up JOURNAL`: serve the devices a finished resync left unserved, as they connect, without
 * rotating anything. Resumable: devices served by earlier follows are in the journal.
 */
export async function followUpResync(opts: FollowUpOptions): Promise<ResyncReport> {
  const journal = readJournal(opts.journalFile);
  if (!journal.finished || !journal.resyncId) {
    throw new ResyncRefusedError(`--follow-up ${opts.journalFile}: this journal has no finished main pass${journal.exists ? '' : ' (no such file)'}; finish the resync first (re-run it with the same --journal)`);
  }
  if (!opts.inventory) throw new ResyncRefusedError('--follow-up needs --inventory: it names the devices to serve and their MQTT client ids');
  const run = await identifyRestoredC2({ ...opts, expected: undefined }, 'follow-up');
  try {
    await startDelivery(run);
    if (!run.delivery) throw new ResyncRefusedError('--follow-up needs a broker to watch (--broker-url)');
    for (const c of opts.inventory.clients) {
      run.delivery.ledger.setTopics(c.name, await run.c2.topicsOfClient(c.name).catch(() => c.topics ?? []));
    }
    run.existingTopics = await run.c2.listTopics();
    run.rotation.alreadyRotated = journal.rotated.size;
    run.checks.push(check('follow-up', true, `follow-up of ${journal.resyncId}: ${journal.devicesServed.size} device(s) served earlier; nothing is rotated`));
    await followDevices(run, opts.followMs, true);
    return finalReport(run);
  } finally {
    await run.delivery?.close();
    run.writer?.close();
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
