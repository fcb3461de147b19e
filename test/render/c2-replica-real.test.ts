import { describe, it, expect, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import https from 'node:https';
import { renderC2Config } from '../../lib/render/c2-config.ts';
import { c2ReplicaConfigSettings, c2CertificateSans, C2_CERT_FILE, C2_KEY_FILE, C2_HEALTH_PATH } from '../../lib/render/c2-replica.ts';
import { renderMosquittoConf, renderMosquittoPasswordFile } from '../../lib/render/mosquitto-conf.ts';
import { validateStackSettings } from '../../lib/settings/stack-settings.ts';
import { startThrowawayPostgres, type ThrowawayPostgres } from '../../lib/servers/postgres.ts';
import { startThrowawayMosquitto, type ThrowawayMosquitto } from '../../lib/servers/mosquitto.ts';
import { asUser, chownTo, startDaemon, type Daemon } from '../../lib/servers/daemon.ts';
import { c2BinaryAvailable, c2BinaryDir, pickLoopbackHostFor5432 } from '../../lib/servers/c2.ts';
import { createCertificateAuthority, issueLeafCertificate, type CertificateAuthority } from '../../lib/c2/tls-material.ts';
import { freeLoopbackPort } from '../../lib/ports.ts';

// The real C2 (scripts/build-c2.sh) starts on exactly the config.yaml, certificate SANs, E4C2_* env
// and broker password file a stack replica gets, and its HTTPS gateway reaches gRPC through the
// 127.0.0.1 SAN. Only the listen ports move (the test cannot take 5555/8888).
describe.skipIf(!c2BinaryAvailable())('real C2 on the config a stack replica gets', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-c2replica-'));
  fs.chmodSync(tmp, 0o755); // C2 runs as nobody and must reach its configs below
  const stops: Array<() => Promise<void>> = [];
  afterAll(async () => {
    for (const s of stops.reverse()) await s();
    if (!process.env.E4OPS_KEEP_TMP) fs.rmSync(tmp, { recursive: true, force: true });
  });
  const settings = validateStackSettings({ profile: 'minimal' });
  const brokerPassword = 'broker-password-for-c2';
  const DB_PASSWORD = 'db-password-from-env';
  let pg: ThrowawayPostgres;
  let broker: ThrowawayMosquitto;
  let ca: CertificateAuthority;

  async function startReplica(name: string, sans: { dnsNames: string[]; ipAddresses: string[] }) {
    const dir = path.join(tmp, name);
    const configs = path.join(dir, 'configs');
    fs.mkdirSync(path.join(dir, 'bin'), { recursive: true });
    fs.mkdirSync(configs, { recursive: true });
    const leaf = issueLeafCertificate(ca, { dir: path.join(tmp, `${name}-tls`), name, commonName: name, ...sans });
    fs.copyFileSync(leaf.certFile, path.join(configs, C2_CERT_FILE));
    fs.copyFileSync(leaf.keyFile, path.join(configs, C2_KEY_FILE));
    const [grpcPort, httpPort] = [await freeLoopbackPort(), await freeLoopbackPort()];
    fs.writeFileSync(path.join(configs, 'config.yaml'), renderC2Config(c2ReplicaConfigSettings(settings, 0, {
      dbHost: pg.host, brokerUrl: `tcp://127.0.0.1:${broker.port}`, brokerPassword,
      grpcHostPort: `127.0.0.1:${grpcPort}`, httpHostPort: `127.0.0.1:${httpPort}`,
    })));
    fs.copyFileSync(path.join(c2BinaryDir(), 'c2'), path.join(dir, 'bin', 'c2'));
    fs.chmodSync(path.join(dir, 'bin', 'c2'), 0o755);
    chownTo(dir, 'nobody');
    const daemon: Daemon = startDaemon(path.join(dir, 'bin', 'c2'), [], path.join(tmp, `${name}.log`), {
      cwd: dir, ...asUser('nobody'),
      env: { PATH: process.env.PATH, HOME: dir, E4C2_DB_PASSWORD: DB_PASSWORD, E4C2_DB_ENCRYPTION_PASSPHRASE: 'a passphrase of more than 16 bytes' },
    });
    stops.push(() => daemon.stop());
    return { daemon, base: `https://127.0.0.1:${httpPort}` };
  }

  // The gateway's own certificate is checked against the CA; its host name only when asked (the
  // no-SAN replica's certificate does not name 127.0.0.1 on purpose).
  let checkHostName = true;
  const get = (url: string) => new Promise<{ status: number; body: string } | null>((resolve) => {
    const req = https.get(url, { ca: ca.certPem, timeout: 3000, ...(checkHostName ? {} : { checkServerIdentity: () => undefined }) }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(null));
  });
  async function poll(url: string, ok: (r: { status: number; body: string }) => boolean, ms = 30_000) {
    const deadline = Date.now() + ms;
    let last: { status: number; body: string } | null = null;
    while (Date.now() < deadline) {
      last = await get(url);
      if (last && ok(last)) return last;
      await new Promise((r) => setTimeout(r, 250));
    }
    return last;
  }

  it('serves the API (gateway → gRPC over the 127.0.0.1 SAN → PostgreSQL) and logs in to the broker as c2', async () => {
    pg = await startThrowawayPostgres({ host: await pickLoopbackHostFor5432(), port: 5432 });
    stops.push(() => pg.stop());
    pg.psql(`create role ${settings.postgres.username} login password '${DB_PASSWORD}'`);
    pg.psql(`create database ${settings.postgres.database} owner ${settings.postgres.username}`);
    // C2's user must log in with the password (first pg_hba line wins): proves E4C2_DB_PASSWORD reaches C2.
    const hba = path.join(pg.dataDir, 'pg_hba.conf');
    fs.writeFileSync(hba, `host all ${settings.postgres.username} 127.0.0.0/8 scram-sha-256\n${fs.readFileSync(hba, 'utf8')}`);
    pg.psql('select pg_reload_conf()');
    const state = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-c2replica-mq-'));
    stops.push(async () => fs.rmSync(state, { recursive: true, force: true }));
    fs.writeFileSync(path.join(state, 'passwd'), renderMosquittoPasswordFile([{ username: 'c2', password: brokerPassword }]));
    chownTo(state, 'mosquitto');
    broker = await startThrowawayMosquitto({ confText: renderMosquittoConf({ listeners: [{ port: '{{PORT}}', address: '{{HOST}}' }], persistenceDir: state, allowAnonymous: false, passwordFile: path.join(state, 'passwd') }) });
    stops.push(() => broker.stop());
    ca = createCertificateAuthority({ dir: path.join(tmp, 'ca') });

    const c2 = await startReplica('c2-0', c2CertificateSans('c2-0'));
    // The stack's health check path: 200 once gateway -> gRPC (verified via the 127.0.0.1 SAN) -> DB work.
    const count = await poll(`${c2.base}${C2_HEALTH_PATH}`, (r) => r.status === 200);
    expect(count?.status, c2.daemon.tail(30)).toBe(200);
    expect(JSON.parse(count!.body)).toHaveProperty('count');
    // Why the stack does not use /e4/health-check: this C2 build has no such route.
    const health = await get(`${c2.base}/e4/health-check`);
    if (health?.status !== 200) expect(health?.status).toBe(404);
    // C2 logged in to the broker (anonymous refused; only the rendered password file admits it) under its replica id.
    const lines = fs.readFileSync(c2.daemon.logFile, 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
    expect(lines.find((l) => l.msg === 'mqtt parameters')).toMatchObject({ id: 'e4c2-0', username: 'c2' });
    expect(lines.some((l) => l.msg === 'connected to broker')).toBe(true);
    // DB password and passphrase came from the environment: the file has neither.
    const text = fs.readFileSync(path.join(tmp, 'c2-0', 'configs', 'config.yaml'), 'utf8');
    expect(text).not.toMatch(/db-password|db-encryption-passphrase/);
    await c2.daemon.stop();
  });

  it('without the 127.0.0.1 SAN the gateway cannot reach gRPC (the SAN rule is real)', async () => {
    checkHostName = false;
    const c2 = await startReplica('c2-nosan', { dnsNames: ['c2-nosan'], ipAddresses: [] });
    const r = await poll(`${c2.base}${C2_HEALTH_PATH}`, (x) => x.status >= 500, 15_000);
    expect(r?.status, c2.daemon.tail(20)).toBeGreaterThanOrEqual(500);
    expect(r?.body ?? '').toMatch(/certificate|x509|transport/i);
  });
});
