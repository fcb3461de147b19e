// One Patroni member of a throwaway two-member cluster on loopback, as the Patroni tests run it: its
// ports, data and socket dirs under the test's dir, and <dir>/<name>.yml from the stack's renderer.
import fs from 'node:fs';
import path from 'node:path';
import { renderPatroniConfig, type PatroniSettings } from '../../lib/render/postgres-conf.ts';
import { postgresBinDir } from '../../lib/servers/postgres.ts';
import { freeLoopbackPort } from '../../lib/ports.ts';

export interface PatroniTestMember { name: string; ip: string; pgPort: number; restPort: number; dataDir: string; socketDir: string; configFile: string }

export async function writePatroniTestMember(o: {
  dir: string; index: number; ip: string; etcdHostPort: string; postBootstrap: string;
  /** Settings that depend on the member (e.g. its pgBackRest config). */
  extra?: (m: PatroniTestMember) => Partial<PatroniSettings>;
}): Promise<PatroniTestMember> {
  const { dir, index, ip } = o;
  const name = `pg-${index}`;
  const m: PatroniTestMember = {
    name, ip, pgPort: await freeLoopbackPort(ip), restPort: await freeLoopbackPort(ip), dataDir: path.join(dir, `data${index}`),
    socketDir: path.join(dir, `sock${index}`), configFile: path.join(dir, `${name}.yml`),
  };
  fs.mkdirSync(m.socketDir);
  fs.writeFileSync(m.configFile, renderPatroniConfig({
    scope: 'e4', name,
    restApi: { listen: `${ip}:${m.restPort}`, connectAddress: `${ip}:${m.restPort}` },
    etcdHosts: [o.etcdHostPort], etcdApi: 'etcd',
    postgres: { listen: `${ip}:${m.pgPort}`, connectAddress: `${ip}:${m.pgPort}`, dataDir: m.dataDir, binDir: postgresBinDir(), clientNetworks: ['127.0.0.0/8'], parameters: { unix_socket_directories: m.socketDir, fsync: false } },
    superuser: 'postgres', replicationUser: 'replicator', postBootstrap: o.postBootstrap,
    ttlSeconds: 10, loopWaitSeconds: 2, retryTimeoutSeconds: 4,
    ...o.extra?.(m),
  }));
  return m;
}
