// Interoperability with the reference Go implementation (github.com/teserakt-io/e4go v1.1.0),
// in both directions: Go-produced vectors checked by the TypeScript library, and TypeScript-produced
// values checked by e4go (including a real e4go client processing our commands and messages).
import { randomBytes } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  argon2i, c2CommandKeyForDevice, clientIdFromName, cmdRemovePubKey, cmdRemoveTopic, cmdResetPubKeys, cmdResetTopics,
  cmdSetC2Key, cmdSetIdKey, cmdSetPubKey, cmdSetTopicKey, commandKeyFromC2, commandTopicForClient, decodeCommand,
  deriveDbKey, deriveKeyFromPassword, ed25519KeyPairFromPassword, ed25519KeyPairFromSeed, ed25519PrivateToX25519,
  ed25519PublicToX25519, encodeCommand, generateEd25519KeyPair, generateX25519KeyPair, openDbValue, protectSignedMessage,
  protectSymKey, sealDbValue, sivOpen, sivSeal, topicHash, unprotectSignedMessage, unprotectSymKey, WrongPassphraseError,
  x25519PublicFromPrivate, ed25519PublicFromPrivate, openDbValuesBatch, type E4Command,
} from '../../lib/e4/index.ts';
import { buildGoVectors, checkWithGo, emitGoVectors, findGo } from '../go-vectors/go-vectors.ts';

const go = findGo();
if (!go) {
  console.warn('SKIPPED test/e4/go-vectors.test.ts: no Go toolchain (set $GO or install Go 1.22+ at /usr/local/go) — E4 interoperability with e4go NOT proven');
}

const b = (h: string) => Buffer.from(h, 'hex');
const hx = (v: Uint8Array) => Buffer.from(v).toString('hex');

/** The command our builders produce from the same arguments the Go vector used. */
function buildTs(type: string, args: Record<string, string>): Buffer {
  switch (type) {
    case 'RemoveTopic': return cmdRemoveTopic(args.topic);
    case 'ResetTopics': return cmdResetTopics();
    case 'SetIdKey': return cmdSetIdKey(b(args.key));
    case 'SetTopicKey': return cmdSetTopicKey(b(args.key), args.topic);
    case 'RemovePubKey': return cmdRemovePubKey(args.name);
    case 'ResetPubKeys': return cmdResetPubKeys();
    case 'SetPubKey': return cmdSetPubKey(b(args.publicKey), args.name);
    case 'SetC2Key': return cmdSetC2Key(b(args.publicKey));
  }
  throw new Error(`unknown command ${type}`);
}

describe.skipIf(!go)('E4 interoperability with e4go (Go vectors, both directions)', () => {
  let bin: string;
  let v: any;
  beforeAll(async () => {
    bin = await buildGoVectors(go!);
    v = await emitGoVectors(bin);
  }, 300_000);

  describe('Go → TypeScript', () => {
    it('client ids, command topics and topic hashes', () => {
      expect(v.ids.length).toBeGreaterThan(0);
      for (const x of v.ids) {
        expect(hx(clientIdFromName(x.name))).toBe(x.id);
        expect(commandTopicForClient(b(x.id))).toBe(x.commandTopic);
      }
      for (const x of v.topics) expect(hx(topicHash(x.topic))).toBe(x.hash);
    });

    it('Argon2i with an empty salt, small geometries, both kernels', () => {
      for (const a of v.argon2i) {
        for (const engine of ['js', 'wasm'] as const) {
          expect(hx(argon2i(a.password, new Uint8Array(0), { t: a.t, mKiB: a.mKiB, p: a.p, dkLen: a.dkLen, engine }))).toBe(a.key);
        }
      }
    });

    it('password keys: DeriveSymKey and Ed25519PrivateKeyFromPassword (64 MiB)', () => {
      expect(hx(deriveKeyFromPassword(v.passwordKeys.password))).toBe(v.passwordKeys.symKey);
      const seed = b(v.passwordKeys.symKey);
      expect(hx(ed25519KeyPairFromSeed(seed).privateKey)).toBe(v.passwordKeys.ed25519Private);
    });

    it('AES-SIV: open Go output, and seal to the identical bytes', () => {
      for (const s of v.siv) {
        const ad = s.ad.map(b);
        expect(hx(sivOpen(b(s.key), b(s.sealed), ad))).toBe(s.plaintext);
        expect(hx(sivSeal(b(s.key), b(s.plaintext), ad))).toBe(s.sealed);
      }
    });

    it('all eight commands: same bytes from the same arguments, strict decode round-trip', () => {
      const seen = new Set<number>();
      for (const c of v.commands) {
        expect(hx(buildTs(c.type, c.args))).toBe(c.bytes);
        const decoded = decodeCommand(b(c.bytes));
        expect(decoded.type).toBe(c.type);
        expect(hx(encodeCommand(decoded))).toBe(c.bytes);
        seen.add(b(c.bytes)[0]);
        // one byte more or less is refused
        expect(() => decodeCommand(Buffer.concat([b(c.bytes), Buffer.of(0)]))).toThrow(/invalid .* length/);
        if (c.bytes.length > 2) expect(() => decodeCommand(b(c.bytes).subarray(0, -1))).toThrow(/invalid .* length/);
      }
      expect([...seen].sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    });

    it('C2 key store: DB key from the passphrase, Go-sealed values open, wrong passphrase fails clearly', () => {
      const dbKey = deriveDbKey(v.dbValues.passphrase);
      expect(hx(dbKey)).toBe(v.dbValues.dbKey);
      for (const x of v.dbValues.values) {
        expect(hx(openDbValue(dbKey, b(x.sealed)))).toBe(x.plain);
        expect(hx(sealDbValue(dbKey, b(x.plain)))).toBe(x.sealed);
      }
      const batch = openDbValuesBatch(dbKey, v.dbValues.values.map((x: any) => b(x.sealed)));
      expect(batch.map((x) => x && hx(x))).toEqual(v.dbValues.values.map((x: any) => x.plain));
      const wrong = deriveDbKey(v.dbValues.passphrase + ' ');
      expect(() => openDbValue(wrong, b(v.dbValues.values[0].sealed))).toThrow(WrongPassphraseError);
    });

    it('symkey mode: commands and messages from e4go unprotect (and are refused 11 minutes later)', () => {
      const s = v.symkey;
      const now = Date.now(); // the vectors were produced moments ago, in beforeAll
      for (const c of s.commands) {
        expect(hx(unprotectSymKey(b(c.protected), b(s.deviceKey), now))).toBe(c.payload);
        decodeCommand(b(c.payload));
      }
      for (const m of s.messages) expect(hx(unprotectSymKey(b(m.protected), b(s.topicKey), now))).toBe(m.payload);
      expect(() => unprotectSymKey(b(s.messages[0].protected), b(s.topicKey), now + 11 * 60_000)).toThrow(/more than the 600 s/);
      expect(() => unprotectSymKey(b(s.messages[0].protected), b(s.deviceKey), now)).toThrow(/does not authenticate/);
    });

    it('pubkey mode: key conversions, command key from both ends, commands and signed messages', () => {
      const p = v.pubkey;
      const now = Date.now(); // the vectors were produced moments ago, in beforeAll
      expect(hx(x25519PublicFromPrivate(b(p.c2Private)))).toBe(p.c2Public);
      expect(hx(ed25519PublicFromPrivate(b(p.deviceEd25519Private).subarray(0, 32)))).toBe(p.deviceEd25519Public);
      expect(hx(ed25519PublicToX25519(b(p.deviceEd25519Public)))).toBe(p.deviceCurvePublic);
      expect(hx(ed25519PrivateToX25519(b(p.deviceEd25519Private)))).toBe(p.deviceCurvePrivate);
      expect(hx(commandKeyFromC2(b(p.c2Public), b(p.deviceEd25519Private)))).toBe(p.commandKey);
      expect(hx(c2CommandKeyForDevice(b(p.c2Private), b(p.deviceEd25519Public)))).toBe(p.commandKey);
      for (const c of p.commands) expect(hx(unprotectSymKey(b(c.protected), b(p.commandKey), now))).toBe(c.payload);
      const keys = new Map([[p.senderId, b(p.senderEd25519Public)]]);
      for (const m of p.messages) {
        const out = unprotectSignedMessage(b(m.protected), b(p.topicKey), keys, now);
        expect(hx(out.payload)).toBe(m.payload);
        expect(hx(out.signerId)).toBe(p.senderId);
      }
      const tampered = b(p.messages[0].protected);
      tampered[tampered.length - 70] ^= 1; // inside the ciphertext: the signature no longer verifies
      expect(() => unprotectSignedMessage(tampered, b(p.topicKey), keys, now)).toThrow(/signature .* does not verify/);
      expect(() => unprotectSignedMessage(b(p.messages[0].protected), b(p.topicKey), new Map(), now)).toThrow(/no public key for signer/);
    });
  });

  describe('TypeScript → Go', () => {
    it('e4go accepts every TypeScript-produced value, and a real e4go client processes our commands and messages', async () => {
      const topic = 'fleet/b/commands';
      const topicKey = randomBytes(32);
      const password = 'ts device password 0007';
      const pwKeys = ed25519KeyPairFromPassword(password);
      const passphrase = 'ts escrowed passphrase 0042';
      const dbKey = deriveDbKey(passphrase);
      const dbPlain = [randomBytes(32), randomBytes(32), generateEd25519KeyPair().publicKey];

      const sivCases = [0, 1, 16, 33, 1024].map((n) => {
        const key = randomBytes(64);
        const ad = [randomBytes(n % 13), Buffer.alloc(0), randomBytes(3)];
        const pt = randomBytes(n);
        return { key: hx(key), ad: ad.map(hx), plaintext: hx(pt), sealed: hx(sivSeal(key, pt, ad)) };
      });

      const peer = generateEd25519KeyPair();
      const c2Next = generateX25519KeyPair();
      const cmds: Array<[string, Record<string, string>, E4Command | Buffer]> = [
        ['RemoveTopic', { topic }, cmdRemoveTopic(topic)],
        ['ResetTopics', {}, cmdResetTopics()],
        ['SetIdKey', { key: hx(topicKey) }, cmdSetIdKey(topicKey)],
        ['SetIdKey', { key: hx(peer.privateKey) }, cmdSetIdKey(peer.privateKey)],
        ['SetTopicKey', { key: hx(topicKey), topic }, cmdSetTopicKey(topicKey, topic)],
        ['RemovePubKey', { name: 'peer-1' }, cmdRemovePubKey('peer-1')],
        ['ResetPubKeys', {}, cmdResetPubKeys()],
        ['SetPubKey', { publicKey: hx(peer.publicKey), name: 'peer-1' }, cmdSetPubKey(peer.publicKey, 'peer-1')],
        ['SetC2Key', { publicKey: hx(c2Next.publicKey) }, cmdSetC2Key(c2Next.publicKey)],
      ];

      // symkey device: commands sealed with its identity key; SetIdKey last (it replaces that key)
      const devKey = randomBytes(32);
      const newDevKey = randomBytes(32);
      const symCmds = [cmdRemoveTopic('some/other'), cmdResetTopics(), cmdSetTopicKey(topicKey, topic), cmdSetIdKey(newDevKey)];
      const msgs = [1, 17, 1024].map((n) => randomBytes(n));

      // pubkey device and a second device that signs messages
      const c2 = generateX25519KeyPair();
      const dev = generateEd25519KeyPair();
      const sender = generateEd25519KeyPair();
      const senderId = clientIdFromName('sender-device');
      const cmdKey = c2CommandKeyForDevice(c2.privateKey, dev.publicKey);
      const pkCmds = [
        cmdResetPubKeys(),
        cmdSetPubKey(peer.publicKey, 'peer-1'),
        cmdRemovePubKey('peer-1'),
        cmdSetPubKey(sender.publicKey, senderId),
        cmdResetTopics(),
        cmdSetTopicKey(topicKey, topic),
        cmdSetC2Key(c2Next.publicKey), // last: it changes the command key
      ];

      const values = {
        ids: ['device-0001', 'ts-only-name', '名前'].map((name) => ({ name, id: hx(clientIdFromName(name)), commandTopic: commandTopicForClient(clientIdFromName(name)) })),
        topics: [topic, 'a', 'emoji/🚀'].map((t) => ({ topic: t, hash: hx(topicHash(t)) })),
        argon2i: [
          { password: 'pw', t: 2, mKiB: 256, p: 2, dkLen: 32 },
          { password: 'another', t: 1, mKiB: 2048, p: 4, dkLen: 64 },
        ].map((a) => ({ ...a, key: hx(argon2i(a.password, new Uint8Array(0), a)) })),
        passwordKeys: { password, symKey: hx(pwKeys.privateKey.subarray(0, 32)), ed25519Private: hx(pwKeys.privateKey) },
        siv: sivCases,
        commands: cmds.map(([type, args, bytes]) => ({ type, args, bytes: hx(bytes as Buffer) })),
        dbValues: { passphrase, dbKey: hx(dbKey), values: dbPlain.map((pl) => ({ plain: hx(pl), sealed: hx(sealDbValue(dbKey, pl)) })) },
        symkey: {
          deviceId: hx(clientIdFromName('ts-sym-device')),
          deviceKey: hx(devKey),
          commands: symCmds.map((c) => ({ payload: hx(c), protected: hx(protectSymKey(c, devKey)) })),
          topic,
          topicKey: hx(topicKey),
          messages: msgs.map((m) => ({ payload: hx(m), protected: hx(protectSymKey(m, topicKey)) })),
        },
        pubkey: {
          c2Private: hx(c2.privateKey),
          c2Public: hx(c2.publicKey),
          deviceId: hx(clientIdFromName('ts-pub-device')),
          deviceEd25519Private: hx(dev.privateKey),
          deviceCurvePrivate: hx(ed25519PrivateToX25519(dev.privateKey)),
          deviceCurvePublic: hx(ed25519PublicToX25519(dev.publicKey)),
          // computed on the device side; Go recomputes it the way C2 does
          commandKey: hx(commandKeyFromC2(c2.publicKey, dev.privateKey)),
          commands: pkCmds.map((c) => ({ payload: hx(c), protected: hx(protectSymKey(c, cmdKey)) })),
          topic,
          topicKey: hx(topicKey),
          senderId: hx(senderId),
          senderEd25519Public: hx(sender.publicKey),
          messages: msgs.map((m) => ({ payload: hx(m), protected: hx(protectSignedMessage(m, topicKey, senderId, sender.privateKey)) })),
        },
      };
      const report = await checkWithGo(bin, values);
      expect(report.failures ?? []).toEqual([]);
      expect(report.ok).toBe(true);
      // every value above was checked (ids 3x2, topics 3, argon 2, password 2, siv 5x2, commands 9x2, db 1+3x2,
      // symkey 4x3+3x2, pubkey 7+3x2+3)
      expect(report.checked).toBeGreaterThanOrEqual(80);

      // and a negative control: e4go must reject a value we corrupt
      const bad = structuredClone(values);
      bad.dbValues.values[0].sealed = bad.dbValues.values[0].sealed.replace(/^./, (c) => (c === '0' ? '1' : '0'));
      bad.symkey.messages[0].protected = hx(protectSymKey(msgs[0], randomBytes(32)));
      const badReport = await checkWithGo(bin, bad);
      expect(badReport.ok).toBe(false);
      expect(badReport.failures!.join('\n')).toMatch(/C2 opens DB value 0/);
      expect(badReport.failures!.join('\n')).toMatch(/symkey client reads message 0/);
    }, 120_000);
  });
});
