import { describe, it, expect, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { renderEtcdConfig } from '../../lib/render/etcd-conf.ts';
import { renderPatroniConfig } from '../../lib/render/postgres-conf.ts';
import { startDaemon, type Daemon } from '../../lib/servers/daemon.ts';
import { freeLoopbackPort } from '../../lib/ports.ts';
import { postgresBinDir } from '../../lib/servers/postgres.ts';

// The real etcd (Debian's etcd-server) starts a 3-member cluster from rendered member configs on
// loopback, and `patroni --validate-config` (Debian's Patroni 3.0) accepts the rendered member
// config pointed at it. Patroni's validator dials etcd, so a stopped cluster makes it fail.
describe('rendered etcd and Patroni configs on the real programs', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-etcd-'));
  const daemons: Daemon[] = [];
  afterAll(async () => {
    for (const d of daemons) await d.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  });
  let clientUrls: string[] = [];

  it('three etcd members form a healthy cluster from the rendered configs', async () => {
    const members = [];
    for (let i = 0; i < 3; i++) members.push({ name: `etcd-${i}`, peer: await freeLoopbackPort(), client: await freeLoopbackPort() });
    const initialCluster = members.map((m) => ({ name: m.name, peerUrl: `http://127.0.0.1:${m.peer}` }));
    for (const m of members) {
      const file = path.join(tmp, `${m.name}.yml`);
      fs.writeFileSync(file, renderEtcdConfig({
        name: m.name, dataDir: path.join(tmp, m.name),
        listenPeerUrl: `http://127.0.0.1:${m.peer}`, listenClientUrl: `http://127.0.0.1:${m.client}`,
        advertisePeerUrl: `http://127.0.0.1:${m.peer}`, advertiseClientUrl: `http://127.0.0.1:${m.client}`,
        initialCluster, clusterToken: 'e4ops-test',
      }));
      daemons.push(startDaemon('etcd', ['--config-file', file], path.join(tmp, `${m.name}.log`)));
    }
    clientUrls = members.map((m) => `127.0.0.1:${m.client}`);
    const deadline = Date.now() + 30_000;
    let health = '';
    while (Date.now() < deadline) {
      try {
        health = await (await fetch(`http://${clientUrls[0]}/health`)).text();
        if (JSON.parse(health).health === 'true') break;
      } catch { /* not up yet */ }
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(JSON.parse(health).health, daemons[0].tail()).toBe('true');
    // Every member sees a leader, which needs a quorum of the three: the cluster really formed.
    for (const u of clientUrls) {
      const metrics = await (await fetch(`http://${u}/metrics`)).text();
      expect(metrics).toMatch(/^etcd_server_has_leader 1$/m);
      expect(metrics).toMatch(/^etcd_server_id\{.*\} 1$/m);
    }
  });

  function patroniConf(etcdHosts: string[], pgPort: number): string {
    const file = path.join(tmp, `patroni-${pgPort}.yml`);
    fs.mkdirSync(path.join(tmp, 'pgdata'), { recursive: true });
    fs.writeFileSync(file, renderPatroniConfig({
      scope: 'e4', name: 'pg-0',
      // Patroni refuses loopback connect addresses (other members could not dial them): 127.0.0.2 is
      // still this machine but not "127.0.0.1".
      restApi: { listen: '127.0.0.2:8008', connectAddress: '127.0.0.2:8008' },
      etcdHosts,
      postgres: { listen: `127.0.0.2:${pgPort}`, connectAddress: `127.0.0.2:${pgPort}`, dataDir: path.join(tmp, 'pgdata'), binDir: postgresBinDir(), clientNetworks: ['10.0.0.0/8'] },
      superuser: 'postgres', replicationUser: 'replicator', postBootstrap: '/etc/patroni/post-bootstrap.sh',
    }));
    return file;
  }

  it('patroni --validate-config accepts the member config against the live etcd', async () => {
    const pgPort = await freeLoopbackPort('127.0.0.2');
    const r = spawnSync('patroni', ['--validate-config', patroniConf(clientUrls, pgPort)], { encoding: 'utf8' });
    expect(r.status, r.stdout + r.stderr).toBe(0);
  });

  it('patroni --validate-config fails once etcd is gone (the check is real)', async () => {
    for (const d of daemons) await d.stop();
    const pgPort = await freeLoopbackPort('127.0.0.2');
    const r = spawnSync('patroni', ['--validate-config', patroniConf(clientUrls, pgPort)], { encoding: 'utf8' });
    expect(r.status).not.toBe(0);
    expect(r.stdout + r.stderr).toMatch(/etcd3\.hosts/);
  });
});
