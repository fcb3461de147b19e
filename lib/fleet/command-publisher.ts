import mqtt, { type MqttClient } from 'mqtt';
import { commandTopicForClient, clientIdFromName, protectSymKey } from '../e4/index.ts';
import { encodeCommand, type E4Command } from '../e4/commands.ts';
import { c2CommandKeyForDevice, generateX25519KeyPair, type X25519KeyPair } from '../e4/pubkey.ts';

// Publishes E4 commands to devices the way C2 does (sealed for the device, retained, QoS 2 on e4/<id>),
// without C2. For what the C2 build in use cannot send (pubkey-mode commands) and for load tests where
// the simulator, not C2, is being measured.

export interface CommandTarget {
  name: string;
  mode: 'symkey' | 'pubkey';
  /** symkey: the device's 32-byte identity key; pubkey: its Ed25519 public key (32 bytes). */
  keyForC2: Uint8Array;
}

export interface CommandPublisher {
  /** C2's Curve25519 key pair used for pubkey-mode devices. */
  readonly c2Key: X25519KeyPair;
  send(target: CommandTarget, command: E4Command, opts?: { qos?: 0 | 1 | 2; retain?: boolean }): Promise<void>;
  /** Sealed bytes as C2 would publish them (no network). */
  seal(target: CommandTarget, command: E4Command): Buffer;
  close(): Promise<void>;
}

/**
 * Mosquitto accepts at most max_inflight_messages (default 20) unacknowledged QoS 1/2 messages from an
 * MQTT 3.1.1 client and silently DROPS the rest (PUBREC reason 151, quota exceeded). So sends are queued
 * and at most `maxInFlight` (default 16) are outstanding at once.
 */
export async function createCommandPublisher(opts: { brokerUrl: string; clientId?: string; c2Key?: X25519KeyPair; maxInFlight?: number }): Promise<CommandPublisher> {
  const c2Key = opts.c2Key ?? generateX25519KeyPair();
  const client: MqttClient = await mqtt.connectAsync(opts.brokerUrl, {
    clientId: opts.clientId ?? `e4ops-command-publisher-${process.pid}-${Date.now()}`,
    reconnectPeriod: 0,
  });
  const seal = (target: CommandTarget, command: E4Command): Buffer => {
    const key = target.mode === 'symkey' ? target.keyForC2 : c2CommandKeyForDevice(c2Key.privateKey, target.keyForC2);
    return protectSymKey(encodeCommand(command), key);
  };
  const maxInFlight = opts.maxInFlight ?? 16;
  let inFlight = 0;
  const waiting: (() => void)[] = [];
  const acquire = async () => {
    while (inFlight >= maxInFlight) await new Promise<void>((r) => waiting.push(r));
    inFlight++;
  };
  const release = () => { inFlight--; waiting.shift()?.(); };
  return {
    c2Key,
    seal,
    async send(target, command, o = {}) {
      const topic = commandTopicForClient(clientIdFromName(target.name));
      const sealed = seal(target, command);
      await acquire();
      try {
        await client.publishAsync(topic, sealed, { qos: o.qos ?? 2, retain: o.retain ?? true });
      } finally {
        release();
      }
    },
    async close() {
      await client.endAsync();
    },
  };
}
