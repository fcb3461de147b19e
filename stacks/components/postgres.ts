import * as pulumi from '@pulumi/pulumi';
import * as docker from '@pulumi/docker';
import { renderPostgresConf, renderPostBootstrapScript } from '../../lib/render/postgres-conf.ts';
import { renderPgBackRestConf, renderPgBackRestSecretsConf, pgBackRestSettingsOf, PGBACKREST_DEFAULTS } from '../../lib/render/pgbackrest-conf.ts';
import type { StackSettings } from '../../lib/settings/stack-settings.ts';
import { Placement, RESTART, memory, type Member } from '../placement.ts';

// Minimal profile: one PostgreSQL server on a named volume, on the internal network only.
// C2's role and database are created on first start by the same script Patroni runs in HA.

export interface PostgresServerArgs {
  settings: StackSettings;
  placement: Placement;
  superuserPassword: pulumi.Output<string>;
  c2Password: pulumi.Output<string>;
  /** pgBackRest repository cipher passphrase (postgres.pitr.cipher). */
  pitrCipherPassphrase?: pulumi.Output<string>;
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
    const pitr = s.postgres.pitr;
    const conf = renderPostgresConf({
      listenAddresses: '*',
      ...(pitr.enabled ? { pitr: { stanza: pitr.stanza, archiveTimeoutSeconds: pitr.archiveTimeoutSeconds } } : {}),
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
      // With PITR the image needs pgBackRest: built on postgres.image (stacks/docker/postgres-pitr.Dockerfile).
      image: pitr.enabled ? pl.builtImage(m, 'postgres-pitr', 'postgres-pitr.Dockerfile', { BASE_IMAGE: s.postgres.image }) : pl.remoteImage(m, s.postgres.image),
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
        ...(pitr.enabled ? [{ file: PGBACKREST_DEFAULTS.configFile, content: renderPgBackRestConf(pgBackRestSettingsOf(pitr, { path: '/var/lib/postgresql/data/pgdata' })) }] : []),
        ...(pitr.enabled && pitr.cipher && args.pitrCipherPassphrase
          ? [{ file: `${PGBACKREST_DEFAULTS.configIncludePath}/e4ops-secrets.conf`, content: pulumi.secret(args.pitrCipherPassphrase.apply((p) => renderPgBackRestSecretsConf({ cipherPassphrase: p }))), permissions: '0600' }]
          : []),
      ],
      volumes: [
        { volumeName: this.volume.name, containerPath: '/var/lib/postgresql/data' },
        ...(pitr.enabled && pitr.repo.type === 'posix' ? [{ volumeName: new docker.Volume(`${m.name}-pgbackrest`, { name: `e4ops-${m.name}-pgbackrest` }, pl.opts(m, this, { retainOnDelete: true })).name, containerPath: pitr.repo.path }] : []),
      ],
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
