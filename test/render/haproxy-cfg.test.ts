import { describe, it, expect, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import https from 'node:https';
import { spawnSync } from 'node:child_process';
import { renderHaproxyCfg } from '../../lib/render/haproxy-cfg.ts';
import { startThrowawayPostgres, type ThrowawayPostgres } from '../../lib/servers/postgres.ts';
import { startThrowawayMosquitto } from '../../lib/servers/mosquitto.ts';
import mqtt from 'mqtt';
import { startDaemon, type Daemon } from '../../lib/servers/daemon.ts';
import { freeLoopbackPort, waitForTcp } from '../../lib/ports.ts';
import { createPgClient } from '../../lib/pg/pg-client.ts';

// haproxy -c accepts the rendered file, and a real HAProxy running it sends PostgreSQL clients to
// whichever member Patroni's REST API calls primary, and passes C2's TLS through untouched.
describe('rendered haproxy.cfg on the real HAProxy', () => {
  const stops: Array<() => Promise<void> | void> = [];
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-haproxy-'));
  afterAll(async () => {
    for (const s of stops.reverse()) await s();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('passes haproxy -c with container names as servers (resolved at run time)', () => {
    const cfg = renderHaproxyCfg({
      c2: { grpcBind: ':5555', httpBind: ':8888', healthPath: '/e4/clients/count', replicas: [0, 1].map((i) => ({ name: `c2-${i}`, grpcAddress: `c2-${i}:5555`, httpAddress: `c2-${i}:8888`, healthPort: 8888 })) },
      postgres: { bind: ':5432', members: [0, 1, 2].map((i) => ({ name: `pg-${i}`, address: `pg-${i}:5432`, checkPort: 8008 })) },
      mqtt: { bind: ':1883', nodes: [0, 1, 2].map((i) => ({ name: `emqx-${i}`, address: `emqx-${i}:1883` })) },
      statsBind: ':8404',
    });
    const file = path.join(tmp, 'names.cfg');
    fs.writeFileSync(file, cfg);
    const r = spawnSync('haproxy', ['-c', '-f', file], { encoding: 'utf8' });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    // The only acceptable warnings: names that do not resolve outside the container network.
    const warnings = (r.stdout + r.stderr).split('\n').filter((l) => l.includes('[WARNING]'));
    expect(warnings.filter((w) => !/could not resolve address/.test(w))).toEqual([]);
  });

  it('routes PostgreSQL to the Patroni primary and follows a failover; C2 TLS and MQTT pass through', async () => {
    // Two PostgreSQL servers and a fake Patroni REST endpoint per member.
    const members: Array<{ pgs: ThrowawayPostgres; restPort: number; primary: boolean }> = [];
    for (let i = 0; i < 2; i++) {
      const pgs = await startThrowawayPostgres();
      stops.push(() => pgs.stop());
      const m = { pgs, restPort: 0, primary: i === 0 };
      const rest = http.createServer((req, res) => {
        res.statusCode = req.url === '/primary' && m.primary ? 200 : 503;
        res.end();
      });
      await new Promise<void>((r) => rest.listen(0, '127.0.0.1', r));
      m.restPort = (rest.address() as { port: number }).port;
      stops.push(() => new Promise<void>((r) => { rest.close(() => r()); rest.closeAllConnections(); }));
      members.push(m);
    }
    // A fake C2 gateway with a self-signed RSA certificate.
    const key = path.join(tmp, 'c2.key');
    const crt = path.join(tmp, 'c2.crt');
    const gen = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', crt, '-days', '1', '-subj', '/CN=c2-0', '-addext', 'subjectAltName=IP:127.0.0.1'], { encoding: 'utf8' });
    expect(gen.status, gen.stderr).toBe(0);
    const c2 = https.createServer({ key: fs.readFileSync(key), cert: fs.readFileSync(crt) }, (req, res) => {
      res.setHeader('content-type', 'application/json');
      res.statusCode = req.url === '/e4/clients/count' ? 200 : 404;
      res.end(req.url === '/e4/clients/count' ? '{"count":"0"}' : '{}');
    });
    await new Promise<void>((r) => c2.listen(0, '127.0.0.1', r));
    stops.push(() => new Promise<void>((r) => { c2.close(() => r()); c2.closeAllConnections(); }));
    const c2Port = (c2.address() as { port: number }).port;

    const broker = await startThrowawayMosquitto();
    stops.push(() => broker.stop());
    const [pgPort, grpcPort, httpPort, statsPort, mqttPort] = await Promise.all([0, 1, 2, 3, 4].map(() => freeLoopbackPort()));
    const cfg = renderHaproxyCfg({
      c2: { grpcBind: `127.0.0.1:${grpcPort}`, httpBind: `127.0.0.1:${httpPort}`, healthPath: '/e4/clients/count', replicas: [{ name: 'c2-0', grpcAddress: `127.0.0.1:${c2Port}`, httpAddress: `127.0.0.1:${c2Port}`, healthPort: c2Port }] },
      postgres: { bind: `127.0.0.1:${pgPort}`, members: members.map((m, i) => ({ name: `pg-${i}`, address: `127.0.0.1:${m.pgs.port}`, checkPort: m.restPort })) },
      mqtt: { bind: `127.0.0.1:${mqttPort}`, nodes: [{ name: 'emqx-0', address: `127.0.0.1:${broker.port}` }] },
      statsBind: `127.0.0.1:${statsPort}`,
      resolver: '127.0.0.1:1',
      checkIntervalMs: 300,
    });
    const file = path.join(tmp, 'live.cfg');
    fs.writeFileSync(file, cfg);
    const hap: Daemon = startDaemon('haproxy', ['-db', '-f', file], path.join(tmp, 'haproxy.log'));
    stops.push(() => hap.stop());
    await waitForTcp("127.0.0.1", pgPort);

    const serverPort = async (): Promise<number | undefined> => {
      const c = createPgClient({ host: '127.0.0.1', port: pgPort, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 2000 });
      try {
        await c.connect();
        return Number((await c.query("select current_setting('port') as p")).rows[0].p);
      } catch { return undefined; } finally { await c.end().catch(() => {}); }
    };
    const waitForPrimary = async (want: number) => {
      const deadline = Date.now() + 40_000;
      const seen: Array<number | undefined> = [];
      while (Date.now() < deadline) {
        const got = await serverPort();
        seen.push(got);
        // Both members must have been checked: require the answer twice in a row.
        if (got === want && seen.at(-2) === want) return;
        await new Promise((r) => setTimeout(r, 500));
      }
      throw new Error(`HAProxy never routed to port ${want}; saw ${seen.slice(-10).join(',')}\n${hap.tail()}`);
    };
    await waitForPrimary(members[0].pgs.port);
    // Failover: Patroni now reports member 1 as primary.
    members[0].primary = false;
    members[1].primary = true;
    await waitForPrimary(members[1].pgs.port);

    // TLS passthrough: the client sees C2's own certificate and body.
    const body = await new Promise<{ cn: string; text: string }>((resolve, reject) => {
      https.get({ host: '127.0.0.1', port: httpPort, path: '/e4/clients/count', rejectUnauthorized: false }, (res) => {
        const cert = (res.socket as import('node:tls').TLSSocket).getPeerCertificate();
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => resolve({ cn: String(cert.subject?.CN), text }));
      }).on('error', reject);
    });
    expect(body.cn).toBe("c2-0");
    expect(JSON.parse(body.text).count).toBe('0');

    // MQTT through the balancer: a retained QoS 2 command published via HAProxy reaches a device.
    const pub = await mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, { clientId: 'e4c2-0' });
    await pub.publishAsync('e4/00ff', Buffer.from([3]), { qos: 2, retain: true });
    await pub.endAsync();
    const sub = await mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, { clientId: 'device' });
    const got = new Promise<Buffer>((resolve) => sub.on('message', (_t, m) => resolve(m)));
    await sub.subscribeAsync('e4/00ff', { qos: 2 });
    expect([...(await got)]).toEqual([3]);
    await sub.endAsync();

    // HAProxy's own Prometheus endpoint answers.
    const metrics = await (await fetch(`http://127.0.0.1:${statsPort}/metrics`)).text();
    expect(metrics).toMatch(/haproxy_backend_status\{proxy="postgres_primary"/);
  });
});
