import * as pulumi from '@pulumi/pulumi';
import * as docker from '@pulumi/docker';
import { renderEtcdConfig } from '../../lib/render/etcd-conf.ts';
import { renderPatroniConfig, renderPostBootstrapScript } from '../../lib/render/postgres-conf.ts';
import { renderPgBackRestConf, renderPgBackRestSecretsConf, pgBackRestSettingsOf, PGBACKREST_DEFAULTS } from '../../lib/render/pgbackrest-conf.ts';
import type { StackSettings } from '../../lib/settings/stack-settings.ts';
import { Placement, RESTART, memory, dropPrivilegesCommand, FAST_DNS_FAILURE, type Member } from '../placement.ts';

// HA profile PostgreSQL: etcd (odd member count) as Patroni's DCS, and Patroni members each on
// their own volume. Clients reach the current primary through HAProxy (GET /primary on :8008).

export interface PatroniClusterArgs {
  settings: StackSettings;
  placement: Placement;
  superuserPassword: pulumi.Output<string>;
  replicationPassword: pulumi.Output<string>;
  c2Password: pulumi.Output<string>;
  /** pgBackRest repository cipher passphrase (postgres.pitr.cipher). */
  pitrCipherPassphrase?: pulumi.Output<string>;
  extraDatabases: string[];
}

export const PATRONI_REST_PORT = 8008;
const PG_DATA = '/var/lib/postgresql/data/pgdata';

export class PatroniCluster extends pulumi.ComponentResource {
  readonly etcd: Member[];
  readonly members: Member[];
  readonly containers: docker.Container[] = [];

  constructor(name: string, args: PatroniClusterArgs, opts?: pulumi.ComponentResourceOptions) {
    super('e4ops:postgres:PatroniCluster', name, {}, opts);
    const { settings: s, placement: pl } = args;
    this.etcd = pl.members('etcd', s.etcd.nodes);
    const initialCluster = this.etcd.map((e) => ({ name: e.name, peerUrl: `http://${pl.address(e, 'etcd', 2380)}` }));
    const etcdContainers = this.etcd.map((e) => {
      const vol = new docker.Volume(`${e.name}-data`, { name: `e4ops-${e.name}-data` }, pl.opts(e, this, { retainOnDelete: true }));
      const conf = renderEtcdConfig({
        name: e.name, dataDir: '/var/lib/etcd',
        listenPeerUrl: 'http://0.0.0.0:2380', listenClientUrl: 'http://0.0.0.0:2379',
        advertisePeerUrl: `http://${pl.address(e, 'etcd', 2380)}`, advertiseClientUrl: `http://${pl.address(e, 'etcd', 2379)}`,
        initialCluster, clusterToken: `e4ops-${pulumi.getStack()}`,
        enableV2: s.etcd.api === 'etcd',
      });
      const c = new docker.Container(e.name, {
        name: e.name, hostname: e.name,
        image: pl.remoteImage(e, s.etcd.image),
        restart: RESTART,
        command: ['etcd', '--config-file', '/etc/etcd/etcd.yml'],
        uploads: [{ file: '/etc/etcd/etcd.yml', content: conf }],
        volumes: [{ volumeName: vol.name, containerPath: '/var/lib/etcd' }],
        networksAdvanced: pl.networks(e, false),
        ports: pl.peerPorts(e, 'etcd', [2379, 2380]),
        healthcheck: { tests: ['CMD', 'etcdctl', '--endpoints=http://127.0.0.1:2379', 'endpoint', 'health'], interval: '10s', timeout: '5s', retries: 3, startPeriod: '20s' },
        labels: [{ label: 'e4ops.service', value: 'etcd' }],
      }, pl.opts(e, this));
      this.containers.push(c);
      return c;
    });

    this.members = pl.members('pg', s.postgres.replicas);
    const etcdHosts = this.etcd.map((e) => pl.address(e, 'etcd', 2379));
    const postBootstrap = renderPostBootstrapScript({ database: s.postgres.database, username: s.postgres.username, extraDatabases: args.extraDatabases });
    // Internal networks are Docker bridges: allow the private ranges Docker picks, and the hosts.
    const clientNetworks = ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16'];
    const envs = pulumi.secret(pulumi.all([args.superuserPassword, args.replicationPassword, args.c2Password]).apply(([su, rep, c2]) => [
      `PATRONI_SUPERUSER_PASSWORD=${su}`, `PATRONI_REWIND_PASSWORD=${su}`, `PATRONI_REPLICATION_PASSWORD=${rep}`, `E4_DB_PASSWORD=${c2}`,
    ]));
    const pitr = s.postgres.pitr;
    // A posix repository every member on the host shares (multi-host: mount the same NFS path at repo.path).
    const repoVolume = pitr.enabled && pitr.repo.type === 'posix'
      ? new docker.Volume('pgbackrest-repo', { name: 'e4ops-pgbackrest-repo' }, { parent: this, retainOnDelete: true })
      : undefined;
    const pgbackrestUploads = pitr.enabled ? [
      { file: PGBACKREST_DEFAULTS.configFile, content: renderPgBackRestConf(pgBackRestSettingsOf(pitr, { path: PG_DATA })) },
      ...(pitr.cipher && args.pitrCipherPassphrase
        ? [{ file: `${PGBACKREST_DEFAULTS.configIncludePath}/e4ops-secrets.conf`, content: pulumi.secret(args.pitrCipherPassphrase.apply((p) => renderPgBackRestSecretsConf({ cipherPassphrase: p }))), permissions: '0600' }]
        : []),
    ] : [];
    for (const m of this.members) {
      const vol = new docker.Volume(`${m.name}-data`, { name: `e4ops-${m.name}-data` }, pl.opts(m, this, { retainOnDelete: true }));
      const conf = renderPatroniConfig({
        scope: 'e4', name: m.name,
        restApi: { listen: `0.0.0.0:${PATRONI_REST_PORT}`, connectAddress: pl.address(m, 'patroni', PATRONI_REST_PORT) },
        etcdHosts, etcdApi: s.etcd.api,
        ttlSeconds: s.postgres.failover.ttlSeconds, loopWaitSeconds: s.postgres.failover.loopWaitSeconds,
        retryTimeoutSeconds: s.postgres.failover.retryTimeoutSeconds, synchronousMode: s.postgres.failover.synchronousMode,
        postgres: {
          listen: '0.0.0.0:5432', connectAddress: pl.address(m, 'postgres', 5432),
          dataDir: PG_DATA, binDir: '/usr/lib/postgresql/15/bin', parameters: s.postgres.parameters, clientNetworks,
        },
        superuser: 'postgres', replicationUser: 'replicator', postBootstrap: '/etc/patroni/post-bootstrap.sh',
        ...(pitr.enabled ? { pitr: { stanza: pitr.stanza, archiveTimeoutSeconds: pitr.archiveTimeoutSeconds } } : {}),
      });
      this.containers.push(new docker.Container(m.name, {
        name: m.name, hostname: m.name,
        image: pl.builtImage(m, 'patroni', 'patroni.Dockerfile', { BASE_IMAGE: s.postgres.patroniImageBase }),
        restart: RESTART,
        // Uploads land owned by root (0600 secrets included): start as root, hand them to postgres, drop to it.
        user: 'root',
        command: dropPrivilegesCommand('postgres', ['/etc/patroni', '/etc/pgbackrest'], ['patroni', '/etc/patroni/patroni.yml']),
        envs,
        uploads: [
          { file: '/etc/patroni/patroni.yml', content: conf },
          { file: '/etc/patroni/post-bootstrap.sh', content: postBootstrap, permissions: '0755' },
          ...pgbackrestUploads,
        ],
        volumes: [
          { volumeName: vol.name, containerPath: '/var/lib/postgresql/data' },
          ...(repoVolume ? [{ volumeName: repoVolume.name, containerPath: pitr.repo.path }] : []),
        ],
        networksAdvanced: pl.networks(m, false),
        ports: pl.peerPorts(m, 'postgres', [5432, PATRONI_REST_PORT]),
        healthcheck: { tests: ['CMD', 'curl', '-fs', `http://127.0.0.1:${PATRONI_REST_PORT}/health`], interval: '10s', timeout: '5s', retries: 3, startPeriod: '60s' },
        shmSize: 256,
        // A member that is gone has no DNS name, and on an internal network the lookup waits for an
        // upstream that cannot answer (5 s x 2 by default): Patroni asks every member before it promotes.
        dnsOpts: FAST_DNS_FAILURE,
        labels: [{ label: 'e4ops.service', value: 'patroni' }],
        ...memory(s.postgres.memoryMb),
      }, pl.opts(m, this, { dependsOn: etcdContainers })));
    }
    this.registerOutputs({});
  }
}
