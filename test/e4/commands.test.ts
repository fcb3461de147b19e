import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  clientIdFromName, cmdRemovePubKey, cmdRemoveTopic, cmdResetPubKeys, cmdResetTopics, cmdSetC2Key, cmdSetIdKey,
  cmdSetPubKey, cmdSetTopicKey, commandTopicForClient, clientIdFromCommandTopic, decodeCommand, encodeCommand, topicHash,
} from '../../lib/e4/index.ts';

describe('E4 commands', () => {
  it('encodes each command as type byte ‖ fixed arguments and decodes it back', () => {
    const key = randomBytes(32);
    const pub = randomBytes(32);
    const cases: Array<[Buffer, number, number]> = [
      [cmdRemoveTopic('a/b'), 0x00, 17],
      [cmdResetTopics(), 0x01, 1],
      [cmdSetIdKey(key), 0x02, 33],
      [cmdSetIdKey(randomBytes(64)), 0x02, 65],
      [cmdSetTopicKey(key, 'a/b'), 0x03, 49],
      [cmdRemovePubKey('dev'), 0x04, 17],
      [cmdResetPubKeys(), 0x05, 1],
      [cmdSetPubKey(pub, 'dev'), 0x06, 49],
      [cmdSetC2Key(pub), 0x07, 33],
    ];
    for (const [bytes, type, len] of cases) {
      expect(bytes[0]).toBe(type);
      expect(bytes.length).toBe(len);
      expect(encodeCommand(decodeCommand(bytes)).equals(bytes)).toBe(true);
    }
    const st = decodeCommand(cmdSetTopicKey(key, 'a/b'));
    expect(st.type === 'SetTopicKey' && st.key.equals(key) && st.topicHash.equals(topicHash('a/b'))).toBe(true);
    const sp = decodeCommand(cmdSetPubKey(pub, 'dev'));
    expect(sp.type === 'SetPubKey' && sp.publicKey.equals(pub) && sp.id.equals(clientIdFromName('dev'))).toBe(true);
  });

  it('decodes strictly: wrong lengths, unknown types and empty input are refused with the command named', () => {
    expect(() => decodeCommand(Buffer.alloc(0))).toThrow(/empty command/);
    expect(() => decodeCommand(Buffer.of(0x08))).toThrow(/unknown command type 0x08/);
    expect(() => decodeCommand(Buffer.of(0x01, 0))).toThrow(/invalid ResetTopics length/);
    expect(() => decodeCommand(Buffer.alloc(34, 0x02).fill(2, 0, 1))).toThrow(/invalid SetIdKey length: 33/);
    expect(() => decodeCommand(Buffer.concat([Buffer.of(3), randomBytes(47)]))).toThrow(/invalid SetTopicKey length/);
    expect(() => cmdSetTopicKey(randomBytes(16), 'a')).toThrow(/SetTopicKey key must be 32 bytes/);
    expect(() => cmdSetC2Key(Buffer.alloc(32))).toThrow(/all zeros/);
  });

  it('names command topics after the client id', () => {
    const id = clientIdFromName('device-0001');
    const t = commandTopicForClient(id);
    expect(t).toMatch(/^e4\/[0-9a-f]{32}$/);
    expect(clientIdFromCommandTopic(t)!.equals(id)).toBe(true);
    expect(clientIdFromCommandTopic('fleet/a')).toBeUndefined();
  });
});
