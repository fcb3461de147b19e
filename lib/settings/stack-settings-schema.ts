// The ONE JSON Schema for a stack's settings (Pulumi config key `e4ops:settings`). Every key is
// listed; unknown keys are errors (additionalProperties: false everywhere). Defaults that do not
// depend on the profile live here; profile-dependent defaults (replica and node counts, which
// optional services are on) live in profile-defaults.ts and are applied before this schema.
// Secrets are NOT part of this object: they are separate Pulumi secret config keys (see SECRET_KEYS).

import { ALERT_DEFAULTS, ELASTICSEARCH_INDEX_DEFAULTS } from './monitoring-defaults.ts';

const image = (def: string, description: string) => ({ type: 'string', minLength: 1, pattern: '^[^\\s]+$', default: def, description });
const memoryMb = { type: 'integer', minimum: 64, maximum: 1_048_576, description: 'Memory limit in MiB (docker --memory); unset = no limit' };
const ipv4 = { type: 'string', format: 'ipv4' };
const port = { type: 'integer', minimum: 1, maximum: 65535 };
const boolFalse = { type: 'boolean', default: false };

export const STACK_SETTINGS_SCHEMA = {
  $id: 'https://e4ops.local/stack-settings.schema.json',
  title: 'e4ops stack settings (Pulumi config key e4ops:settings)',
  type: 'object',
  additionalProperties: false,
  required: ['profile'],
  properties: {
    profile: { enum: ['minimal', 'ha'], description: 'minimal: one of everything on one host; ha: replicated services, spread over hosts' },
    hosts: {
      type: 'array',
      minItems: 1,
      description: 'Docker hosts; one docker.Provider each. Replicas are placed round-robin in this order.',
      default: [{ name: 'local', url: 'unix:///var/run/docker.sock' }],
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'url'],
        properties: {
          name: { type: 'string', pattern: '^[a-z][a-z0-9-]{0,30}$' },
          url: { type: 'string', pattern: '^(unix|ssh|tcp)://\\S+$', description: 'Docker endpoint: unix:///var/run/docker.sock, ssh://user@host, tcp://host:2376' },
          address: { ...ipv4, description: 'Private address the other hosts reach this one on (needed with more than one host)' },
        },
      },
    },
    publish: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'The only published ports: the C2 API (gRPC + HTTPS gateway) and the MQTT broker',
      properties: {
        c2Address: { ...ipv4, default: '127.0.0.1', description: 'Bind address of the C2 API ports' },
        grpcPort: { ...port, default: 5555 },
        httpPort: { ...port, default: 8888 },
        brokerAddress: { ...ipv4, default: '127.0.0.1', description: 'Bind address of the MQTT listener' },
        brokerPort: { ...port, default: 1883 },
      },
    },
    c2: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        replicas: { type: 'integer', minimum: 1, maximum: 9 },
        image: { type: 'string', pattern: '^[^\\s]+$', description: 'Use this prebuilt image instead of building from the Go module' },
        goModuleVersion: { type: 'string', pattern: '^(latest|v[0-9][^\\s]*|[0-9a-f]{7,40})$', default: 'v0.0.0-20190913090940-33c5be11fcd2', description: 'Version of github.com/teserakt-io/c2 to build (same pin as test/c2-build/go.mod)' },
        cryptoMode: { enum: ['symkey', 'pubkey'], default: 'symkey' },
        logLevel: { enum: ['debug', 'info', 'warn', 'error'], default: 'info' },
        mqttIdPrefix: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,16}$', default: 'e4c2', description: 'Replica i gets MQTT client id PREFIX-i' },
        messageLogging: { type: 'boolean', description: 'Index every MQTT message into Elasticsearch (one replica only); default: on when elasticsearch.enabled' },
        dbSecureConnection: { enum: ['enabled', 'selfsigned', 'insecure'], default: 'insecure', description: 'Postgres TLS (internal network: insecure = sslmode disable)' },
        memoryMb,
      },
    },
    postgres: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        image: image('postgres:15-bookworm', 'Minimal profile PostgreSQL image'),
        patroniImageBase: image('postgres:15-bookworm', 'Base for the Patroni image built from stacks/docker/patroni.Dockerfile (HA)'),
        replicas: { type: 'integer', minimum: 1, maximum: 7, description: 'Patroni members (HA)' },
        database: { type: 'string', pattern: '^[a-z_][a-z0-9_]{0,62}$', default: 'e4' },
        username: { type: 'string', pattern: '^[a-z_][a-z0-9_]{0,62}$', default: 'e4' },
        parameters: {
          type: 'object',
          default: {},
          description: 'Extra postgresql.conf parameters',
          propertyNames: { pattern: '^[a-z_][a-z0-9_.]*$' },
          additionalProperties: { type: ['string', 'number', 'boolean'] },
        },
        exporterImage: image('quay.io/prometheuscommunity/postgres-exporter:v0.15.0', 'postgres_exporter'),
        memoryMb,
        failover: {
          type: 'object',
          additionalProperties: false,
          default: {},
          description: 'Patroni leader lease and replication mode (HA). A dead primary is replaced within about ttlSeconds + loopWaitSeconds; shorter leases fail over sooner but a stalled etcd or host then demotes a healthy primary. See docs/operate/high-availability.md',
          properties: {
            ttlSeconds: { type: 'integer', minimum: 5, maximum: 600, default: 10, description: 'Leader lease in etcd; must be at least loopWaitSeconds + 2 * retryTimeoutSeconds' },
            loopWaitSeconds: { type: 'integer', minimum: 1, maximum: 60, default: 2 },
            retryTimeoutSeconds: { type: 'integer', minimum: 1, maximum: 120, default: 4, description: 'How long Patroni retries etcd and PostgreSQL before giving up the lease' },
            synchronousMode: { type: 'boolean', default: true, description: 'Commit waits for one standby, and only that standby may be promoted: no acknowledged write is lost in a failover; a primary left alone keeps accepting writes (synchronous_mode_strict off)' },
          },
        },
        pitr: {
          type: 'object',
          additionalProperties: false,
          default: {},
          description: 'Point-in-time recovery: continuous WAL archiving and physical backups with pgBackRest (lib/render/pgbackrest-conf.ts). The cipher passphrase is the secret pitrCipherPassphrase',
          properties: {
            enabled: { type: 'boolean', description: 'Archive WAL to pgBackRest (default: off in minimal, on in ha)' },
            stanza: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$', default: 'c2' },
            repo: {
              type: 'object',
              additionalProperties: false,
              default: {},
              properties: {
                type: { enum: ['posix', 'sftp', 's3'], default: 'posix', description: 'posix: a mounted folder (NFS etc.); sftp needs pgBackRest >= 2.46; s3: any S3-compatible store (keys from PGBACKREST_REPO1_S3_KEY / PGBACKREST_REPO1_S3_KEY_SECRET in the host environment)' },
                path: { type: 'string', pattern: '^/\\S*$', default: '/var/lib/pgbackrest' },
                sftpHost: { type: 'string', minLength: 1 },
                sftpPort: port,
                sftpUser: { type: 'string', minLength: 1 },
                sftpPrivateKeyFile: { type: 'string', pattern: '^/' },
                sftpHostKeyHashType: { enum: ['md5', 'sha1', 'sha256'], default: 'sha256' },
                sftpHostFingerprint: { type: 'string', minLength: 1 },
                s3Endpoint: { type: 'string', minLength: 1 },
                s3Bucket: { type: 'string', minLength: 1 },
                s3Region: { type: 'string', minLength: 1 },
                s3UriStyle: { enum: ['host', 'path'], default: 'host' },
                verifyTls: { type: 'boolean', default: true },
              },
            },
            cipher: { type: 'boolean', default: true, description: 'Encrypt the repository with aes-256-cbc (passphrase: secret pitrCipherPassphrase)' },
            compressType: { enum: ['zst', 'lz4', 'gz', 'bz2', 'none'], default: 'zst' },
            processMax: { type: 'integer', minimum: 1, maximum: 64, default: 2 },
            archiveAsync: { type: 'boolean', default: true },
            spoolPath: { type: 'string', pattern: '^/', default: '/var/spool/pgbackrest' },
            archiveTimeoutSeconds: { type: 'integer', minimum: 1, maximum: 3600, default: 60, description: 'A quiet database still ships its last commits within this many seconds: the RPO bound' },
            retentionFull: { type: 'integer', minimum: 1, default: 2 },
            retentionDiff: { type: 'integer', minimum: 1, default: 7 },
            fullSchedule: { type: 'string', minLength: 1, default: 'Sun *-*-* 01:00:00', description: 'systemd OnCalendar of the full backup' },
            diffSchedule: { type: 'string', minLength: 1, default: 'Mon..Sat *-*-* 01:00:00', description: 'systemd OnCalendar of the differential backup' },
          },
        },
      },
    },
    etcd: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        image: image('quay.io/coreos/etcd:v3.5.17', 'etcd for Patroni (HA)'),
        nodes: { type: 'integer', minimum: 0, maximum: 7, description: 'etcd members for Patroni (HA; unused in minimal)' },
        api: { enum: ['etcd3', 'etcd'], default: 'etcd3', description: "API Patroni speaks to etcd: etcd3 (the upstream etcd image) or etcd (v2, served with enable-v2). Debian's etcd 3.4 package has no v3 HTTP gateway, so Patroni's etcd3 client gets 404: use etcd with an image built from Debian packages" },
      },
    },
    broker: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        kind: { enum: ['mosquitto', 'emqx'] },
        mosquittoImage: image('eclipse-mosquitto:2.0.20', 'Mosquitto (EPL-2.0/EDL-1.0)'),
        emqxImage: image('emqx/emqx:5.8.6', 'EMQX: Apache-2.0 up to 5.8.x; 5.9+ is BSL and needs a licence to cluster'),
        nodes: { type: 'integer', minimum: 1, maximum: 7 },
        allowAnonymous: { type: 'boolean', default: true, description: 'Devices connect without MQTT credentials (E4 protects payloads end to end); C2 always logs in with its own user' },
        exporterImage: image('sapcc/mosquitto-exporter:0.8.0', 'mosquitto_exporter (mosquitto only; EMQX serves its own metrics)'),
        memoryMb,
      },
    },
    elasticsearch: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        enabled: { type: 'boolean', default: true },
        image: image('docker.elastic.co/elasticsearch/elasticsearch:7.17.25', 'Elasticsearch (Elastic License 2.0 / SSPL); C2 needs 7.x'),
        kibanaImage: image('docker.elastic.co/kibana/kibana:7.17.25', 'Kibana (Elastic License 2.0 / SSPL)'),
        exporterImage: image('quay.io/prometheuscommunity/elasticsearch-exporter:v1.7.0', 'elasticsearch_exporter'),
        nodes: { type: 'integer', minimum: 1, maximum: 9, description: 'Master-eligible data nodes (odd)' },
        heapMb: { type: 'integer', minimum: 256, maximum: 31_744, default: 1024 },
        messageIndex: { type: 'string', pattern: '^[a-z0-9][a-z0-9_-]*$', default: ELASTICSEARCH_INDEX_DEFAULTS.messageIndex, description: 'C2 writes <index>-YYYY.MM.DD (the dashboards installer maps it)' },
        logIndex: { type: 'string', pattern: '^[a-z0-9][a-z0-9_-]*$', default: ELASTICSEARCH_INDEX_DEFAULTS.c2LogsIndexPrefix, description: "Log shipper writes C2's logs to <index>-YYYY.MM.DD (the dashboards installer maps it)" },
        memoryMb,
      },
    },
    logShipper: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        enabled: { type: 'boolean', default: true },
        baseImage: image('debian:bookworm-slim', 'Base of the rsyslog image built from stacks/docker/log-shipper.Dockerfile'),
      },
    },
    monitoring: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        prometheus: {
          type: 'object',
          additionalProperties: false,
          default: {},
          properties: {
            enabled: { type: 'boolean', default: true },
            image: image('prom/prometheus:v2.53.2', 'Prometheus'),
            blackboxImage: image('prom/blackbox-exporter:v0.25.0', 'blackbox_exporter (C2 health and TLS probes)'),
            nodeExporterImage: image('prom/node-exporter:v1.8.2', 'node_exporter (textfile collector for e4ops_* metrics)'),
            scrapeIntervalSeconds: { type: 'integer', minimum: 5, maximum: 300, default: 15 },
            retentionDays: { type: 'integer', minimum: 1, maximum: 3650, default: 15 },
          },
        },
        alerts: {
          type: 'object',
          additionalProperties: false,
          default: {},
          description: 'Alert thresholds of the rules Prometheus loads (rendered by dashboards/prometheus/alert-rules.ts)',
          properties: {
            drillMaxAgeDays: { type: 'integer', minimum: 1, maximum: 366, default: ALERT_DEFAULTS.drillMaxAgeDays, description: 'E4RestoreDrillTooOld fires when the last successful restore drill is older (weekly drills: 8)' },
            runbookBaseUrl: { type: 'string', pattern: '^\\S+$', description: 'Base of each alert\'s runbook_url (<base>/<Alert>.md); default: the repo-relative dashboards/runbooks' },
          },
        },
        retention: {
          type: 'object',
          additionalProperties: false,
          default: {},
          description: 'Elasticsearch ILM: delete indices older than this (the dashboards installer puts these into the ILM policies)',
          properties: {
            messagesDays: { type: 'integer', minimum: 1, maximum: 3650, default: 30 },
            logsDays: { type: 'integer', minimum: 1, maximum: 3650, default: 14 },
          },
        },
      },
    },
    tracing: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        enabled: { type: 'boolean', default: true },
        ocAgentImage: image('omnition/opencensus-agent:0.1.11', 'OpenCensus agent (accepts OpenCensus from C2)'),
        jaegerImage: image('jaegertracing/all-in-one:1.57.0', 'Jaeger (collector HTTP 14268 for the agent)'),
      },
    },
    loadBalancer: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        image: image('haproxy:2.8-bookworm', 'HAProxy in front of C2 replicas and the Postgres primary (HA)'),
      },
    },
    automationEngine: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        enabled: boolFalse,
        replicas: { type: 'integer', minimum: 0, maximum: 1, default: 1, description: 'At most one engine may be active (two rotate keys behind each other)' },
        image: { type: 'string', pattern: '^[^\\s]+$' },
        goModuleVersion: { type: 'string', pattern: '^(latest|v[0-9][^\\s]*|[0-9a-f]{7,40})$', default: 'latest' },
        database: { type: 'string', pattern: '^[a-z_][a-z0-9_]{0,62}$', default: 'e4_automation' },
      },
    },
    backup: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        enabled: boolFalse,
        schedule: { type: 'string', default: '17 3 * * *', description: 'cron expression (5 fields)' },
        maxAgeHours: { type: 'integer', minimum: 1, maximum: 8784, default: ALERT_DEFAULTS.backupMaxAgeHours, description: 'E4BackupTooOld fires when the last successful backup is older: the longest gap of backup.schedule plus slack (daily: 26)' },
        baseImage: image('node:20-bookworm-slim', 'Base of the toolkit image (stacks/docker/toolkit.Dockerfile) the backup job and the dashboards installer run'),
        command: { type: 'string', minLength: 1, default: 'node --max-semi-space-size=1 --expose-gc --import tsx scripts/backup.ts run --config /etc/e4ops/backup.json', description: 'What cron runs in the backup container (working directory /opt/e4ops)' },
        targets: {
          type: 'array',
          default: [],
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['name', 'type'],
            properties: {
              name: { type: 'string', pattern: '^[a-z][a-z0-9-]{0,30}$' },
              type: { enum: ['local', 'rclone'] },
              path: { type: 'string', minLength: 1, description: 'local: directory inside the backup volume' },
              remote: { type: 'string', pattern: '^[A-Za-z0-9_-]+:\\S*$', description: 'rclone: REMOTE:path' },
            },
          },
        },
        ageRecipients: { type: 'array', default: [], items: { type: 'string', pattern: '^(age1[02-9ac-hj-np-z]{58}|ssh-(ed25519|rsa) \\S+.*)$' } },
        drill: {
          type: 'object',
          additionalProperties: false,
          default: {},
          description: 'A scheduled restore drill of the newest backup set (e4ops drill). Runs where the toolkit runs as a service: the VM appliance (a Pulumi stack refuses it; schedule the drill on a toolkit host with e4ops drill --print-systemd-timer)',
          properties: {
            enabled: boolFalse,
            schedule: { type: 'string', default: '43 4 * * 0', description: 'cron expression (5 fields); weekly by default (E4RestoreDrillTooOld fires after monitoring.alerts.drillMaxAgeDays)' },
            identityFile: { type: 'string', pattern: '^/\\S+$', default: '/etc/e4ops/secrets/drill-identity.age', description: 'age identity that opens the backups (the private half of one of backup.ageRecipients), written there by the operator (cloud-init write_files, mode 0600)' },
            withC2: { type: 'boolean', default: true, description: 'also start a scratch C2 on the restored database and check that it serves the same clients and topics' },
          },
        },
        retention: {
          type: 'object',
          additionalProperties: false,
          default: {},
          properties: {
            keepLast: { type: 'integer', minimum: 1, default: 7 },
            keepDaily: { type: 'integer', minimum: 0, default: 14 },
            keepWeekly: { type: 'integer', minimum: 0, default: 8 },
            keepMonthly: { type: 'integer', minimum: 0, default: 12 },
          },
        },
      },
    },
  },
} as const;

/** Pulumi secret config keys (`pulumi config set --secret KEY`), generated with RandomPassword when unset. */
export const SECRET_KEYS = {
  c2DbPassphrase: { minBytes: 16, what: "C2's db-encryption-passphrase (seals every key in the DB; escrow it apart from backups)" },
  postgresPassword: { minBytes: 12, what: 'password of the C2 database user' },
  postgresSuperuserPassword: { minBytes: 12, what: 'PostgreSQL superuser password' },
  postgresReplicationPassword: { minBytes: 12, what: 'Patroni replication user password (HA)' },
  elasticPassword: { minBytes: 12, what: 'Elasticsearch elastic user password' },
  brokerPassword: { minBytes: 12, what: 'MQTT password of C2 (and the automation engine) on the broker' },
  emqxCookie: { minBytes: 16, what: 'EMQX Erlang distribution cookie (HA)' },
  emqxDashboardPassword: { minBytes: 12, what: 'EMQX dashboard/API admin password (HA)' },
  pitrCipherPassphrase: { minBytes: 20, what: 'pgBackRest repository cipher passphrase (postgres.pitr; escrow it apart from the repository)' },
} as const;
export type SecretKey = keyof typeof SECRET_KEYS;
