// Defaults of the monitoring pieces that both the stack settings (lib/settings) and the dashboards
// (dashboards/: alert rules, Elasticsearch templates) need. They live here so lib/ imports nothing from
// dashboards/; the dashboards build their option defaults from these.

/** Alert thresholds of dashboards/prometheus/alert-rules.ts. */
export const ALERT_DEFAULTS = {
  /** Where runbooks live; each alert links `${runbookBaseUrl}/<alert>.md`. */
  runbookBaseUrl: 'dashboards/runbooks',
  /** Oldest acceptable successful backup (daily backups plus slack). */
  backupMaxAgeHours: 26,
  /** Oldest acceptable successful restore drill (weekly drills plus slack). */
  drillMaxAgeDays: 8,
  certExpiryDays: 21,
  replicationLagSeconds: 30,
  grpcErrorRatio: 0.05,
  grpcLatencyP99Ms: 2000,
  /** PITR: seconds without a newly archived WAL segment before the archive counts as stuck. */
  pitrArchiveStuckSeconds: 600,
  /** PITR: oldest acceptable full pgBackRest backup (weekly fulls plus slack). */
  pitrFullMaxAgeDays: 8,
  /** PITR: oldest acceptable repository check (e4ops pitr check from its timer). */
  pitrCheckMaxAgeMinutes: 60,
} as const;

/** Index names, retention and rollover of dashboards/elasticsearch/index-templates.ts. */
export const ELASTICSEARCH_INDEX_DEFAULTS = {
  /** C2's es-message-logging-index: C2 writes <index>-YYYY.MM.DD. */
  messageIndex: 'messages',
  messagesRetentionDays: 30,
  /** The log shipper writes C2's logs to <prefix>-YYYY.MM.DD. */
  c2LogsIndexPrefix: 'e4-c2-logs',
  logsRetentionDays: 90,
  opsLogsAlias: 'e4ops-logs',
  opsLogsRetentionDays: 365,
  rolloverMaxSize: '10gb',
  rolloverMaxAge: '30d',
  autoExpandReplicas: '0-1',
} as const;
