// Which MQTT clients are connected to the broker, from the broker's own notices.
//
//   const presence = await watchBrokerPresence({ url: 'mqtt://broker:1883', flavor: 'mosquitto' });
//   presence.state('dev-1')        // 'connected' | 'disconnected' | 'unknown'
//   presence.onEvent((e) => ...)   // { kind: 'connected' | 'disconnected' | 'dropping', clientId, atMs, detail }
//   presence.lastSeen('dev-1')     // ms of the last notice naming it (connect or disconnect)
//   presence.onSubscribe((s) => ...) // { clientId, topic, atMs }: with `subscriptions: true` (Mosquitto)
//   await presence.close()
//
// Pure parsers (no broker needed): parseMosquittoLogNotice(payload), parseEmqxPresence(topic, payload).
// 'dropping' (Mosquitto only) means the broker started dropping messages to that client (its queue,
// max_queued_messages, is full): it changes no state, but what was sent to it lately may be lost.
//
// Sources:
// - Mosquitto: `log_dest topic` + `log_type notice` (+ error for take-overs) makes the broker publish
//   its log lines on $SYS/broker/log/<level>; lib/render/mosquitto-conf.ts renders both. Mosquitto
//   has no "who is connected" query, so a client connected before the watch began stays 'unknown'
//   until its first notice (a disconnect then proves it was connected all along).
// - EMQX: $SYS/brokers/<node>/clients/<clientid>/connected|disconnected (JSON, on by default), and
//   optionally the REST API's list of connected clients for the initial state (emqxApi).
import mqtt, { type MqttClient } from 'mqtt';

export type PresenceKind = 'connected' | 'disconnected';
export type PresenceState = PresenceKind | 'unknown';
export type PresenceEventKind = PresenceKind | 'dropping';
export type BrokerFlavor = 'mosquitto' | 'emqx';

export interface PresenceEvent {
  kind: PresenceEventKind;
  clientId: string;
  /** When the broker saw it (its timestamp when it sends one in ms, else the time we received it). */
  atMs: number;
  /** The broker's reason text, e.g. "closed its connection", "tcp_closed". */
  detail?: string;
}

export const MOSQUITTO_PRESENCE_TOPICS = ['$SYS/broker/log/N', '$SYS/broker/log/E', '$SYS/broker/log/W'];
/** Mosquitto's `log_type subscribe` lines: "<ts>: <client id> <qos> <topic filter>". */
export const MOSQUITTO_SUBSCRIBE_TOPIC = '$SYS/broker/log/M/subscribe';

/** A client subscribed to a topic filter (provisioning waits for a device's command-topic subscription). */
export interface SubscribeNotice {
  clientId: string;
  topic: string;
  atMs: number;
}
export const EMQX_PRESENCE_TOPICS = ['$SYS/brokers/+/clients/+/connected', '$SYS/brokers/+/clients/+/disconnected'];

// Mosquitto 2.0 notice texts (src/loop.c, src/handle_connect.c); an optional "<timestamp>: " prefix
// comes first (epoch seconds by default, or whatever log_timestamp_format renders).
const TIMESTAMP_PREFIX = /^(?:(\d{9,12})|[0-9T:.\- ]+): /;
const CONNECTED = /^New client connected from \S+ as (.+) \(p\d+, c\d+, k\d+(?:, u'.*')?\)\.$/;
const DISCONNECTED = /^Client (.+?) (closed its connection|disconnected(?:[ ,:].*)?|has exceeded timeout, disconnecting|been disconnected.*)\.$/;
const SOCKET_ERROR = /^Socket error on client (.+), disconnecting\.$/;
const DROPPING = /^Outgoing messages are being dropped for client (.+)\.$/;

/** One Mosquitto log line (a $SYS/broker/log/# payload) → a presence event, or undefined. */
export function parseMosquittoLogNotice(payload: string, receivedAtMs = Date.now()): PresenceEvent | undefined {
  const text = payload.trim();
  const ts = TIMESTAMP_PREFIX.exec(text);
  const atMs = ts?.[1] ? Number(ts[1]) * 1000 : receivedAtMs;
  const line = ts ? text.slice(ts[0].length) : text;
  let m = CONNECTED.exec(line);
  if (m) return { kind: 'connected', clientId: m[1], atMs };
  m = DROPPING.exec(line);
  if (m) return { kind: 'dropping', clientId: m[1], atMs, detail: 'queue full (max_queued_messages)' };
  m = DISCONNECTED.exec(line) ?? SOCKET_ERROR.exec(line);
  if (m && m[1] !== '<unknown>' && !line.includes('already connected')) {
    return { kind: 'disconnected', clientId: m[1], atMs, detail: m[2] ?? 'socket error' };
  }
  return undefined;
}

/** One Mosquitto subscribe log line → who subscribed to what. Client ids with spaces are ambiguous here: the last two fields are qos and topic. */
export function parseMosquittoSubscribeNotice(payload: string, receivedAtMs = Date.now()): SubscribeNotice | undefined {
  const text = payload.trim();
  const ts = TIMESTAMP_PREFIX.exec(text);
  const line = ts ? text.slice(ts[0].length) : text;
  const m = /^(.+) ([012]) (\S+)$/.exec(line);
  return m ? { clientId: m[1], topic: m[3], atMs: ts?.[1] ? Number(ts[1]) * 1000 : receivedAtMs } : undefined;
}

/** One EMQX $SYS client event → a presence event, or undefined (other $SYS topics, bad JSON). */
export function parseEmqxPresence(topic: string, payload: string, receivedAtMs = Date.now()): PresenceEvent | undefined {
  const m = /^\$SYS\/brokers\/[^/]+\/clients\/(.+)\/(connected|disconnected)$/.exec(topic);
  if (!m) return undefined;
  let body: Record<string, unknown> = {};
  try {
    body = JSON.parse(payload);
  } catch {
    /* the topic alone is enough */
  }
  const clientId = typeof body.clientid === 'string' ? body.clientid : m[1];
  const at = m[2] === 'connected' ? (body.connected_at ?? body.ts) : (body.disconnected_at ?? body.ts);
  return {
    kind: m[2] as PresenceKind, clientId,
    atMs: typeof at === 'number' ? at : receivedAtMs,
    ...(typeof body.reason === 'string' ? { detail: body.reason } : {}),
  };
}

/** Folds events into per-client state; usable without a broker (tests, journal replay). */
export class PresenceBook {
  private readonly current = new Map<string, { state: PresenceKind; sinceMs: number; lastSeenMs: number }>();
  private readonly listeners = new Set<(e: PresenceEvent) => void>();

  apply(e: PresenceEvent): void {
    if (e.kind === 'dropping') {
      for (const l of this.listeners) l(e);
      return;
    }
    const prev = this.current.get(e.clientId);
    // a late notice must not undo a newer one (EMQX nodes publish independently)
    if (prev && e.atMs < prev.sinceMs) return;
    this.current.set(e.clientId, { state: e.kind as PresenceKind, sinceMs: e.atMs, lastSeenMs: Math.max(e.atMs, prev?.lastSeenMs ?? 0) });
    for (const l of this.listeners) l(e);
  }
  state(clientId: string): PresenceState { return this.current.get(clientId)?.state ?? 'unknown'; }
  /** Time of the last connect or disconnect notice for this client. */
  lastSeen(clientId: string): number | undefined { return this.current.get(clientId)?.lastSeenMs; }
  connected(): string[] { return [...this.current].filter(([, v]) => v.state === 'connected').map(([k]) => k); }
  onEvent(listener: (e: PresenceEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

export interface WatchBrokerPresenceOptions {
  /** mqtt://host:port */
  url: string;
  flavor: BrokerFlavor;
  username?: string;
  password?: string;
  /** Our own MQTT client id (default e4ops-presence-<random>). */
  clientId?: string;
  /** EMQX only: REST API for the initial list of connected clients (e.g. http://emqx:18083, API key + secret). */
  emqxApi?: { baseUrl: string; apiKey: string; apiSecret: string };
  /** Mosquitto only: also report subscriptions (needs `log_type subscribe`, which the rendered conf sets). */
  subscriptions?: boolean;
}

export interface BrokerPresence {
  state(clientId: string): PresenceState;
  lastSeen(clientId: string): number | undefined;
  connected(): string[];
  onEvent(listener: (e: PresenceEvent) => void): () => void;
  /** Subscribe notices (only with `subscriptions: true`). */
  onSubscribe(listener: (s: SubscribeNotice) => void): () => void;
  close(): Promise<void>;
}

/** Subscribe to the broker's presence notices; resolves once subscribed (and the EMQX snapshot loaded). */
export async function watchBrokerPresence(opts: WatchBrokerPresenceOptions): Promise<BrokerPresence> {
  const book = new PresenceBook();
  const client = await connectWatcher(opts);
  const parse = opts.flavor === 'mosquitto'
    ? (_t: string, p: string) => parseMosquittoLogNotice(p)
    : (t: string, p: string) => parseEmqxPresence(t, p);
  const subscribeListeners = new Set<(s: SubscribeNotice) => void>();
  const ownId = client.options.clientId;
  client.on('message', (topic, payload) => {
    if (topic === MOSQUITTO_SUBSCRIBE_TOPIC) {
      const s = parseMosquittoSubscribeNotice(payload.toString('utf8'));
      if (s && s.clientId !== ownId) for (const l of subscribeListeners) l(s);
      return;
    }
    const e = parse(topic, payload.toString('utf8'));
    if (e) book.apply(e);
  });
  const subscribeTo = opts.flavor === 'mosquitto' ? [...MOSQUITTO_PRESENCE_TOPICS, ...(opts.subscriptions ? [MOSQUITTO_SUBSCRIBE_TOPIC] : [])] : EMQX_PRESENCE_TOPICS;
  await client.subscribeAsync(subscribeTo, { qos: 0 });
  if (opts.flavor === 'emqx' && opts.emqxApi) {
    const atMs = Date.now();
    for (const id of await listEmqxConnectedClients(opts.emqxApi)) {
      if (book.state(id) === 'unknown') book.apply({ kind: 'connected', clientId: id, atMs, detail: 'REST snapshot' });
    }
  }
  return {
    state: (id) => book.state(id),
    lastSeen: (id) => book.lastSeen(id),
    connected: () => book.connected(),
    onEvent: (l) => book.onEvent(l),
    onSubscribe: (l) => {
      if (!opts.subscriptions || opts.flavor !== 'mosquitto') throw new Error('onSubscribe needs watchBrokerPresence({ flavor: "mosquitto", subscriptions: true })');
      subscribeListeners.add(l);
      return () => subscribeListeners.delete(l);
    },
    close: async () => { await client.endAsync(); },
  };
}

async function connectWatcher(opts: WatchBrokerPresenceOptions): Promise<MqttClient> {
  const client = mqtt.connect(opts.url, {
    clientId: opts.clientId ?? `e4ops-presence-${Math.random().toString(16).slice(2, 10)}`,
    clean: true, reconnectPeriod: 1000, connectTimeout: 10_000,
    ...(opts.username ? { username: opts.username, password: opts.password } : {}),
  });
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', (e) => { client.end(true); reject(new Error(`presence watch: cannot connect to ${opts.url}: ${e.message}`)); });
  });
  return client;
}

/** EMQX 5 REST: GET /api/v5/clients?conn_state=connected, paged. Untested here (no EMQX binary). */
export async function listEmqxConnectedClients(api: NonNullable<WatchBrokerPresenceOptions['emqxApi']>): Promise<string[]> {
  const auth = `Basic ${Buffer.from(`${api.apiKey}:${api.apiSecret}`).toString('base64')}`;
  const ids: string[] = [];
  for (let page = 1; ; page++) {
    const res = await fetch(`${api.baseUrl.replace(/\/$/, '')}/api/v5/clients?conn_state=connected&limit=1000&page=${page}`, { headers: { authorization: auth } });
    if (!res.ok) throw new Error(`EMQX clients API: HTTP ${res.status}`);
    const body = (await res.json()) as { data: Array<{ clientid: string }>; meta?: { hasnext?: boolean } };
    ids.push(...body.data.map((c) => c.clientid));
    if (!body.meta?.hasnext) return ids;
  }
}
