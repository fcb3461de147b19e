// The eight E4 commands C2 sends to a device on its command topic (e4go commands.go):
// one type byte followed by fixed-length arguments. decodeCommand is strict: any other length is refused,
// as e4go's processCommand does.
import { E4Error } from './errors.ts';
import { clientIdFromName, HASH_LEN, ID_LEN, KEY_LEN, topicHash } from './ids.ts';

export const CommandType = {
  RemoveTopic: 0x00,
  ResetTopics: 0x01,
  SetIdKey: 0x02,
  SetTopicKey: 0x03,
  RemovePubKey: 0x04,
  ResetPubKeys: 0x05,
  SetPubKey: 0x06,
  SetC2Key: 0x07,
} as const;
export type CommandName = keyof typeof CommandType;

export const ED25519_PRIVATE_LEN = 64;
export const ED25519_PUBLIC_LEN = 32;
export const X25519_KEY_LEN = 32;

export type E4Command =
  | { type: 'RemoveTopic'; topicHash: Buffer }
  | { type: 'ResetTopics' }
  /** 32-byte symmetric key, or 64-byte Ed25519 private key (seed ‖ public) in pubkey mode */
  | { type: 'SetIdKey'; key: Buffer }
  | { type: 'SetTopicKey'; key: Buffer; topicHash: Buffer }
  | { type: 'RemovePubKey'; id: Buffer }
  | { type: 'ResetPubKeys' }
  | { type: 'SetPubKey'; publicKey: Buffer; id: Buffer }
  | { type: 'SetC2Key'; publicKey: Buffer };

function need(what: string, v: Uint8Array, ...lens: number[]): Buffer {
  if (!lens.includes(v.length)) {
    throw new E4Error('INVALID_COMMAND', `${what} must be ${lens.join(' or ')} bytes, got ${v.length}`);
  }
  return Buffer.from(v);
}

/** A topic name, or an already computed 16-byte topic hash. */
function hashOf(topicOrHash: string | Uint8Array): Buffer {
  return typeof topicOrHash === 'string' ? topicHash(topicOrHash) : need('topic hash', topicOrHash, HASH_LEN);
}
/** A client name, or an already computed 16-byte client id. */
function idOf(nameOrId: string | Uint8Array): Buffer {
  return typeof nameOrId === 'string' ? clientIdFromName(nameOrId) : need('client id', nameOrId, ID_LEN);
}

/** Serialize a command: type byte ‖ arguments. Validates argument lengths. */
export function encodeCommand(cmd: E4Command): Buffer {
  const t = Buffer.of(CommandType[cmd.type]);
  switch (cmd.type) {
    case 'RemoveTopic':
      return Buffer.concat([t, need('RemoveTopic topic hash', cmd.topicHash, HASH_LEN)]);
    case 'ResetTopics':
    case 'ResetPubKeys':
      return t;
    case 'SetIdKey':
      return Buffer.concat([t, need('SetIdKey key', cmd.key, KEY_LEN, ED25519_PRIVATE_LEN)]);
    case 'SetTopicKey':
      return Buffer.concat([t, need('SetTopicKey key', cmd.key, KEY_LEN), need('SetTopicKey topic hash', cmd.topicHash, HASH_LEN)]);
    case 'RemovePubKey':
      return Buffer.concat([t, need('RemovePubKey id', cmd.id, ID_LEN)]);
    case 'SetPubKey':
      return Buffer.concat([t, need('SetPubKey public key', cmd.publicKey, ED25519_PUBLIC_LEN), need('SetPubKey id', cmd.id, ID_LEN)]);
    case 'SetC2Key':
      if (cmd.publicKey.every((b) => b === 0)) throw new E4Error('INVALID_COMMAND', 'SetC2Key public key is all zeros');
      return Buffer.concat([t, need('SetC2Key public key', cmd.publicKey, X25519_KEY_LEN)]);
    default:
      throw new E4Error('INVALID_COMMAND', `unknown command ${JSON.stringify(cmd)}`);
  }
}

/** Parse a decrypted command strictly; throws E4Error('INVALID_COMMAND') naming the problem. */
export function decodeCommand(bytes: Uint8Array): E4Command {
  if (bytes.length === 0) throw new E4Error('INVALID_COMMAND', 'empty command');
  const type = bytes[0];
  const a = Buffer.from(bytes.subarray(1));
  const len = (name: CommandName, ...lens: number[]) => {
    if (!lens.includes(a.length)) {
      throw new E4Error('INVALID_COMMAND', `invalid ${name} length: ${a.length} argument bytes, expected ${lens.join(' or ')}`);
    }
  };
  switch (type) {
    case CommandType.RemoveTopic:
      len('RemoveTopic', HASH_LEN);
      return { type: 'RemoveTopic', topicHash: a };
    case CommandType.ResetTopics:
      len('ResetTopics', 0);
      return { type: 'ResetTopics' };
    case CommandType.SetIdKey:
      len('SetIdKey', KEY_LEN, ED25519_PRIVATE_LEN);
      return { type: 'SetIdKey', key: a };
    case CommandType.SetTopicKey:
      len('SetTopicKey', KEY_LEN + HASH_LEN);
      return { type: 'SetTopicKey', key: a.subarray(0, KEY_LEN), topicHash: a.subarray(KEY_LEN) };
    case CommandType.RemovePubKey:
      len('RemovePubKey', ID_LEN);
      return { type: 'RemovePubKey', id: a };
    case CommandType.ResetPubKeys:
      len('ResetPubKeys', 0);
      return { type: 'ResetPubKeys' };
    case CommandType.SetPubKey:
      len('SetPubKey', ED25519_PUBLIC_LEN + ID_LEN);
      return { type: 'SetPubKey', publicKey: a.subarray(0, ED25519_PUBLIC_LEN), id: a.subarray(ED25519_PUBLIC_LEN) };
    case CommandType.SetC2Key:
      len('SetC2Key', X25519_KEY_LEN);
      return { type: 'SetC2Key', publicKey: a };
    default:
      throw new E4Error('INVALID_COMMAND', `unknown command type 0x${type.toString(16).padStart(2, '0')}`);
  }
}

// Builders named after e4go's Cmd* functions, taking names/topics or ready ids/hashes.
export const cmdRemoveTopic = (topic: string | Uint8Array) => encodeCommand({ type: 'RemoveTopic', topicHash: hashOf(topic) });
export const cmdResetTopics = () => encodeCommand({ type: 'ResetTopics' });
export const cmdSetIdKey = (key: Uint8Array) => encodeCommand({ type: 'SetIdKey', key: Buffer.from(key) });
export const cmdSetTopicKey = (key: Uint8Array, topic: string | Uint8Array) =>
  encodeCommand({ type: 'SetTopicKey', key: Buffer.from(key), topicHash: hashOf(topic) });
export const cmdRemovePubKey = (nameOrId: string | Uint8Array) => encodeCommand({ type: 'RemovePubKey', id: idOf(nameOrId) });
export const cmdResetPubKeys = () => encodeCommand({ type: 'ResetPubKeys' });
export const cmdSetPubKey = (publicKey: Uint8Array, nameOrId: string | Uint8Array) =>
  encodeCommand({ type: 'SetPubKey', publicKey: Buffer.from(publicKey), id: idOf(nameOrId) });
export const cmdSetC2Key = (c2PublicKey: Uint8Array) => encodeCommand({ type: 'SetC2Key', publicKey: Buffer.from(c2PublicKey) });
