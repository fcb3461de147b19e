import * as pulumi from '@pulumi/pulumi';
import * as docker from '@pulumi/docker';
import { renderPostgresConf, renderPostBootstrapScript } from '../../lib/render/postgres-conf.ts';
import type { StackSettings } from '../../lib/settings/stack-settings.ts';
import { Placement, RESTART, memory, type Member } from '../placement.ts';

// Minimal profile: one PostgreSQL server on a named volume, on the internal network only.
// C2's role and database are created on first start by the same script Patroni runs in HA.

export interface PostgresServerArgs {
  settings: StackSettings;
  placement: Placement;
  superuserPassword: pulumi.Output<string>;
  c2Password: pulumi.Output<string>;
  extraDatabases: string[];
}

export class PostgresServer extends pulumi.ComponentResource {
  readonly member: Member;
  readonly container: docker.Container;
  readonly volume: docker.Volume;

  constructor(name: string, args: PostgresServerArgs, opts?: pulumi.ComponentResourceOptions) {
    super('e4ops:postgres:PostgresServer', name, {}, opts);
    const { settings: s, placement: pl } = args;
    this.member = pl.members('postgres', 1)[0];
    const m = this.member;
    this.volume = new docker.Volume(`${m.name}-data`, { name: `e4ops-${m.name}-data` }, pl.opts(m, this, { retainOnDelete: true }));
    const conf = renderPostgresConf({
      listenAddresses: '*',
      parameters: {
        data_directory: '/var/lib/postgresql/data/pgdata',
        hba_file: '/var/lib/postgresql/data/pgdata/pg_hba.conf',
        ident_file: '/var/lib/postgresql/data/pgdata/pg_ident.conf',
        ...s.postgres.parameters,
      },
    });
    const initScript = renderPostBootstrapScript({ database: s.postgres.database, username: s.postgres.username, extraDatabases: args.extraDatabases });
    this.container = new docker.Container(m.name, {
      name: m.name,
      hostname: m.name,
      image: pl.remoteImage(m, s.postgres.image),
      restart: RESTART,
      command: ['postgres', '-c', 'config_file=/etc/postgresql/e4ops.conf'],
      envs: pulumi.secret(pulumi.all([args.superuserPassword, args.c2Password]).apply(([su, c2]) => [
        `POSTGRES_PASSWORD=${su}`, 'PGDATA=/var/lib/postgresql/data/pgdata', `E4_DB_PASSWORD=${c2}`,
      ])),
      uploads: [
        { file: '/etc/postgresql/e4ops.conf', content: conf, permissions: '0644' },
        { file: '/etc/e4ops/post-bootstrap.sh', content: initScript, permissions: '0755' },
        // The image runs *.sh in this directory once, on an empty data directory, as user postgres.
        { file: '/docker-entrypoint-initdb.d/10-e4ops.sh', content: '#!/bin/sh\nsh /etc/e4ops/post-bootstrap.sh "postgresql:///postgres?host=/var/run/postgresql"\n', permissions: '0755' },
      ],
      volumes: [{ volumeName: this.volume.name, containerPath: '/var/lib/postgresql/data' }],
      networksAdvanced: pl.networks(m, false, ['pg-primary']),
      ports: pl.peerPorts(m, 'postgres', [5432]),
      healthcheck: { tests: ['CMD', 'pg_isready', '-U', 'postgres', '-h', '127.0.0.1'], interval: '10s', timeout: '5s', retries: 5, startPeriod: '30s' },
      shmSize: 256,
      labels: [{ label: 'e4ops.service', value: 'postgres' }],
      ...memory(s.postgres.memoryMb),
    }, pl.opts(m, this));
    this.registerOutputs({});
  }
}
