import mqtt, { type MqttClient } from 'mqtt';
import { createLogger, type Logger } from '../log.ts';
import { SimulatedDevice, type DeviceSnapshot, type DeviceSpec } from './simulated-device.ts';
import type { E4Command } from '../e4/commands.ts';

// A fleet of simulated E4 devices on a real MQTT broker. Every device is its own MQTT client (client id
// `<prefix><name>`) subscribed to its command topic e4/<id hex>; commands arrive as C2 sends them
// (retained, QoS 2) and are opened with the device's identity key (or, in pubkey mode, the key shared
// with C2). Devices can subscribe to data topics, publish protected messages and read what they receive.
//
// Connect storms: clients connect with bounded concurrency and automatic reconnect OFF until the whole
// fleet is up (a failed connect is reported, not retried forever); afterwards reconnect is switched on.

export interface FleetOptions {
  brokerUrl: string;
  devices: DeviceSpec[];
  /** Simultaneous connection attempts (default 200). */
  connectConcurrency?: number;
  /** MQTT keepalive in seconds (default 300: 10,000 idle clients ping little). */
  keepaliveSeconds?: number;
  /** QoS of the command-topic subscription (default 1; C2 publishes at 2, the broker downgrades). */
  commandQos?: 0 | 1 | 2;
  clientIdPrefix?: string;
  connectTimeoutMs?: number;
  username?: string;
  password?: string;
  /** Clock for E4 timestamp checks (tests), default Date.now. */
  now?: () => number;
  logger?: Logger;
  /** Key state to put back before any device connects: retained commands waiting on the broker then apply on top of it. */
  restoreFrom?: FleetSnapshot;
}

export interface ReceivedMessage {
  topic: string;
  atMs: number;
  payload?: Buffer;
  usedPreviousKey?: boolean;
  error?: string;
}

export type FleetEvent =
  | { kind: 'command'; device: string; command: E4Command }
  | { kind: 'command-error'; device: string; error: string }
  | { kind: 'message'; device: string; message: ReceivedMessage };

export interface FleetStats {
  devices: number;
  connected: number;
  commandsProcessed: number;
  commandErrors: number;
  messagesRead: number;
  messageErrors: number;
}

export interface FleetSnapshot {
  takenAt: string;
  devices: DeviceSnapshot[];
}

interface Member {
  device: SimulatedDevice;
  client?: MqttClient;
  /** data topic → received messages */
  inbox: Map<string, ReceivedMessage[]>;
  /** data topics subscribed (topic → qos), re-subscribed after a reconnect */
  dataTopics: Map<string, 0 | 1 | 2>;
}

async function pool<T>(items: T[], concurrency: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++];
      await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

export class Fleet {
  private readonly members = new Map<string, Member>();
  private readonly byCommandTopic = new Map<string, Member>();
  private readonly listeners = new Set<(e: FleetEvent) => void>();
  private readonly now: () => number;
  private readonly log: Logger;
  private closed = false;
  commandsProcessed = 0;
  commandErrors = 0;
  messagesRead = 0;
  messageErrors = 0;

  constructor(readonly opts: FleetOptions) {
    this.now = opts.now ?? Date.now;
    this.log = opts.logger ?? createLogger({ component: 'fleet' });
    for (const spec of opts.devices) {
      if (this.members.has(spec.name)) throw new Error(`fleet: device name "${spec.name}" appears twice`);
      const m: Member = { device: new SimulatedDevice(spec), inbox: new Map(), dataTopics: new Map() };
      this.members.set(spec.name, m);
      this.byCommandTopic.set(m.device.commandTopic, m);
    }
  }

  /** Connect every device and subscribe it to its command topic. Rejects naming the devices that failed. */
  async connect(): Promise<void> {
    const failures: string[] = [];
    await pool([...this.members.values()], this.opts.connectConcurrency ?? 200, async (m) => {
      try {
        await this.connectMember(m);
      } catch (err) {
        failures.push(`${m.device.name}: ${(err as Error).message}`);
      }
    });
    if (failures.length) {
      throw new Error(`fleet: ${failures.length} of ${this.members.size} devices could not connect to ${this.opts.brokerUrl}; first: ${failures.slice(0, 3).join('; ')}`);
    }
    for (const m of this.members.values()) if (m.client) m.client.options.reconnectPeriod = 1000;
    this.log.info('fleet_connected', { devices: this.members.size, broker: this.opts.brokerUrl });
  }

  /** Take one device off the broker (it keeps its keys), as a device losing its network does. */
  async offline(name: string): Promise<void> {
    const m = this.member(name);
    const c = m.client;
    m.client = undefined;
    if (c) await c.endAsync(true);
  }

  /** Bring a device back: a new clean session that subscribes to its command and data topics again. */
  async online(name: string): Promise<void> {
    const m = this.member(name);
    if (m.client) throw new Error(`fleet: device "${name}" is online already`);
    await this.connectMember(m);
    if (m.dataTopics.size) await m.client!.subscribeAsync(Object.fromEntries([...m.dataTopics].map(([t, qos]) => [t, { qos }])));
    m.client!.options.reconnectPeriod = 1000;
  }

  /** The MQTT client id a device connects with. */
  clientIdOf(name: string): string {
    return `${this.opts.clientIdPrefix ?? 'e4sim-'}${this.member(name).device.name}`;
  }

  private connectMember(m: Member): Promise<void> {
    return new Promise((resolve, reject) => {
      const client = mqtt.connect(this.opts.brokerUrl, {
        clientId: this.clientIdOf(m.device.name),
        keepalive: this.opts.keepaliveSeconds ?? 300,
        reconnectPeriod: 0,
        connectTimeout: this.opts.connectTimeoutMs ?? 30_000,
        clean: true,
        protocolVersion: 4,
        username: this.opts.username,
        password: this.opts.password,
      });
      m.client = client;
      let settled = false;
      client.on('message', (topic, payload) => this.onMessage(m, topic, payload));
      // mqtt.js only remembers subscriptions for resubscription when reconnect was on at subscribe time, and
      // reconnect is off during the connect storm: re-subscribe ourselves when a reconnect finds no session.
      client.on('connect', (connack) => {
        if (!settled || connack.sessionPresent) return;
        const topics: Record<string, { qos: 0 | 1 | 2 }> = { [m.device.commandTopic]: { qos: this.opts.commandQos ?? 1 } };
        for (const [t, qos] of m.dataTopics) topics[t] = { qos };
        client.subscribe(topics, (err) => {
          if (err) this.log.warn('device_resubscribe_failed', { device: m.device.name, error: err.message });
        });
      });
      client.once('connect', () => {
        client.subscribe(m.device.commandTopic, { qos: this.opts.commandQos ?? 1 }, (err) => {
          settled = true;
          if (err) reject(new Error(`subscribe ${m.device.commandTopic}: ${err.message}`));
          else resolve();
        });
      });
      client.on('error', (err) => {
        if (!settled) { settled = true; client.end(true); reject(err); }
        else this.log.warn('device_mqtt_error', { device: m.device.name, error: err.message });
      });
      client.once('close', () => {
        if (!settled) { settled = true; reject(new Error('connection closed before CONNACK')); }
      });
    });
  }

  private emit(e: FleetEvent): void {
    for (const l of this.listeners) l(e);
  }

  private onMessage(m: Member, topic: string, payload: Buffer): void {
    if (topic === m.device.commandTopic) {
      try {
        const command = m.device.handleCommand(payload, this.now());
        this.commandsProcessed++;
        this.emit({ kind: 'command', device: m.device.name, command });
      } catch (err) {
        this.commandErrors++;
        this.log.debug('device_command_error', { device: m.device.name, error: (err as Error).message });
        this.emit({ kind: 'command-error', device: m.device.name, error: (err as Error).message });
      }
      return;
    }
    const msg: ReceivedMessage = { topic, atMs: this.now() };
    try {
      const r = m.device.unprotect(topic, payload, this.now());
      msg.payload = r.payload;
      msg.usedPreviousKey = r.usedPreviousKey;
      this.messagesRead++;
    } catch (err) {
      msg.error = (err as Error).message;
      this.messageErrors++;
    }
    const list = m.inbox.get(topic) ?? [];
    list.push(msg);
    m.inbox.set(topic, list);
    this.emit({ kind: 'message', device: m.device.name, message: msg });
  }

  private member(name: string): Member {
    const m = this.members.get(name);
    if (!m) throw new Error(`fleet: no device named "${name}"`);
    return m;
  }

  device(name: string): SimulatedDevice {
    return this.member(name).device;
  }

  devices(): SimulatedDevice[] {
    return [...this.members.values()].map((m) => m.device);
  }

  /** Call fn on every fleet event (commands, errors, messages); returns an unsubscribe function. */
  on(fn: (e: FleetEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Resolve when predicate(fleet) holds (checked after every event and every 100 ms); reject after timeoutMs. */
  waitFor(predicate: (fleet: Fleet) => boolean, opts: { timeoutMs?: number; what?: string } = {}): Promise<void> {
    const timeoutMs = opts.timeoutMs ?? 30_000;
    return new Promise((resolve, reject) => {
      const check = () => {
        let ok = false;
        try { ok = predicate(this); } catch { ok = false; }
        if (ok) { done(); resolve(); }
      };
      const off = this.on(check);
      const iv = setInterval(check, 100);
      const to = setTimeout(() => {
        done();
        const s = this.stats();
        reject(new Error(`fleet: timed out after ${timeoutMs} ms waiting for ${opts.what ?? 'condition'} (commands ${s.commandsProcessed}, command errors ${s.commandErrors})`));
      }, timeoutMs);
      const done = () => { off(); clearInterval(iv); clearTimeout(to); };
      check();
    });
  }

  /** Subscribe devices to a data topic (to read protected messages on it). */
  async subscribe(names: string | string[], topic: string, qos: 0 | 1 | 2 = 1): Promise<void> {
    await Promise.all((Array.isArray(names) ? names : [names]).map((n) => {
      const m = this.member(n);
      if (!m.client) throw new Error(`fleet: device ${n} is not connected`);
      m.dataTopics.set(topic, qos);
      return m.client.subscribeAsync(topic, { qos });
    }));
  }

  /** Protect payload with the device's current topic key and publish it on topic. */
  async publish(name: string, topic: string, payload: Uint8Array | string, qos: 0 | 1 | 2 = 1): Promise<void> {
    const m = this.member(name);
    if (!m.client) throw new Error(`fleet: device ${name} is not connected`);
    const data = typeof payload === 'string' ? Buffer.from(payload) : payload;
    await m.client.publishAsync(topic, m.device.protect(topic, data, this.now()), { qos });
  }

  /** Messages on topic that the device could decrypt (payloads), in arrival order. */
  readable(name: string, topic: string): Buffer[] {
    return (this.member(name).inbox.get(topic) ?? []).filter((r) => r.payload).map((r) => r.payload!);
  }

  /** Every message the device received on topic, including those it could not open (with the error). */
  received(name: string, topic: string): ReceivedMessage[] {
    return [...(this.member(name).inbox.get(topic) ?? [])];
  }

  stats(): FleetStats {
    let connected = 0;
    for (const m of this.members.values()) if (m.client?.connected) connected++;
    return {
      devices: this.members.size, connected,
      commandsProcessed: this.commandsProcessed, commandErrors: this.commandErrors,
      messagesRead: this.messagesRead, messageErrors: this.messageErrors,
    };
  }

  /** Key state of every device (secrets included: treat the result as key material). */
  snapshot(): FleetSnapshot {
    return { takenAt: new Date(this.now()).toISOString(), devices: this.devices().map((d) => d.snapshot()) };
  }

  /** Put every device named in the snapshot back to that key state (e.g. "keys of the moment before a restore"). */
  restore(snapshot: FleetSnapshot): void {
    for (const s of snapshot.devices) this.member(s.name).device.restore(s);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.members.values()].map((m) => (m.client ? m.client.endAsync(true).catch(() => undefined) : undefined)));
  }
}

/** Create the fleet and connect every device. */
export async function createFleet(opts: FleetOptions): Promise<Fleet> {
  const fleet = new Fleet(opts);
  if (opts.restoreFrom) fleet.restore(opts.restoreFrom);
  try {
    await fleet.connect();
  } catch (err) {
    await fleet.close();
    throw err;
  }
  return fleet;
}
