// Prometheus recording and alert rules for an E4 deployment, built from the scrape job names in
// jobs.ts and the textfile metric names in lib/ops-metrics.ts so that neither is spelled twice.
// `renderPrometheusRules()` gives the rules file text; dashboards/prometheus/e4-rules.yml is that
// text with the defaults (a test keeps it current) and is what the promtool unit tests load.
import YAML from 'yaml';
import { OPS_METRICS } from '../../lib/ops-metrics.ts';
import { SCRAPE_JOBS, type ScrapeJobKey } from './jobs.ts';
import { ALERT_DEFAULTS } from '../../lib/settings/monitoring-defaults.ts';

export type Severity = 'critical' | 'warning';

export interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
  labels: { severity: Severity };
  annotations: { summary: string; description: string; runbook_url: string };
}

export interface RecordingRule {
  record: string;
  expr: string;
}

export interface RuleGroup {
  name: string;
  interval?: string;
  rules: Array<AlertRule | RecordingRule>;
}

export interface RuleOptions {
  /** Where runbooks live; each alert links `${runbookBaseUrl}/<alert>.md`. Default: the repo-relative `dashboards/runbooks`. */
  runbookBaseUrl?: string;
  /** Oldest acceptable successful backup, in hours (schedule interval plus slack). Default 26 (daily backups). */
  backupMaxAgeHours?: number;
  /** Oldest acceptable successful restore drill, in days. Default 8 (weekly drills). */
  drillMaxAgeDays?: number;
  /** Alert when a certificate expires within this many days. Default 21. */
  certExpiryDays?: number;
  /** Replication lag (seconds) above which a replica is considered behind. Default 30. */
  replicationLagSeconds?: number;
  /** Server-side gRPC error ratio above which C2 is failing. Default 0.05. */
  grpcErrorRatio?: number;
  /** p99 gRPC latency in milliseconds (OpenCensus records ms). Default 2000. */
  grpcLatencyP99Ms?: number;
  /** PITR: seconds with WAL segments waiting and none arriving in the pgBackRest repository. Default 600 (10 × archive_timeout). */
  pitrArchiveStuckSeconds?: number;
  /** PITR: oldest acceptable full pgBackRest backup, in days. Default 8 (weekly fulls). */
  pitrFullMaxAgeDays?: number;
  /** PITR: oldest acceptable repository check (e4ops pitr check from its timer), in minutes. Default 60. */
  pitrCheckMaxAgeMinutes?: number;
  /** Scrape jobs that must exist in every deployment (absent → alert). Default c2Health, postgres, broker, node. */
  requiredJobs?: ScrapeJobKey[];
}

export const DEFAULT_RULE_OPTIONS: Required<RuleOptions> = {
  ...ALERT_DEFAULTS,
  requiredJobs: ['c2Health', 'postgres', 'broker', 'node'],
};

/**
 * Metric names from C2 through the OpenCensus agent's Prometheus exporter (namespace
 * OC_PROMETHEUS_NAMESPACE = "c2"). They follow the OC gRPC plugin's default server views
 * (grpc.io/server/completed_rpcs with tags grpc_server_method and grpc_server_status;
 * grpc.io/server/server_latency, a distribution in milliseconds). UNVERIFIED against a running
 * C2 + agent: the names are derived, not observed. Check /metrics on the agent after deploying.
 */
export const C2_OC_METRICS = {
  completedRpcs: 'c2_grpc_io_server_completed_rpcs',
  latencyMsBucket: 'c2_grpc_io_server_server_latency_bucket',
} as const;

/** gRPC status codes that mean the server failed, as opposed to the caller asking for something wrong (NOT_FOUND, INVALID_ARGUMENT). */
export const GRPC_SERVER_FAULT_STATUSES = ['UNKNOWN', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS', 'DEADLINE_EXCEEDED', 'RESOURCE_EXHAUSTED', 'UNIMPLEMENTED'];

const J = (k: ScrapeJobKey) => SCRAPE_JOBS[k].job;
const M = OPS_METRICS;

export function buildRuleGroups(options: RuleOptions = {}): RuleGroup[] {
  const o = { ...DEFAULT_RULE_OPTIONS, ...options };
  const base = o.runbookBaseUrl.replace(/\/+$/, '');
  const alert = (name: string, severity: Severity, expr: string, forDur: string | undefined, summary: string, description: string): AlertRule => ({
    alert: name,
    expr,
    ...(forDur ? { for: forDur } : {}),
    labels: { severity },
    annotations: { summary, description, runbook_url: `${base}/${name}.md` },
  });
  const grpcSel = `job="${J('c2Metrics')}"`;
  const faults = GRPC_SERVER_FAULT_STATUSES.join('|');
  const backupMaxAge = o.backupMaxAgeHours * 3600;
  const drillMaxAge = o.drillMaxAgeDays * 86400;
  const certWindow = o.certExpiryDays * 86400;
  const ownJobs = ['c2Metrics', 'c2Health', 'brokerProbe', 'patroni', 'certificates', 'node'] as ScrapeJobKey[];

  return [
    {
      name: 'e4-recording',
      rules: [
        { record: 'e4:c2_grpc_server_rpcs:rate5m', expr: `sum by (job) (rate(${C2_OC_METRICS.completedRpcs}{${grpcSel}}[5m]))` },
        { record: 'e4:c2_grpc_server_fault_rpcs:rate5m', expr: `sum by (job) (rate(${C2_OC_METRICS.completedRpcs}{${grpcSel},grpc_server_status=~"${faults}"}[5m]))` },
        { record: 'e4:c2_grpc_server_fault_ratio:rate5m', expr: 'e4:c2_grpc_server_fault_rpcs:rate5m / e4:c2_grpc_server_rpcs:rate5m' },
        {
          record: 'e4:c2_grpc_server_rpcs_by_method:rate5m',
          expr: `sum by (job, grpc_server_method, grpc_server_status) (rate(${C2_OC_METRICS.completedRpcs}{${grpcSel}}[5m]))`,
        },
        {
          record: 'e4:c2_grpc_server_latency_ms:p99_5m',
          expr: `histogram_quantile(0.99, sum by (job, le) (rate(${C2_OC_METRICS.latencyMsBucket}{${grpcSel},grpc_server_method!~".*/SubscribeToEventStream"}[5m])))`,
        },
        { record: 'e4:backup_age_seconds', expr: `time() - ${M.backupLastSuccessTimestamp}` },
        { record: 'e4:restore_drill_age_seconds', expr: `time() - ${M.drillLastSuccessTimestamp}` },
        { record: 'e4:certificate_expiry_seconds', expr: '(probe_ssl_earliest_cert_expiry - time()) or (x509_cert_not_after - time())' },
      ],
    },
    {
      name: 'e4-c2',
      rules: [
        alert('E4C2Down', 'critical', `probe_success{job="${J('c2Health')}"} == 0`, '2m',
          'C2 health check failing on {{ $labels.instance }}',
          'GET /e4/clients/count on {{ $labels.instance }} has failed for 2 minutes: no key operations, no commands to devices.'),
        alert('E4C2Flapping', 'warning', `changes(probe_success{job="${J('c2Health')}"}[30m]) >= 4`, undefined,
          'C2 on {{ $labels.instance }} keeps going down and up',
          'The C2 health check changed state at least 4 times in 30 minutes on {{ $labels.instance }}: C2 is probably restarting after fail-fast start-up errors (DB, MQTT or Elasticsearch).'),
        alert('E4C2GrpcErrorRatioHigh', 'warning',
          `e4:c2_grpc_server_fault_ratio:rate5m > ${o.grpcErrorRatio} and e4:c2_grpc_server_rpcs:rate5m > 0.05`, '10m',
          'C2 gRPC server errors above {{ $value | humanizePercentage }}',
          `More than ${o.grpcErrorRatio * 100}% of C2 gRPC calls (job {{ $labels.job }}) end in a server-side status (${faults}) over 5 minutes.`),
        alert('E4C2GrpcLatencyHigh', 'warning', `e4:c2_grpc_server_latency_ms:p99_5m > ${o.grpcLatencyP99Ms}`, '10m',
          'C2 gRPC p99 latency above ' + o.grpcLatencyP99Ms + ' ms',
          'The 99th percentile of C2 gRPC call duration (job {{ $labels.job }}, event streams excluded) has been above ' + o.grpcLatencyP99Ms + ' ms for 10 minutes.'),
      ],
    },
    {
      name: 'e4-broker',
      rules: [
        alert('E4BrokerDown', 'critical', `up{job="${J('broker')}"} == 0 or probe_success{job="${J('brokerProbe')}"} == 0`, '2m',
          'MQTT broker unreachable ({{ $labels.job }} {{ $labels.instance }})',
          'The broker metrics endpoint or its MQTT listener on {{ $labels.instance }} has not answered for 2 minutes: devices get no commands and C2 cannot start (MQTT connect must succeed within 1 s).'),
      ],
    },
    {
      name: 'e4-postgres',
      rules: [
        alert('E4PostgresDown', 'critical', `pg_up{job="${J('postgres')}"} == 0 or up{job="${J('postgres')}"} == 0`, '2m',
          'PostgreSQL unreachable on {{ $labels.instance }}',
          'postgres_exporter on {{ $labels.instance }} cannot reach PostgreSQL (or is itself down) for 2 minutes: C2 fails every key operation and cannot restart.'),
        alert('E4PostgresReplicationLag', 'warning',
          `max by (job, instance) (pg_replication_lag_seconds{job="${J('postgres')}"} or pg_replication_lag{job="${J('postgres')}"}) > ${o.replicationLagSeconds}`, '5m',
          'PostgreSQL replica {{ $labels.instance }} lags behind the primary',
          `Replica {{ $labels.instance }} has been more than ${o.replicationLagSeconds} s behind for 5 minutes: a failover now would lose recent key changes.`),
        alert('E4PostgresFailover', 'warning',
          `max by (job, scope) (changes(patroni_postgres_timeline{job="${J('patroni')}"}[15m])) > 0 or max by (job, instance) (changes(pg_replication_is_replica{job="${J('postgres')}"}[15m])) > 0`,
          undefined,
          'PostgreSQL failover happened ({{ $labels.job }})',
          'The PostgreSQL timeline or a node\'s replica role changed in the last 15 minutes: a failover or switchover took place.'),
        alert('E4PostgresPrimaryNotUnique', 'critical', `sum by (job, scope) (patroni_primary{job="${J('patroni')}"}) != 1`, '1m',
          'Patroni cluster {{ $labels.scope }} has {{ $value }} primaries',
          'Patroni cluster {{ $labels.scope }} has not had exactly one primary for 1 minute (0: no writes possible; 2 or more: split brain).'),
      ],
    },
    {
      name: 'e4-elasticsearch',
      rules: [
        alert('E4ElasticsearchDown', 'critical',
          // elasticsearch_exporter before 1.6 reports elasticsearch_cluster_health_up; later versions drop it and
          // simply stop emitting cluster health, hence the `unless`: exporter up but no health series.
          `elasticsearch_cluster_health_up{job="${J('elasticsearch')}"} == 0 or up{job="${J('elasticsearch')}"} == 0`
          + ` or (up{job="${J('elasticsearch')}"} == 1 unless on (job, instance) elasticsearch_cluster_health_status{job="${J('elasticsearch')}"}`
          + ` unless on (job, instance) elasticsearch_cluster_health_up{job="${J('elasticsearch')}"})`, '5m',
          'Elasticsearch unreachable ({{ $labels.instance }})',
          'Elasticsearch cluster health could not be read for 5 minutes: message monitoring stops and a C2 with es-enable cannot (re)start.'),
        alert('E4ElasticsearchClusterYellow', 'warning',
          `elasticsearch_cluster_health_status{job="${J('elasticsearch')}",color="yellow"} == 1`, '20m',
          'Elasticsearch cluster {{ $labels.cluster }} is yellow',
          'Cluster {{ $labels.cluster }} has had unassigned replica shards for 20 minutes: one more node loss may lose monitoring data.'),
        alert('E4ElasticsearchClusterRed', 'critical',
          `elasticsearch_cluster_health_status{job="${J('elasticsearch')}",color="red"} == 1`, '5m',
          'Elasticsearch cluster {{ $labels.cluster }} is red',
          'Cluster {{ $labels.cluster }} has unassigned primary shards: writes to some indices (messages-*, logs) fail.'),
      ],
    },
    {
      name: 'e4-ops-jobs',
      rules: [
        alert('E4BackupTooOld', 'critical', `(time() - ${M.backupLastSuccessTimestamp} > ${backupMaxAge}) or absent(${M.backupLastSuccessTimestamp})`, '15m',
          'No successful C2 backup in the last ' + o.backupMaxAgeHours + ' hours',
          `The last successful backup is older than ${o.backupMaxAgeHours} h, or no backup success has been recorded at all (${M.backupLastSuccessTimestamp} absent).`),
        alert('E4BackupLastRunFailed', 'warning', `${M.backupLastRunSuccess} == 0`, undefined,
          'The last C2 backup run failed',
          'The most recent backup run reported failure; the previous good backup is getting older.'),
        alert('E4RestoreDrillFailed', 'critical', `${M.drillLastRunSuccess} == 0`, undefined,
          'The last restore drill failed',
          'The most recent restore drill could not restore a backup into a working C2: the backups may not be restorable.'),
        alert('E4RestoreDrillTooOld', 'warning', `(time() - ${M.drillLastSuccessTimestamp} > ${drillMaxAge}) or absent(${M.drillLastSuccessTimestamp})`, '15m',
          'No successful restore drill in the last ' + o.drillMaxAgeDays + ' days',
          `The last successful restore drill is older than ${o.drillMaxAgeDays} days, or none has been recorded (${M.drillLastSuccessTimestamp} absent).`),
        alert('E4ResyncTopicsFailed', 'critical', `${M.resyncTopicsFailed} > 0`, undefined,
          '{{ $value }} topics failed to resync after a restore',
          'The last topic-key resync could not rotate some topics: devices on those topics may hold keys C2 no longer has.'),
      ],
    },
    {
      // Only where PITR is on: without the e4ops_pitr_* metrics these never fire.
      name: 'e4-pitr',
      rules: [
        alert('E4PitrArchiveStuck', 'critical',
          `(${M.pitrArchiveReadySegments} > 0 and on (instance, stanza) (time() - ${M.pitrLastArchivedWalTimestamp}) > ${o.pitrArchiveStuckSeconds}) or increase(${M.pitrArchiveFailedCount}[15m]) > 0`, '5m',
          'WAL archiving to pgBackRest is stuck (stanza {{ $labels.stanza }})',
          `WAL segments are waiting and none has reached the repository for ${o.pitrArchiveStuckSeconds} s, or archive_command keeps failing: point-in-time recovery loses everything since the last archived segment, and pg_wal grows until the disk is full.`),
        alert('E4PitrFullBackupTooOld', 'warning', `time() - ${M.pitrLastFullBackupTimestamp} > ${o.pitrFullMaxAgeDays * 86400}`, '15m',
          'No full pgBackRest backup in the last ' + o.pitrFullMaxAgeDays + ' days (stanza {{ $labels.stanza }})',
          `The newest full backup is older than ${o.pitrFullMaxAgeDays} days (or there is none): a restore replays ever more WAL, and retention cannot expire old WAL.`),
        alert('E4PitrRepositoryCheckFailing', 'critical',
          `${M.pitrRepositoryCheckSuccess} == 0 or (time() - ${M.pitrRepositoryCheckTimestamp}) > ${o.pitrCheckMaxAgeMinutes * 60}`, '10m',
          'pgBackRest repository check failing (stanza {{ $labels.stanza }})',
          `e4ops pitr check failed, or has not run for ${o.pitrCheckMaxAgeMinutes} min: the repository may be unreachable, full, or its passphrase wrong; backups and archiving may be failing unseen.`),
      ],
    },
    {
      name: 'e4-certificates',
      rules: [
        alert('E4CertificateExpiresSoon', 'warning', `e4:certificate_expiry_seconds < ${certWindow}`, undefined,
          'Certificate for {{ $labels.instance }} expires within ' + o.certExpiryDays + ' days',
          `A TLS certificate ({{ $labels.job }} {{ $labels.instance }}) expires in less than ${o.certExpiryDays} days; C2's gRPC/HTTPS endpoints stop working for clients when it does.`),
      ],
    },
    {
      name: 'e4-monitoring',
      rules: [
        alert('E4ScrapeTargetDown', 'warning', `up{job=~"${ownJobs.map(J).join('|')}"} == 0`, '10m',
          'Metrics source {{ $labels.job }} on {{ $labels.instance }} is down',
          'Prometheus has not scraped {{ $labels.job }} on {{ $labels.instance }} for 10 minutes: alerts that depend on it are blind.'),
        alert('E4MonitoringJobMissing', 'warning', o.requiredJobs.map((k) => `absent(up{job="${J(k)}"})`).join(' or '), '15m',
          'Scrape job {{ $labels.job }} is missing',
          'Prometheus has no target for the required job {{ $labels.job }}: prometheus.yml does not match dashboards/prometheus/jobs.ts.'),
      ],
    },
  ];
}

/** The rules file text (Prometheus `groups:` YAML). */
export function renderPrometheusRules(options: RuleOptions = {}): string {
  const header = '# Generated by dashboards/prometheus/alert-rules.ts (npx tsx scripts/dashboards.ts render-rules). Do not edit by hand.\n';
  return header + YAML.stringify({ groups: buildRuleGroups(options) }, { lineWidth: 0 });
}

/** Every alert name, in file order. */
export function alertNames(options: RuleOptions = {}): string[] {
  return buildRuleGroups(options).flatMap((g) => g.rules).filter((r): r is AlertRule => 'alert' in r).map((r) => r.alert);
}
