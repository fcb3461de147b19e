// What first-use needs from the broker, behind one small interface: presence (a device subscribed to
// its command topic, a client disconnected) and the commands C2 publishes on a device's command topic.
// The presence part reads Mosquitto's `$SYS/broker/log` notices (log_dest topic, with log_type notice
// and subscribe); it stands in until the shared broker-presence module of lib/ exists.
import mqtt, { type MqttClient } from 'mqtt';

export type PresenceEvent =
  | { kind: 'subscribed'; clientId: string; topic: string }
  | { kind: 'connected'; clientId: string }
  | { kind: 'disconnected'; clientId: string };

export interface BrokerWatch {
  /** Returns a function that stops the listener. */
  onPresence(listener: (e: PresenceEvent) => void): () => void;
  /** Start receiving a command topic; messages go to the callback (retained ones included). */
  watchCommandTopic(topic: string, onMessage: (payload: Buffer, retained: boolean) => void): Promise<void>;
  unwatchCommandTopic(topic: string): Promise<void>;
  close(): Promise<void>;
}

/** Mosquitto log lines: "1796242316: New client connected from 127.0.0.1:54670 as dev-1 (p2, c1, k60)." */
export function parseMosquittoLogLine(topic: string, line: string): PresenceEvent | undefined {
  const text = line.replace(/^\S+: /, '');
  if (topic.endsWith('/subscribe')) {
    const m = /^(\S+) \d+ (.+)$/.exec(text);
    return m ? { kind: 'subscribed', clientId: m[1], topic: m[2] } : undefined;
  }
  let m = /^New client connected from \S+ as (\S+) \(/.exec(text);
  if (m) return { kind: 'connected', clientId: m[1] };
  m = /^Client (\S+) (?:disconnected|closed its connection|has exceeded timeout)/.exec(text);
  if (m) return { kind: 'disconnected', clientId: m[1].replace(/[.,]$/, '') };
  return undefined;
}

export async function connectBrokerWatch(brokerUrl: string, opts: { clientId?: string } = {}): Promise<BrokerWatch> {
  const client: MqttClient = await mqtt.connectAsync(brokerUrl, {
    clientId: opts.clientId ?? `e4ops-provision-${process.pid}-${Date.now()}`,
    reconnectPeriod: 1000,
    clean: true,
  });
  const presence: ((e: PresenceEvent) => void)[] = [];
  const commands = new Map<string, (payload: Buffer, retained: boolean) => void>();
  client.on('message', (topic, payload, packet) => {
    if (topic.startsWith('$SYS/broker/log/')) {
      const e = parseMosquittoLogLine(topic, payload.toString('utf8'));
      if (e && e.clientId !== client.options.clientId) for (const l of presence) l(e);
      return;
    }
    commands.get(topic)?.(payload, packet.retain);
  });
  await client.subscribeAsync(['$SYS/broker/log/N', '$SYS/broker/log/M/subscribe'], { qos: 0 });
  return {
    onPresence(l) {
      presence.push(l);
      return () => { const i = presence.indexOf(l); if (i >= 0) presence.splice(i, 1); };
    },
    async watchCommandTopic(topic, onMessage) {
      commands.set(topic, onMessage);
      await client.subscribeAsync(topic, { qos: 1 });
    },
    async unwatchCommandTopic(topic) {
      commands.delete(topic);
      await client.unsubscribeAsync(topic);
    },
    async close() { await client.endAsync(); },
  };
}
