// A throwaway one-member etcd on random loopback ports, from the stack's own etcd renderer
// (Patroni tests and drills need a DCS; the stacks run three members from the same renderer).
import fs from 'node:fs';
import path from 'node:path';
import { renderEtcdConfig } from '../render/etcd-conf.ts';
import { startDaemon, type Daemon } from './daemon.ts';
import { freeLoopbackPort, waitForTcp } from '../ports.ts';

export interface ThrowawayEtcd {
  daemon: Daemon;
  /** host:port for Patroni's etcd.hosts. */
  clientHostPort: string;
}

/** Start etcd with its config and data under `dir`; resolves once its client port answers. */
export async function startThrowawayEtcd(dir: string, clusterToken: string): Promise<ThrowawayEtcd> {
  const [peer, client] = [await freeLoopbackPort(), await freeLoopbackPort()];
  const configFile = path.join(dir, 'etcd.yml');
  fs.writeFileSync(configFile, renderEtcdConfig({
    name: 'etcd-0', dataDir: path.join(dir, 'etcd'), listenPeerUrl: `http://127.0.0.1:${peer}`, listenClientUrl: `http://127.0.0.1:${client}`,
    advertisePeerUrl: `http://127.0.0.1:${peer}`, advertiseClientUrl: `http://127.0.0.1:${client}`,
    initialCluster: [{ name: 'etcd-0', peerUrl: `http://127.0.0.1:${peer}` }], clusterToken, enableV2: true,
  }));
  const daemon = startDaemon('etcd', ['--config-file', configFile], path.join(dir, 'etcd.log'));
  try {
    await waitForTcp('127.0.0.1', client);
  } catch (e) {
    await daemon.stop('SIGKILL');
    throw new Error(`etcd did not answer on 127.0.0.1:${client}: ${(e as Error).message}\n${daemon.tail(10)}`);
  }
  return { daemon, clientHostPort: `127.0.0.1:${client}` };
}
