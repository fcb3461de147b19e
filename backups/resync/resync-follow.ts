// Step 5 of a resync (and all of `--follow-up`): devices that did not get their fresh keys while
// connected are served again when they connect: each of their topics' current key, one command at
// a time (the link call re-sends it), paced per device. A device counts as served once the last
// command went out and it stayed connected for the grace window after.
import { watchBrokerPresence, type WatchBrokerPresenceOptions } from '../../lib/broker-presence/broker-presence.ts';
import { DeliveryLedger, DEFAULT_DELIVERY_GRACE_MS, type DeliveryDeviceSpec, type PresenceView } from './device-delivery.ts';
import { check, pushKeyToDevice, type ResyncRun } from './resync-run.ts';
import type { FleetInventory } from '../../lib/fleet-inventory/fleet-inventory.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Start watching presence (before the first push) for every inventory device. No inventory or broker: no ledger. */
export async function startDelivery(run: ResyncRun): Promise<void> {
  const inv = run.opts.inventory;
  if (!inv || run.dryRun) return;
  let presence: PresenceView | undefined = run.opts.presence;
  let close = async () => {};
  if (!presence && run.opts.broker) {
    const watch = await watchBrokerPresence(run.opts.broker);
    presence = watch;
    close = () => watch.close();
  }
  if (!presence) {
    run.checks.push(check('device-presence-watched', false, 'no broker to watch (--broker-url): the resync cannot tell which devices got their keys while connected; devices offline during it keep stale keys unnoticed'));
    return;
  }
  const ledger = new DeliveryLedger(deviceSpecs(run, inv), presence, run.opts.deliveryGraceMs ?? DEFAULT_DELIVERY_GRACE_MS);
  run.delivery = { ledger, close: async () => { ledger.close(); await close(); } };
}

function deviceSpecs(_run: ResyncRun, inv: FleetInventory): DeliveryDeviceSpec[] {
  return inv.clients.map((c) => ({ name: c.name, clientId: c.mqttClientId ?? c.name, topics: c.topics ?? [] }));
}

/** After the main pass: journal who was served, then (with --follow) serve the rest as they connect. */
export async function followDevices(run: ResyncRun, followMs: number | undefined, followUp = false): Promise<void> {
  const d = run.delivery;
  if (!d) return;
  await sleep(run.opts.deliveryGraceMs ?? DEFAULT_DELIVERY_GRACE_MS); // a disconnect notice may still be on its way
  const served = new Set(run.journal.devicesServed);
  const journalServed = (name: string, how: 'main-pass' | 'follow') => {
    if (served.has(name)) return;
    served.add(name);
    run.writer?.append({ type: 'device-served', name, at: run.at(), how });
  };
  for (const name of d.ledger.names()) if (served.has(name)) d.ledger.markServed(name);
  for (const name of d.ledger.names()) if (d.ledger.status(name) === 'served') journalServed(name, 'main-pass');
  if (!followMs || !d.ledger.notServed().length) return;
  const t0 = Date.now();
  const until = new Date(t0 + followMs);
  run.writer?.append({ type: 'follow-start', at: run.at(), until: until.toISOString(), followUp, pid: process.pid });
  run.log.info('resync.follow.start', { until: until.toISOString(), waitingFor: d.ledger.notServed().length });
  const perReconnect = await serveAsTheyConnect(run, until.getTime(), (name) => journalServed(name, 'follow'));
  const notServed = d.ledger.notServed();
  run.writer?.append({ type: 'follow-end', at: run.at(), served: perReconnect.length, notServed });
  d.follow = { durationSeconds: (Date.now() - t0) / 1000, reconnectsServed: perReconnect.length, perReconnect };
  run.log.info('resync.follow.end', { served: perReconnect.length, notServed: notServed.length });
}

/**
 * The follow loop: a queue of connected, unserved devices, `concurrency` of them being sent their keys
 * at a time, until all are served or the deadline. The grace window after a device's last command
 * holds no lane: a timer confirms the device while the lanes serve the next ones.
 */
async function serveAsTheyConnect(run: ResyncRun, deadlineMs: number, onServed: (name: string) => void): Promise<{ name: string; pushes: number; ms: number }[]> {
  const { ledger } = run.delivery!;
  const graceMs = run.opts.deliveryGraceMs ?? DEFAULT_DELIVERY_GRACE_MS;
  const servable = (n: string) => ledger.status(n) !== 'served' && !ledger.spec(n)!.unservableReason;
  const waiting = new Set(ledger.names().filter(servable));
  const queue: string[] = [];
  const busy = new Set<string>(); // being sent keys, or in their grace window
  const connectedAt = new Map<string, number>();
  const perReconnect: { name: string; pushes: number; ms: number }[] = [];
  let lanes = 0;
  let wake = () => {};
  const enqueue = (n: string) => {
    if (waiting.has(n) && !busy.has(n) && !queue.includes(n) && ledger.presenceOf(n) === 'connected') { queue.push(n); wake(); }
  };
  const off = ledger.onChange((name, e) => {
    if (e.kind === 'connected') { connectedAt.set(name, Date.now()); enqueue(name); }
    if (e.kind === 'dropping' && servable(name)) { waiting.add(name); enqueue(name); }
    // an 'unknown' device whose first notice is a disconnect was connected all along: served by the main pass
    if (waiting.has(name) && ledger.status(name) === 'served') { waiting.delete(name); onServed(name); }
    wake();
  });
  let over = false;
  const confirm = (name: string, sent: SentKeys) => {
    if (over) return; // the window closed during its grace period: it stays unserved
    busy.delete(name);
    if (ledger.disconnectCount(name) === sent.epoch && ledger.presenceOf(name) === 'connected') {
      ledger.markServed(name);
      waiting.delete(name);
      perReconnect.push({ name, pushes: sent.pushes, ms: sent.ms });
      onServed(name);
      run.log.info('resync.follow.served', { device: name, pushes: sent.pushes });
    } else enqueue(name);
    wake();
  };
  for (const n of waiting) enqueue(n); // back already (reconnected during the main pass)
  // Unserved and never heard of (a resumed run, a follow-up with a fresh watch): send the keys blind;
  // the device's first notice then settles it (a disconnect: it had them; a connect: served again).
  const blind = [...waiting].filter((n) => ledger.presenceOf(n) === 'unknown' && ledger.status(n) === 'unserved');
  while ((waiting.size || busy.size) && Date.now() < deadlineMs && !run.opts.signal?.aborted) {
    while ((queue.length || blind.length) && lanes < run.concurrency) {
      const isBlind = !queue.length;
      const name = isBlind ? blind.shift()! : queue.shift()!;
      if (busy.has(name)) continue;
      busy.add(name);
      lanes++;
      void sendKeys(run, name, connectedAt.get(name), isBlind).then((sent) => {
        if (sent && !isBlind) setTimeout(() => confirm(name, sent), graceMs);
        else { busy.delete(name); enqueue(name); }
      }).finally(() => { lanes--; wake(); });
    }
    await new Promise<void>((r) => { wake = r; setTimeout(r, Math.max(1, Math.min(1000, deadlineMs - Date.now()))); });
  }
  while (lanes) await sleep(50);
  over = true;
  off();
  return perReconnect;
}

interface SentKeys { epoch: number; pushes: number; ms: number }

/** Re-send every current key of one device; undefined when it dropped off (or a push failed) on the way. */
async function sendKeys(run: ResyncRun, name: string, connectedAtMs?: number, blind = false): Promise<SentKeys | undefined> {
  const { ledger } = run.delivery!;
  const epoch = ledger.disconnectCount(name);
  const topics = ledger.spec(name)!.topics;
  const t0 = connectedAtMs ?? Date.now();
  try {
    for (const topic of topics) {
      if (!blind && ledger.disconnectCount(name) !== epoch) return undefined;
      await pushKeyToDevice(run, name, topic);
    }
  } catch (e) {
    run.log.warn('resync.follow.push-failed', { device: name, error: (e as Error).message });
    return undefined;
  }
  return { epoch, pushes: topics.length, ms: Date.now() - t0 };
}
