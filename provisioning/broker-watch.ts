// What first-use needs from the broker, behind one small interface: presence (a device subscribed to
// its command topic, a client disconnected) from the shared lib/broker-presence watch, and the commands
// C2 publishes on a device's command topic (e4ops's own subscription, to read C2's SetIDKey).
import mqtt, { type MqttClient } from 'mqtt';
import { watchBrokerPresence } from '../lib/broker-presence/broker-presence.ts';

export type PresenceEvent =
  | { kind: 'subscribed'; clientId: string; topic: string }
  | { kind: 'connected'; clientId: string }
  | { kind: 'disconnected'; clientId: string }
  /** The broker is dropping messages to this client (queue full): what was just sent may be lost. */
  | { kind: 'dropping'; clientId: string };

export interface BrokerWatch {
  /** Returns a function that stops the listener. */
  onPresence(listener: (e: PresenceEvent) => void): () => void;
  /** Start receiving a command topic; messages go to the callback (retained ones included). */
  watchCommandTopic(topic: string, onMessage: (payload: Buffer, retained: boolean) => void): Promise<void>;
  unwatchCommandTopic(topic: string): Promise<void>;
  close(): Promise<void>;
}

/** Presence from the broker's notices (Mosquitto: log_dest topic with notice and subscribe log types). */
export async function connectBrokerWatch(brokerUrl: string, opts: { clientId?: string } = {}): Promise<BrokerWatch> {
  const presence = await watchBrokerPresence({ url: brokerUrl, flavor: 'mosquitto', subscriptions: true });
  let client: MqttClient;
  try {
    client = await mqtt.connectAsync(brokerUrl, {
      clientId: opts.clientId ?? `e4ops-provision-${process.pid}-${Date.now()}`,
      reconnectPeriod: 1000,
      clean: true,
    });
  } catch (e) {
    await presence.close();
    throw e;
  }
  const commands = new Map<string, (payload: Buffer, retained: boolean) => void>();
  client.on('message', (topic, payload, packet) => commands.get(topic)?.(payload, packet.retain));
  const ownId = client.options.clientId;
  return {
    onPresence(l) {
      const offPresence = presence.onEvent((e) => { if (e.clientId !== ownId) l({ kind: e.kind, clientId: e.clientId }); });
      const offSubscribe = presence.onSubscribe((s) => { if (s.clientId !== ownId) l({ kind: 'subscribed', clientId: s.clientId, topic: s.topic }); });
      return () => { offPresence(); offSubscribe(); };
    },
    async watchCommandTopic(topic, onMessage) {
      commands.set(topic, onMessage);
      await client.subscribeAsync(topic, { qos: 1 });
    },
    async unwatchCommandTopic(topic) {
      commands.delete(topic);
      await client.unsubscribeAsync(topic);
    },
    async close() {
      await client.endAsync();
      await presence.close();
    },
  };
}
