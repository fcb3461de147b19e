// `provision first-use`: watch the broker and, when a provisioned device first subscribes to its command
// topic, (1) rotate its identity key if it was factory-set or TOFU: NewClientKey makes C2 send SetIDKey
// sealed with the key the device holds, and e4ops opens that command with the same key to learn the new
// one (C2's API never returns it) and escrows it; (2) push every topic key again, one link at a time,
// while the device is connected: keys pushed while it was off were lost (the broker keeps one retained
// command per device). State goes to the inventory after every device, so a re-run resumes.
import { createLogger, type Logger } from '../lib/log.ts';
import { clientIdFromName, commandTopicForClient } from '../lib/e4/ids.ts';
import { unprotectSymKey } from '../lib/e4/protect.ts';
import { decodeCommand } from '../lib/e4/commands.ts';
import type { ProvisioningC2 } from './provisioning-c2.ts';
import type { BrokerWatch, PresenceEvent } from './broker-watch.ts';
import { dropFirstUseKey, readFirstUseKey } from './first-use-keys.ts';
import {
  escrowIdentityKey, openProvisioningInventory, settleEscrowRecipients, updateInventoryFile, upsertClient,
  type FleetInventory, type InventoryClient,
} from './provisioning-inventory.ts';

export interface FirstUseOptions {
  c2: ProvisioningC2;
  inventoryFile: string;
  broker: BrokerWatch;
  /** How long to watch; the run ends sooner once no device is pending. */
  followSeconds: number;
  /** How long to wait for C2's SetIDKey on the command topic after NewClientKey (default 15 s). */
  setIdKeyTimeoutMs?: number;
  signal?: AbortSignal;
  logger?: Logger;
}

export interface FirstUseReport {
  rotated: string[];
  delivered: string[];
  /** Still waiting for first use or for their topic keys when the run ended. */
  pending: string[];
  failed: { name: string; error: string }[];
  seconds: number;
}

/** Devices that still need something when they connect: a rotation, or their topic keys. */
export function pendingDevices(inv: FleetInventory): InventoryClient[] {
  return inv.clients.filter((c) => c.provisioning && (c.provisioning.state === 'waitingForFirstUse' || !c.provisioning.topicKeysDeliveredAt));
}

/** NewClientKey, then read the SetIDKey C2 published (sealed with the old key) to learn the new key. */
export async function rotateIdentityKey(c2: ProvisioningC2, broker: BrokerWatch, name: string, currentKey: Buffer, timeoutMs: number): Promise<Buffer> {
  const topic = commandTopicForClient(clientIdFromName(name));
  let settle!: (k: Buffer) => void;
  const seen = new Promise<Buffer>((resolve) => { settle = resolve; });
  // Only a live command counts: a retained one is an earlier command (or an earlier attempt's SetIDKey).
  await broker.watchCommandTopic(topic, (payload, retained) => {
    if (retained) return;
    try {
      const cmd = decodeCommand(unprotectSymKey(payload, currentKey));
      if (cmd.type === 'SetIdKey') settle(cmd.key);
    } catch { /* not for this key, or not a command */ }
  });
  let timer: NodeJS.Timeout | undefined;
  try {
    await c2.newClientKey(name);
    return await Promise.race([seen, new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no SetIDKey sealed with the current key seen on ${topic} within ${timeoutMs} ms after NewClientKey: C2 now holds a key e4ops does not know; re-provision ${name}`)), timeoutMs);
    })]);
  } finally {
    clearTimeout(timer);
    await broker.unwatchCommandTopic(topic);
  }
}

interface Watch { inv: FleetInventory; escrowTo: string[]; byCommandTopic: Map<string, InventoryClient>; disconnectedDuring: Set<string>; report: FirstUseReport }

/** This device's entry into the inventory file as it is now (`provision new` may have added devices since). */
function recordDevice(o: FirstUseOptions, c: InventoryClient): Promise<unknown> {
  return updateInventoryFile(o.inventoryFile, (fresh) => upsertClient(fresh, c));
}

/** Devices provisioned while the watch runs join it (the inventory is re-read every few seconds). */
function addNewlyPending(o: FirstUseOptions, w: Watch, served: Set<string>): string[] {
  let fresh: FleetInventory;
  try { fresh = openProvisioningInventory(o.inventoryFile); } catch { return []; } // mid-write elsewhere: next time
  const added: string[] = [];
  for (const c of pendingDevices(fresh)) {
    const topic = commandTopicForClient(clientIdFromName(c.name));
    if (w.byCommandTopic.has(topic) || served.has(c.name)) continue;
    w.byCommandTopic.set(topic, c);
    upsertClient(w.inv, c);
    if (!w.escrowTo.length) w.escrowTo = settleEscrowRecipients(fresh, []);
    added.push(topic);
  }
  return added;
}

/** One device that just subscribed: rotate if due, then deliver every topic key while it stays connected. */
async function serveDevice(o: FirstUseOptions, w: Watch, c: InventoryClient, log: Logger): Promise<void> {
  const p = c.provisioning!;
  w.disconnectedDuring.delete(c.name);
  if (p.state === 'waitingForFirstUse') {
    const newKey = await rotateIdentityKey(o.c2, o.broker, c.name, await readFirstUseKey(w.inv, c.name), o.setIdKeyTimeoutMs ?? 15_000);
    c.escrowedKeyFile = await escrowIdentityKey(w.inv, c.name, newKey, w.escrowTo);
    c.identityKeyRotatedAt = new Date().toISOString();
    p.state = 'rotated';
    await recordDevice(o, c);
    dropFirstUseKey(w.inv, c.name);
    w.report.rotated.push(c.name);
    log.info('first_use.rotated', { device: c.name, method: p.method, escrowedKeyFile: c.escrowedKeyFile });
  }
  // A device that went away before its SetIDKey arrived gets it (retained) when it comes back, so no topic
  // key may follow it now: the last retained command must stay the SetIDKey.
  if (w.disconnectedDuring.has(c.name)) return;
  for (const t of c.topics ?? []) await o.c2.linkClientTopic(c.name, t);
  if (w.disconnectedDuring.has(c.name)) return;
  p.topicKeysDeliveredAt = new Date().toISOString();
  await recordDevice(o, c);
  w.report.delivered.push(c.name);
  log.info('first_use.topic_keys_delivered', { device: c.name, topics: (c.topics ?? []).length });
}

export async function watchFirstUse(o: FirstUseOptions): Promise<FirstUseReport> {
  const started = Date.now();
  const log = o.logger ?? createLogger({ component: 'provision-first-use' });
  const inv = openProvisioningInventory(o.inventoryFile);
  const pending = pendingDevices(inv);
  const w: Watch = {
    inv, escrowTo: pending.length ? settleEscrowRecipients(inv, []) : [],
    byCommandTopic: new Map(pending.map((c) => [commandTopicForClient(clientIdFromName(c.name)), c])),
    disconnectedDuring: new Set(), report: { rotated: [], delivered: [], pending: [], failed: [], seconds: 0 },
  };
  log.info('first_use.watch', { pending: pending.length, followSeconds: o.followSeconds });
  const clientOf = new Map<string, string>(); // MQTT client id → device name
  const busy = new Map<string, Promise<void>>();
  const served = new Set<string>(); // done or failed in this run: not picked up again by the refresh
  let wake: () => void = () => undefined;
  // Command-topic subscriptions still connected, so a device provisioned after it subscribed is served too.
  const subscribedNow = new Map<string, string>(); // command topic → MQTT client id
  const serve = (topic: string, clientId: string) => {
    const c = w.byCommandTopic.get(topic);
    if (!c || busy.has(c.name)) return;
    clientOf.set(clientId, c.name);
    const job = serveDevice(o, w, c, log).then(
      () => { if (!pendingDevices(inv).includes(c)) { w.byCommandTopic.delete(topic); served.add(c.name); } },
      (err) => {
        w.report.failed.push({ name: c.name, error: (err as Error).message });
        w.byCommandTopic.delete(topic);
        served.add(c.name);
        log.error('first_use.failed', { device: c.name, error: (err as Error).message });
      },
    ).finally(() => { busy.delete(c.name); wake(); });
    busy.set(c.name, job);
  };
  const onEvent = (e: PresenceEvent) => {
    // Gone, or losing messages: the keys pushed meanwhile may not have arrived; serve it at its next subscription.
    if (e.kind === 'disconnected' || e.kind === 'dropping') {
      const name = clientOf.get(e.clientId);
      if (name) w.disconnectedDuring.add(name);
      if (e.kind === 'disconnected') for (const [t, id] of subscribedNow) if (id === e.clientId) subscribedNow.delete(t);
      return;
    }
    if (e.kind !== 'subscribed' || !/^e4\/[0-9a-f]{32}$/.test(e.topic)) return;
    subscribedNow.set(e.topic, e.clientId);
    serve(e.topic, e.clientId);
  };
  const stopListening = o.broker.onPresence(onEvent);
  const deadline = started + o.followSeconds * 1000;
  let lastRefresh = Date.now();
  while (Date.now() < deadline && !o.signal?.aborted) {
    if (Date.now() - lastRefresh > 3000) {
      lastRefresh = Date.now();
      for (const topic of addNewlyPending(o, w, served)) { const id = subscribedNow.get(topic); if (id) serve(topic, id); }
    }
    if (!w.byCommandTopic.size && !busy.size) break;
    await new Promise<void>((resolve) => {
      wake = resolve;
      const t = setTimeout(resolve, Math.min(1000, Math.max(0, deadline - Date.now())));
      o.signal?.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
    });
  }
  stopListening();
  await Promise.all(busy.values());
  w.report.pending = pendingDevices(inv).map((c) => c.name).filter((n) => !w.report.failed.some((f) => f.name === n));
  w.report.seconds = (Date.now() - started) / 1000;
  log.info('first_use.end', { rotated: w.report.rotated.length, delivered: w.report.delivered.length, pending: w.report.pending.length, failed: w.report.failed.length });
  return w.report;
}
