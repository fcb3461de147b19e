import fs from 'node:fs';
import path from 'node:path';
import https from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { startC2, startC2TestStack, pinnedC2Version, type C2TestStack } from '../../lib/servers/c2.ts';
import { freeLoopbackPort } from '../../lib/ports.ts';
import os from 'node:os';
import { createC2Api, C2ApiError, C2RouteMissingError, type C2Api } from '../../lib/c2/c2-api.ts';
import { certificateSans, verifyCertificate } from '../../lib/c2/tls-material.ts';
import { compareSchemas, dumpSchema, readCommittedC2Schema } from '../../lib/c2/db-schema.ts';
import { deriveDbKey, openDbValue, WrongPassphraseError } from '../../lib/e4/keystore.ts';
import { clientIdFromName } from '../../lib/e4/ids.ts';
import { skipWithoutC2 } from './c2-stack.ts';
import { createMemoryLogger } from '../../lib/log.ts';
import crypto from 'node:crypto';

describe.skipIf(skipWithoutC2)('real C2 on throwaway PostgreSQL (127.0.0.N:5432) and Mosquitto', () => {
  let stack: C2TestStack;
  let api: C2Api;

  beforeAll(async () => {
    stack = await startC2TestStack();
    api = createC2Api({ baseUrl: stack.c2.baseUrl, ca: stack.c2.ca.certPem, retries: 2, backoffMs: 50 });
  });
  afterAll(async () => {
    api?.close();
    await stack?.stop();
  });

  it('runs from a config.yaml rendered by renderC2Config, with no secret in the file and RSA certs that name the gRPC host', () => {
    const cfg = YAML.parse(fs.readFileSync(stack.c2.configFile, 'utf8'));
    expect(cfg['db-host']).toBe(stack.postgres.host);
    expect(stack.postgres.host).toMatch(/^127\.0\.0\.(\d+)$/);
    expect(stack.postgres.host).not.toBe('127.0.0.1');
    expect(cfg['http-grpc-host-port']).toBe(`127.0.0.1:${stack.c2.grpcPort}`);
    expect(cfg['mqtt-broker']).toBe(`tcp://127.0.0.1:${stack.mosquitto.port}`);
    expect(fs.readFileSync(stack.c2.configFile, 'utf8')).not.toContain(stack.passphrase);
    expect(fs.readFileSync(stack.c2.configFile, 'utf8')).toMatch(/^# Rendered by e4ops/);
    const grpcCert = path.join(path.dirname(stack.c2.configFile), cfg['grpc-cert']);
    expect(verifyCertificate(stack.c2.ca.certFile, grpcCert, { ip: '127.0.0.1' })).toBeNull();
    expect(verifyCertificate(stack.c2.ca.certFile, grpcCert, { ip: '127.0.0.9' })).toMatch(/mismatch/i);
    expect(certificateSans(grpcCert)).toContain('IP Address:127.0.0.1');
  });

  it('captures its log in its own directory (JSON lines through to serving), not in /var/log', () => {
    const msgs = stack.c2.logLines().map((l) => String(l.msg));
    expect(msgs).toContain('database initialized');
    expect(msgs).toContain('connected to broker');
    expect(msgs.some((m) => /grpc server/i.test(m))).toBe(true);
    expect(stack.c2.logFile.startsWith(stack.c2.dir)).toBe(true);
  });

  it('creates on an empty database exactly the schema committed in lib/c2/db-schema.sql', () => {
    const live = dumpSchema(stack.postgres.url(stack.database));
    expect(compareSchemas(readCommittedC2Schema(), live)).toEqual({ missing: [], unexpected: [] });
    expect(readCommittedC2Schema()).toContain(pinnedC2Version());
  });

  it('manages clients and topics through the API, paging lists over 100 entries', async () => {
    const names = Array.from({ length: 230 }, (_, i) => `dev-${String(i).padStart(3, '0')}`);
    for (const n of names) await api.newClient(n, crypto.randomBytes(32));
    for (const t of ['plant/a/temp', 'plant/b/temp', 'alerts']) await api.newTopic(t);
    expect(await api.countClients()).toBe(230);
    expect((await api.listClients()).length).toBe(100);
    expect((await api.listClients({ offset: 200, count: 100 })).length).toBe(30);
    expect(new Set(await api.allClients())).toEqual(new Set(names));
    expect(new Set(await api.allClients(7))).toEqual(new Set(names));
    expect(new Set(await api.allTopics())).toEqual(new Set(['plant/a/temp', 'plant/b/temp', 'alerts']));
    expect(await api.countTopics()).toBe(3);

    for (const n of names.slice(0, 120)) await api.linkClientTopic(n, 'plant/a/temp');
    await api.linkClientTopic('dev-000', 'alerts');
    expect(await api.countClientsForTopic('plant/a/temp')).toBe(120);
    expect(new Set(await api.allClientsForTopic('plant/a/temp'))).toEqual(new Set(names.slice(0, 120)));
    expect(new Set(await api.allTopicsForClient('dev-000'))).toEqual(new Set(['plant/a/temp', 'alerts']));
    expect(await api.countTopicsForClient('dev-000')).toBe(2);

    await api.unlinkClientTopic('dev-000', 'alerts');
    expect(await api.allTopicsForClient('dev-000')).toEqual(['plant/a/temp']);
    await api.removeClient('dev-229');
    expect(await api.countClients()).toBe(229);
    await api.removeTopic('plant/b/temp');
    expect(await api.allTopics()).not.toContain('plant/b/temp');
  });

  it('round-trips client and topic names that need URL encoding (spaces, UTF-8, slashes)', async () => {
    await api.newTopic('plant/unit 7/temp');
    await api.newClient('capteur é 1', crypto.randomBytes(32));
    await api.linkClientTopic('capteur é 1', 'plant/unit 7/temp');
    expect(await api.allTopicsForClient('capteur é 1')).toEqual(['plant/unit 7/temp']);
    expect(await api.allClientsForTopic('plant/unit 7/temp')).toEqual(['capteur é 1']);
    expect(stack.postgres.psql(`select topic from topic_keys where topic like 'plant/unit%'`, stack.database).trim()).toBe('plant/unit 7/temp');
  });

  it('fails clearly on 4xx, naming the route and C2\'s message, without retrying', async () => {
    const err = await api.removeClient('no-such-device').catch((e) => e);
    expect(err).toBeInstanceOf(C2ApiError);
    expect(err.status).toBe(404);
    expect(err.message).toContain('DELETE /e4/client/no-such-device');
    expect(err.message).toMatch(/could not find client/i);
    const bad = await api.newClient('short-key', Buffer.alloc(5, 1)).catch((e) => e);
    expect(bad.status).toBe(400);
    expect(bad.message).toMatch(/key/i);
    // A route of the 2020 API that this C2 build does not serve.
    expect(await api.cryptoMode().catch((e) => e)).toBeInstanceOf(C2RouteMissingError);
  });

  it('restarts a C2 that exits during start-up (like a restart policy) and finally reports why, with its log', async () => {
    const deadPort = await freeLoopbackPort();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-c2-fail-'));
    try {
      const err = await startC2({
        dir, db: { host: stack.postgres.host, database: stack.database, username: 'postgres' }, passphrase: stack.passphrase,
        mqttBroker: `mqtt://127.0.0.1:${deadPort}`, startAttempts: 2,
      }).catch((e) => e);
      expect(err).toBeInstanceOf(Error);
      expect(err.message).toMatch(/did not start after 2 attempt/);
      expect(err.message).toMatch(/MQTT|connection refused/i);
      const log = fs.readFileSync(path.join(dir, 'c2.log'), 'utf8');
      expect(log.match(/E4: C2 back-end/g)).toHaveLength(2);
      expect(log).toContain('starting it again');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a server certificate from another CA instead of retrying', async () => {
    const logger = createMemoryLogger('c2-api');
    const other = createC2Api({ baseUrl: stack.c2.baseUrl, retries: 5, backoffMs: 1000, logger });
    const err = await other.countClients().catch((e) => e);
    other.close();
    expect(err).toBeInstanceOf(C2ApiError);
    expect(err.message).toMatch(/TLS/);
    expect(err.message).toMatch(/give the CA/);
    expect(logger.lines.filter((l) => l.event === 'c2_api_retry')).toEqual([]); // not retried
  });

  it('stores keys sealed under the passphrase: rows read from PostgreSQL open with it and fail clearly with another', async () => {
    const key = crypto.randomBytes(32);
    await api.newClient('sealed-device', key);
    await api.newTopic('sealed/topic');
    const row = stack.postgres.psql(`select encode(e4_id,'hex'), encode(key,'hex') from clients where name = 'sealed-device'`, stack.database).trim();
    const [idHex, sealedHex] = row.split('|');
    expect(idHex).toBe(clientIdFromName('sealed-device').toString('hex'));
    expect(sealedHex.length).toBe(96); // 16-byte tag + 32-byte key
    const dbKey = deriveDbKey(stack.passphrase);
    expect(openDbValue(dbKey, Buffer.from(sealedHex, 'hex'), 'clients.key').equals(key)).toBe(true);
    const topicSealed = stack.postgres.psql(`select encode(key,'hex') from topic_keys where topic = 'sealed/topic'`, stack.database).trim();
    expect(openDbValue(dbKey, Buffer.from(topicSealed, 'hex'), 'topic_keys.key')).toHaveLength(32);
    const wrong = deriveDbKey('not-the-passphrase-of-this-c2');
    expect(() => openDbValue(wrong, Buffer.from(sealedHex, 'hex'), 'clients.key')).toThrow(WrongPassphraseError);
  });
});

describe('C2 API client retries', () => {
  it('retries 503 with backoff and succeeds; gives up after the configured attempts', async () => {
    const { createCertificateAuthority, issueLeafCertificate } = await import('../../lib/c2/tls-material.ts');
    const os = await import('node:os');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-api-'));
    const ca = createCertificateAuthority({ dir });
    const leaf = issueLeafCertificate(ca, { dir, name: 'srv' });
    let hits = 0;
    let failFirst = 2;
    const srv = https.createServer({ cert: leaf.certPem, key: leaf.keyPem }, (req, res) => {
      hits++;
      if (hits <= failFirst) { res.writeHead(503); res.end('busy'); return; }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ count: '42' }));
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    const port = (srv.address() as { port: number }).port;
    try {
      const logger = createMemoryLogger('c2-api');
      const api = createC2Api({ baseUrl: `https://127.0.0.1:${port}`, ca: ca.certPem, retries: 4, backoffMs: 10, logger });
      expect(await api.countClients()).toBe(42);
      expect(hits).toBe(3);
      expect(logger.lines.filter((l) => l.event === 'c2_api_retry').map((l) => l.delayMs)).toEqual([10, 20]);
      hits = 0; failFirst = 100;
      const err = await api.countTopics().catch((e) => e);
      expect(err).toBeInstanceOf(C2ApiError);
      expect(err.message).toMatch(/gave up after 4 attempts/);
      expect(hits).toBe(4);
      api.close();
    } finally {
      srv.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
