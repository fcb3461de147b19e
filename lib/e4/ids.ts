// E4 identifiers: client ids and topic hashes are the first 16 bytes of SHA3-256 of the name/topic,
// exactly as e4go's crypto.HashIDAlias / crypto.HashTopic compute them.
import { createHash } from 'node:crypto';

/** Length of a client id and of a topic hash, in bytes. */
export const ID_LEN = 16;
/** Length of a symmetric E4 key (identity key, topic key, DB key), in bytes. */
export const KEY_LEN = 32;
export const HASH_LEN = 16;
export const TIMESTAMP_LEN = 8;
export const TAG_LEN = 16;
/** Longest topic e4go accepts. */
export const MAX_TOPIC_LEN = 512;

export function sha3_256(data: Uint8Array | string): Buffer {
  return createHash('sha3-256').update(data).digest();
}

/** Client id of the client C2 knows under `name`: SHA3-256(name)[0:16]. */
export function clientIdFromName(name: string): Buffer {
  if (name.length === 0) throw new Error('client name must not be empty');
  return sha3_256(Buffer.from(name, 'utf8')).subarray(0, ID_LEN);
}

/** Topic hash carried in RemoveTopic/SetTopicKey commands: SHA3-256(topic)[0:16]. */
export function topicHash(topic: string): Buffer {
  if (topic.length === 0) throw new Error('topic must not be empty');
  return sha3_256(Buffer.from(topic, 'utf8')).subarray(0, HASH_LEN);
}

/** MQTT topic on which C2 publishes commands for a client: "e4/" + lowercase hex id. */
export function commandTopicForClient(id: Uint8Array): string {
  if (id.length !== ID_LEN) throw new Error(`client id must be ${ID_LEN} bytes, got ${id.length}`);
  return 'e4/' + Buffer.from(id).toString('hex');
}

/** Inverse of commandTopicForClient; returns undefined for any other topic. */
export function clientIdFromCommandTopic(topic: string): Buffer | undefined {
  const m = /^e4\/([0-9a-f]{32})$/.exec(topic);
  return m ? Buffer.from(m[1], 'hex') : undefined;
}
