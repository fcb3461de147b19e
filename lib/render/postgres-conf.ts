import YAML from 'yaml';
import { pitrPostgresParameters, patroniPitrSections, type PitrPostgresSettings } from './pgbackrest-conf.ts';

// PostgreSQL settings for C2's database: postgresql.conf lines (minimal profile), pg_hba.conf, and
// the Patroni member configuration (HA profile). Passwords never appear in these files: Patroni
// reads PATRONI_SUPERUSER_PASSWORD / PATRONI_REPLICATION_PASSWORD from the environment.

export type PgValue = string | number | boolean;

/** Settings every C2 database gets; operator parameters override them. */
export const C2_POSTGRES_PARAMETERS: Record<string, PgValue> = {
  max_connections: 200,
  password_encryption: 'scram-sha-256',
  wal_level: 'replica',
  max_wal_senders: 10,
  max_replication_slots: 10,
  hot_standby: true,
  wal_keep_size: '512MB',
  log_min_duration_statement: 1000,
  log_line_prefix: '%m [%p] %q%u@%d ',
  log_connections: true,
  log_disconnections: true,
};

function pgValue(v: PgValue): string {
  if (typeof v === 'boolean') return v ? 'on' : 'off';
  if (typeof v === 'number') return String(v);
  return `'${v.replace(/'/g, "''")}'`;
}

export interface PostgresConfSettings {
  listenAddresses?: string;
  port?: number;
  parameters?: Record<string, PgValue>;
  /** Continuous WAL archiving to pgBackRest (point-in-time recovery); off when absent. */
  pitr?: PitrPostgresSettings;
}

/** postgresql.conf text (include it or append it to the server's file). Pure. */
export function renderPostgresConf(s: PostgresConfSettings = {}): string {
  const params: Record<string, PgValue> = {
    ...(s.listenAddresses !== undefined ? { listen_addresses: s.listenAddresses } : {}),
    ...(s.port !== undefined ? { port: s.port } : {}),
    ...C2_POSTGRES_PARAMETERS,
    ...(s.pitr ? pitrPostgresParameters(s.pitr) : {}),
    ...s.parameters,
  };
  for (const k of Object.keys(params)) {
    if (!/^[a-z_][a-z0-9_.]*$/.test(k)) throw new Error(`postgres parameter "${k}": not a valid setting name`);
  }
  return ['# Rendered by e4ops (lib/render/postgres-conf.ts); edits are overwritten.',
    ...Object.entries(params).map(([k, v]) => `${k} = ${pgValue(v)}`)].join('\n') + '\n';
}

export interface PgHbaSettings {
  /** Networks (CIDR) allowed to connect with a password. */
  clientNetworks: string[];
  replicationUser?: string;
}

/** pg_hba.conf lines: local socket trust for the server's own OS user, scram over the network. Pure. */
export function pgHbaLines(s: PgHbaSettings): string[] {
  const lines = ['local all all trust'];
  for (const net of s.clientNetworks) {
    lines.push(`host all all ${net} scram-sha-256`);
    if (s.replicationUser) lines.push(`host replication ${s.replicationUser} ${net} scram-sha-256`);
  }
  return lines;
}

export interface PatroniSettings {
  /** Cluster name (same on every member). */
  scope: string;
  /** This member's name (unique). */
  name: string;
  restApi: { listen: string; connectAddress: string };
  /** etcd client endpoints, host:port. */
  etcdHosts: string[];
  /** etcd API Patroni speaks: etcd3 (default, the stacks) or etcd (v2). */
  etcdApi?: 'etcd3' | 'etcd';
  postgres: {
    listen: string;
    connectAddress: string;
    dataDir: string;
    binDir: string;
    parameters?: Record<string, PgValue>;
    clientNetworks: string[];
  };
  superuser: string;
  replicationUser: string;
  /** Script run once on the first primary (creates C2's role and database). */
  postBootstrap?: string;
  /** Seconds of leader lease (failover happens within about this long); needs loopWait + 2 * retryTimeout <= ttl. */
  ttlSeconds?: number;
  loopWaitSeconds?: number;
  retryTimeoutSeconds?: number;
  maximumLagOnFailoverBytes?: number;
  /** Commits wait for one synchronous standby, and only it can be promoted (no acknowledged write lost). */
  synchronousMode?: boolean;
  /** Continuous WAL archiving to pgBackRest from the leader, and new replicas restored from the repository. */
  pitr?: PitrPostgresSettings;
}

/** patroni.yml for one member. Pure. */
export function renderPatroniConfig(s: PatroniSettings): string {
  if (!s.etcdHosts.length) throw new Error('patroni etcdHosts: empty; Patroni needs the etcd cluster to elect a leader');
  const ttl = s.ttlSeconds ?? 30;
  if ((s.loopWaitSeconds ?? 10) + 2 * (s.retryTimeoutSeconds ?? 10) > ttl) {
    throw new Error(`patroni ttlSeconds ${ttl}: must be at least loopWaitSeconds + 2 * retryTimeoutSeconds`);
  }
  // Patroni reaches its own PostgreSQL over TCP on 127.0.0.1 (listen 0.0.0.0, no unix socket): without
  // this line bootstrap fails with "no pg_hba.conf entry for host 127.0.0.1" (seen on a real engine).
  const hba = pgHbaLines({ clientNetworks: [...new Set(['127.0.0.1/32', ...s.postgres.clientNetworks])], replicationUser: s.replicationUser });
  const pitr = s.pitr ? patroniPitrSections(s.pitr) : undefined;
  const doc = {
    scope: s.scope,
    name: s.name,
    restapi: { listen: s.restApi.listen, connect_address: s.restApi.connectAddress },
    [s.etcdApi ?? 'etcd3']: { hosts: s.etcdHosts },
    bootstrap: {
      dcs: {
        ttl,
        loop_wait: s.loopWaitSeconds ?? 10,
        retry_timeout: s.retryTimeoutSeconds ?? 10,
        maximum_lag_on_failover: s.maximumLagOnFailoverBytes ?? 1_048_576,
        // Not strict: a primary whose standbys are all gone keeps accepting writes (availability first).
        ...(s.synchronousMode ? { synchronous_mode: true, synchronous_mode_strict: false } : {}),
        postgresql: {
          use_pg_rewind: true,
          use_slots: true,
          // archive_mode=on archives on the leader only: a member in recovery never runs archive_command.
          parameters: { ...C2_POSTGRES_PARAMETERS, ...pitr?.parameters, ...s.postgres.parameters },
        },
      },
      initdb: [{ encoding: 'UTF8' }, { locale: 'C.UTF-8' }, 'data-checksums'],
      pg_hba: [...hba],
      ...(s.postBootstrap ? { post_bootstrap: s.postBootstrap } : {}),
    },
    postgresql: {
      listen: s.postgres.listen,
      connect_address: s.postgres.connectAddress,
      data_dir: s.postgres.dataDir,
      bin_dir: s.postgres.binDir,
      pg_hba: hba,
      // A new or rebuilt replica clones the primary right away instead of waiting for a spread checkpoint.
      basebackup: [{ checkpoint: 'fast' }],
      // With PITR a new member restores from the repository (no load on the leader) and replays WAL from it.
      ...(pitr ? { create_replica_methods: pitr.createReplicaMethods, pgbackrest: pitr.pgbackrest, recovery_conf: pitr.recoveryConf } : {}),
      // Passwords come from PATRONI_SUPERUSER_PASSWORD / PATRONI_REPLICATION_PASSWORD / PATRONI_REWIND_PASSWORD.
      authentication: {
        superuser: { username: s.superuser },
        replication: { username: s.replicationUser },
        rewind: { username: s.superuser },
      },
    },
    tags: { nofailover: false, noloadbalance: false, clonefrom: false, nosync: false },
  };
  return '# Rendered by e4ops (lib/render/postgres-conf.ts); edits are overwritten.\n' + YAML.stringify(doc);
}

/** Shell script Patroni runs once after bootstrap: C2's role and database. Password from E4_DB_PASSWORD. */
export function renderPostBootstrapScript(s: { database: string; username: string; extraDatabases?: string[] }): string {
  const ident = (n: string) => {
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(n)) throw new Error(`postgres identifier "${n}": use lowercase letters, digits and _`);
    return n;
  };
  const user = ident(s.username);
  const dbs = [s.database, ...(s.extraDatabases ?? [])].map(ident);
  return [
    '#!/bin/sh',
    '# Rendered by e4ops (lib/render/postgres-conf.ts). Patroni passes the superuser connection URL as $1.',
    'set -eu',
    ': "${E4_DB_PASSWORD:?E4_DB_PASSWORD is not set}"',
    `psql -v ON_ERROR_STOP=1 -v pw="$E4_DB_PASSWORD" "$1" <<'SQL'`,
    `SELECT format('CREATE ROLE ${user} LOGIN PASSWORD %L', :'pw') \\gexec`,
    ...dbs.map((d) => `CREATE DATABASE ${d} OWNER ${user};`),
    'SQL',
    '',
  ].join('\n');
}
