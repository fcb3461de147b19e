import crypto from 'node:crypto';
import {
  clientIdFromName, commandTopicForClient, topicHash, protectSymKey, unprotectSymKey, TOPIC_KEY_GRACE_SECONDS,
  type Clock,
} from '../e4/index.ts';
import { decodeCommand, type E4Command, type CommandName } from '../e4/commands.ts';
import {
  commandKeyFromC2, ed25519PublicFromPrivate, generateEd25519KeyPair, protectSignedMessage, unprotectSignedMessage,
} from '../e4/pubkey.ts';
import { E4Error } from '../e4/errors.ts';

// One simulated E4 device: its identity key, its topic keys (with the previous key kept for 60 minutes
// after a rotation, as e4go does), and in pubkey mode the peers' public keys and C2's public key.
// Pure state + crypto: the MQTT side lives in fleet.ts, so this is testable without a broker.

export type DeviceMode = 'symkey' | 'pubkey';

export interface DeviceSpec {
  name: string;
  mode?: DeviceMode;
  /** symkey: 32-byte key; pubkey: 64-byte Ed25519 private key (seed ‖ public). Default: random. */
  identityKey?: Uint8Array;
  /** pubkey mode: C2's Curve25519 public key (needed to open commands). */
  c2PublicKey?: Uint8Array;
}

export interface TopicKeyState {
  key: Buffer;
  /** The key before the last rotation, usable until previousExpiresAtMs. */
  previous?: { key: Buffer; expiresAtMs: number };
}

export interface DeviceSnapshot {
  name: string;
  mode: DeviceMode;
  identityKey: string;
  c2PublicKey?: string;
  topicKeys: Record<string, { key: string; previous?: { key: string; expiresAtMs: number } }>;
  pubKeys: Record<string, string>;
}

export interface ProcessedCommand {
  type: CommandName;
  atMs: number;
  topicHash?: string;
}

const PUBKEY_ONLY: ReadonlySet<CommandName> = new Set(['RemovePubKey', 'ResetPubKeys', 'SetPubKey', 'SetC2Key']);

function nowMs(now?: Clock): number {
  return now === undefined ? Date.now() : typeof now === 'number' ? now : now.getTime();
}

export class SimulatedDevice {
  readonly name: string;
  readonly mode: DeviceMode;
  readonly id: Buffer;
  readonly idHex: string;
  readonly commandTopic: string;
  identityKey: Buffer;
  c2PublicKey?: Buffer;
  /** topic hash (hex) → key state */
  readonly topicKeys = new Map<string, TopicKeyState>();
  /** peer client id (hex) → Ed25519 public key (pubkey mode, from SetPubKey) */
  readonly pubKeys = new Map<string, Buffer>();
  /** topic names seen (hash hex → name), for readable snapshots */
  readonly topicNames = new Map<string, string>();
  readonly counts: Record<CommandName, number> = {
    RemoveTopic: 0, ResetTopics: 0, SetIdKey: 0, SetTopicKey: 0, RemovePubKey: 0, ResetPubKeys: 0, SetPubKey: 0, SetC2Key: 0,
  };
  commandErrors = 0;
  lastCommand?: ProcessedCommand;
  lastError?: string;

  constructor(spec: DeviceSpec) {
    this.name = spec.name;
    this.mode = spec.mode ?? 'symkey';
    this.id = clientIdFromName(spec.name);
    this.idHex = this.id.toString('hex');
    this.commandTopic = commandTopicForClient(this.id);
    if (spec.identityKey) {
      const want = this.mode === 'symkey' ? 32 : 64;
      if (spec.identityKey.length !== want) {
        throw new Error(`device ${spec.name}: ${this.mode} identity key must be ${want} bytes, got ${spec.identityKey.length}`);
      }
      this.identityKey = Buffer.from(spec.identityKey);
    } else {
      this.identityKey = this.mode === 'symkey' ? crypto.randomBytes(32) : Buffer.from(generateEd25519KeyPair().privateKey);
    }
    if (spec.c2PublicKey) this.c2PublicKey = Buffer.from(spec.c2PublicKey);
  }

  /** What C2 must store for this device: the symmetric key, or the Ed25519 public key in pubkey mode. */
  get keyForC2(): Buffer {
    return this.mode === 'symkey' ? this.identityKey : ed25519PublicFromPrivate(this.identityKey);
  }

  private commandKey(): Buffer {
    if (this.mode === 'symkey') return this.identityKey;
    if (!this.c2PublicKey) throw new E4Error('INVALID_KEY', `device ${this.name} has no C2 public key: it cannot open pubkey-mode commands`);
    return commandKeyFromC2(this.c2PublicKey, this.identityKey);
  }

  /** Open, decode and apply one command as received on the command topic. Throws (and counts) on failure. */
  handleCommand(protectedCommand: Uint8Array, now?: Clock): E4Command {
    try {
      const cmd = decodeCommand(unprotectSymKey(protectedCommand, this.commandKey(), now));
      this.apply(cmd, now);
      return cmd;
    } catch (err) {
      this.commandErrors++;
      this.lastError = (err as Error).message;
      throw err;
    }
  }

  /** Apply a decoded command (e4go client semantics). */
  apply(cmd: E4Command, now?: Clock): void {
    const t = nowMs(now);
    if (this.mode === 'symkey' && PUBKEY_ONLY.has(cmd.type)) {
      throw new E4Error('INVALID_COMMAND', `${cmd.type} is a pubkey-mode command; device ${this.name} is in symkey mode`);
    }
    switch (cmd.type) {
      case 'RemoveTopic':
        this.topicKeys.delete(cmd.topicHash.toString('hex'));
        break;
      case 'ResetTopics':
        this.topicKeys.clear();
        break;
      case 'SetIdKey': {
        const want = this.mode === 'symkey' ? 32 : 64;
        if (cmd.key.length !== want) throw new E4Error('INVALID_COMMAND', `SetIdKey carries ${cmd.key.length} bytes; a ${this.mode} device needs ${want}`);
        this.identityKey = Buffer.from(cmd.key);
        break;
      }
      case 'SetTopicKey': {
        const h = cmd.topicHash.toString('hex');
        const cur = this.topicKeys.get(h);
        const state: TopicKeyState = { key: Buffer.from(cmd.key) };
        if (cur && !cur.key.equals(cmd.key)) state.previous = { key: cur.key, expiresAtMs: t + TOPIC_KEY_GRACE_SECONDS * 1000 };
        else if (cur?.previous) state.previous = cur.previous;
        this.topicKeys.set(h, state);
        break;
      }
      case 'RemovePubKey':
        this.pubKeys.delete(cmd.id.toString('hex'));
        break;
      case 'ResetPubKeys':
        this.pubKeys.clear();
        break;
      case 'SetPubKey':
        this.pubKeys.set(cmd.id.toString('hex'), Buffer.from(cmd.publicKey));
        break;
      case 'SetC2Key':
        this.c2PublicKey = Buffer.from(cmd.publicKey);
        break;
    }
    this.counts[cmd.type]++;
    this.lastCommand = { type: cmd.type, atMs: t, ...('topicHash' in cmd ? { topicHash: cmd.topicHash.toString('hex') } : {}) };
  }

  /** Current key for a topic, or undefined. */
  topicKey(topic: string): Buffer | undefined {
    return this.topicKeys.get(topicHash(topic).toString('hex'))?.key;
  }

  /** Protect a payload for a topic with the current topic key (signed in pubkey mode). */
  protect(topic: string, payload: Uint8Array, now?: Clock): Buffer {
    const key = this.topicKey(topic);
    if (!key) throw new E4Error('INVALID_KEY', `device ${this.name} has no key for topic "${topic}" (no SetTopicKey received)`);
    return this.mode === 'symkey' ? protectSymKey(payload, key, now) : protectSignedMessage(payload, key, this.id, this.identityKey, now);
  }

  /** Open a protected topic message with the current key, else the previous one while its grace lasts. */
  unprotect(topic: string, protectedMsg: Uint8Array, now?: Clock): { payload: Buffer; usedPreviousKey: boolean } {
    const state = this.topicKeys.get(topicHash(topic).toString('hex'));
    if (!state) throw new E4Error('INVALID_KEY', `device ${this.name} has no key for topic "${topic}"`);
    const open = (key: Buffer) => (this.mode === 'symkey'
      ? unprotectSymKey(protectedMsg, key, now)
      : unprotectSignedMessage(protectedMsg, key, this.pubKeys, now).payload);
    try {
      return { payload: open(state.key), usedPreviousKey: false };
    } catch (err) {
      if (state.previous && nowMs(now) < state.previous.expiresAtMs) {
        try { return { payload: open(state.previous.key), usedPreviousKey: true }; } catch { /* report the first error */ }
      }
      throw err;
    }
  }

  snapshot(): DeviceSnapshot {
    const topicKeys: DeviceSnapshot['topicKeys'] = {};
    for (const [h, s] of this.topicKeys) {
      topicKeys[h] = { key: s.key.toString('hex'), ...(s.previous ? { previous: { key: s.previous.key.toString('hex'), expiresAtMs: s.previous.expiresAtMs } } : {}) };
    }
    return {
      name: this.name,
      mode: this.mode,
      identityKey: this.identityKey.toString('hex'),
      ...(this.c2PublicKey ? { c2PublicKey: this.c2PublicKey.toString('hex') } : {}),
      topicKeys,
      pubKeys: Object.fromEntries([...this.pubKeys].map(([k, v]) => [k, v.toString('hex')])),
    };
  }

  /** Replace this device's key state with a snapshot's (same name required). */
  restore(s: DeviceSnapshot): void {
    if (s.name !== this.name || s.mode !== this.mode) throw new Error(`snapshot of ${s.name} (${s.mode}) cannot restore device ${this.name} (${this.mode})`);
    this.identityKey = Buffer.from(s.identityKey, 'hex');
    this.c2PublicKey = s.c2PublicKey ? Buffer.from(s.c2PublicKey, 'hex') : undefined;
    this.topicKeys.clear();
    for (const [h, t] of Object.entries(s.topicKeys)) {
      this.topicKeys.set(h, {
        key: Buffer.from(t.key, 'hex'),
        ...(t.previous ? { previous: { key: Buffer.from(t.previous.key, 'hex'), expiresAtMs: t.previous.expiresAtMs } } : {}),
      });
    }
    this.pubKeys.clear();
    for (const [id, pub] of Object.entries(s.pubKeys)) this.pubKeys.set(id, Buffer.from(pub, 'hex'));
  }
}
