// Presence-aware delivery: which inventory devices received their fresh topic keys while connected.
// C2 publishes every command RETAINED on the device's one command topic, and a broker keeps only the
// last retained message per topic: a clean-session device offline during the pushes sees one key
// of many; a persistent-session device gets the queue, but only if it is back within 10 minutes.
// So a push counts only when the broker said the device was connected at the time and it did not
// drop off within the grace window right after. Devices that missed pushes are served again, one
// command at a time, when they connect (--follow), and are named in the report otherwise.
import type { PresenceEvent, PresenceState } from '../../lib/broker-presence/broker-presence.ts';

/** What the ledger needs from the broker presence watch (lib/broker-presence's BrokerPresence). */
export interface PresenceView {
  state(clientId: string): PresenceState;
  lastSeen(clientId: string): number | undefined;
  onEvent(listener: (e: PresenceEvent) => void): () => void;
}

export interface DeliveryDeviceSpec {
  name: string;
  clientId: string;
  /** Topics whose current key the device must hold (its links in C2 after the repair). */
  topics: string[];
  /** Set when no push can help (identity key changed with no current key in the inventory). */
  unservableReason?: string;
}

/** served: every key arrived while connected; unserved: some did not; unknown: no presence notice yet. */
export type DeliveryStatus = 'served' | 'unserved' | 'unknown';

type PushState = 'confirmed' | 'missed' | 'presence-unknown';

interface DeviceRecord {
  spec: DeviceDeliverySpecInternal;
  pushes: Map<string, { atMs: number; state: PushState }>;
  /** Set by a follow re-push that finished while connected. */
  servedAtMs?: number;
  disconnects: number;
  lastEvent?: PresenceEvent;
}
type DeviceDeliverySpecInternal = DeliveryDeviceSpec & { topicSet: Set<string> };

export const DEFAULT_DELIVERY_GRACE_MS = 1500;

export class DeliveryLedger {
  private readonly devices = new Map<string, DeviceRecord>();
  private readonly byClientId = new Map<string, DeviceRecord>();
  private readonly byTopic = new Map<string, string[]>();
  private readonly unsubscribe: () => void;
  private readonly changeListeners = new Set<(name: string, e: PresenceEvent) => void>();

  constructor(specs: DeliveryDeviceSpec[], private readonly presence: PresenceView, private readonly graceMs = DEFAULT_DELIVERY_GRACE_MS) {
    for (const s of specs) {
      const rec: DeviceRecord = { spec: { ...s, topicSet: new Set(s.topics) }, pushes: new Map(), disconnects: 0 };
      this.devices.set(s.name, rec);
      this.byClientId.set(s.clientId, rec);
      for (const t of s.topics) {
        const list = this.byTopic.get(t);
        if (list) list.push(s.name); else this.byTopic.set(t, [s.name]);
      }
    }
    this.unsubscribe = presence.onEvent((e) => this.onPresence(e));
  }

  /** Replace a device's topic list (once C2's links are known after the inventory repair). */
  setTopics(name: string, topics: string[]): void {
    const rec = this.devices.get(name);
    if (!rec) return;
    for (const t of rec.spec.topics) this.byTopic.set(t, (this.byTopic.get(t) ?? []).filter((n) => n !== name));
    rec.spec = { ...rec.spec, topics, topicSet: new Set(topics) };
    for (const t of topics) {
      const list = this.byTopic.get(t);
      if (list) list.push(name); else this.byTopic.set(t, [name]);
    }
  }

  /** No push can help this device (e.g. its identity key is unknown to C2): report it, never wait for it. */
  markUnservable(name: string, reason: string): void {
    const rec = this.devices.get(name);
    if (rec) rec.spec = { ...rec.spec, unservableReason: reason };
  }

  names(): string[] { return [...this.devices.keys()]; }
  has(name: string): boolean { return this.devices.has(name); }
  spec(name: string): DeliveryDeviceSpec | undefined { return this.devices.get(name)?.spec; }
  /** Inventory devices linked to a topic (for C2 builds whose NewTopic pushes to every linked client). */
  devicesOfTopic(topic: string): string[] { return this.byTopic.get(topic) ?? []; }
  presenceOf(name: string): PresenceState { return this.presence.state(this.devices.get(name)!.spec.clientId); }
  lastSeen(name: string): number | undefined { return this.presence.lastSeen(this.devices.get(name)!.spec.clientId); }

  /** A key for `topic` went to `name` (C2 accepted the command) at atMs. */
  recordPush(name: string, topic: string, atMs = Date.now()): void {
    const rec = this.devices.get(name);
    if (!rec) return;
    const st = this.presence.state(rec.spec.clientId);
    rec.pushes.set(topic, { atMs, state: st === 'connected' ? 'confirmed' : st === 'disconnected' ? 'missed' : 'presence-unknown' });
  }

  /** Disconnect (and message-dropping) notices seen for this device so far (a follow re-push checks it did not change). */
  disconnectCount(name: string): number { return this.devices.get(name)?.disconnects ?? 0; }

  markServed(name: string, atMs = Date.now()): void {
    const rec = this.devices.get(name);
    if (rec) rec.servedAtMs = atMs;
  }

  /** Called with the device name on each presence notice for an inventory device. */
  onChange(listener: (name: string, e: PresenceEvent) => void): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }

  private onPresence(e: PresenceEvent): void {
    const rec = this.byClientId.get(e.clientId);
    if (!rec) return;
    const cutoff = e.atMs - this.graceMs;
    if (e.kind === 'dropping') {
      // the broker is dropping messages to it: any recent command may be lost; serve it again
      for (const p of rec.pushes.values()) if (p.state === 'confirmed') p.state = 'missed';
      rec.disconnects++;
      rec.servedAtMs = undefined;
      for (const l of this.changeListeners) l(rec.spec.name, e);
      return;
    }
    for (const p of rec.pushes.values()) {
      if (e.kind === 'disconnected') {
        // first notice a disconnect: it was connected all along, so pushes well before it arrived
        if (p.state === 'presence-unknown') p.state = p.atMs <= cutoff ? 'confirmed' : 'missed';
        else if (p.state === 'confirmed' && p.atMs > cutoff) p.state = 'missed';
      } else if (p.state === 'presence-unknown') p.state = 'missed'; // first notice a connect: it was away
    }
    if (e.kind === 'disconnected') {
      rec.disconnects++;
      if (rec.servedAtMs !== undefined && rec.servedAtMs > cutoff) rec.servedAtMs = undefined;
    }
    rec.lastEvent = e;
    for (const l of this.changeListeners) l(rec.spec.name, e);
  }

  status(name: string): DeliveryStatus {
    const rec = this.devices.get(name)!;
    if (rec.spec.unservableReason) return 'unserved';
    if (rec.servedAtMs !== undefined) return 'served';
    let unknown = false;
    for (const t of rec.spec.topics) {
      const p = rec.pushes.get(t);
      if (!p || p.state === 'missed') return 'unserved';
      if (p.state === 'presence-unknown') unknown = true;
    }
    return unknown ? 'unknown' : 'served';
  }

  /** Why a device is not served, in words for the report. */
  reason(name: string): string {
    const rec = this.devices.get(name)!;
    if (rec.spec.unservableReason) return rec.spec.unservableReason;
    const st = this.status(name);
    if (st === 'unknown') return 'no connect or disconnect notice from the broker since the presence watch began: connected throughout (then it has every key) or offline throughout (then it missed them)';
    const missed = rec.spec.topics.filter((t) => rec.pushes.get(t)?.state !== 'confirmed').length;
    return `${missed} of its ${rec.spec.topics.length} topic keys went out while it was not connected, or while the broker dropped its messages (a clean session keeps only the last retained command; a persistent one only for 10 minutes, within max_queued_messages)`;
  }

  notServed(): string[] { return this.names().filter((n) => this.status(n) !== 'served'); }

  close(): void { this.unsubscribe(); }
}

/**
 * Keeps each device's burst within the broker's inflight window: at most `burst` commands to one
 * device per `windowMs`. Mosquitto queues what exceeds max_inflight_messages and drops what
 * exceeds max_queued_messages (QoS 1/2 included), so a device linked to many topics gets them paced.
 */
export class DevicePacer {
  private readonly sent = new Map<string, number[]>();
  constructor(readonly burst = 20, readonly windowMs = 200) {}

  async acquire(device: string): Promise<void> {
    for (;;) {
      const now = Date.now();
      const times = (this.sent.get(device) ?? []).filter((t) => now - t < this.windowMs);
      if (times.length < this.burst) {
        times.push(now);
        this.sent.set(device, times);
        return;
      }
      await new Promise((r) => setTimeout(r, this.windowMs - (now - times[0]) + 1));
    }
  }
}
