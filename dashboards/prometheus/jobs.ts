// Scrape job names (and the exporter defaults behind them) that the alert and recording rules in
// this folder select on. The stacks render prometheus.yml from this file, so a job renamed here
// is renamed in both places at once. Rules are written against `job`, never against host names.

export interface ScrapeJob {
  /** Prometheus `job` label value the rules select on. */
  job: string;
  /** What serves the metrics. */
  source: string;
  /** The exporter's usual listen port (the stacks may map it elsewhere). */
  defaultPort: number;
  metricsPath: string;
  scheme: 'http' | 'https';
  /** Set for blackbox-exporter probe jobs: the blackbox module to use (targets go in ?target=). */
  blackboxModule?: string;
}

export const SCRAPE_JOBS = {
  /** OpenCensus agent's Prometheus exporter, fed by C2 over oc-agent-addr (C2 itself has no /metrics). */
  c2Metrics: { job: 'e4-c2-metrics', source: 'opencensus agent prometheus exporter', defaultPort: 9998, metricsPath: '/metrics', scheme: 'http' },
  /**
   * blackbox_exporter http probe of C2's https://HOST:8888/e4/clients/count (C2_HEALTH_PATH): the pinned C2 build has no
   * /e4/health-check, and the count route also proves gateway → gRPC → PostgreSQL. Skips TLS verify (self-signed C2 certs).
   */
  c2Health: { job: 'e4-c2-health', source: 'blackbox_exporter http probe of /e4/clients/count', defaultPort: 9115, metricsPath: '/probe', scheme: 'http', blackboxModule: 'e4_c2_health' },
  /** blackbox_exporter tcp probe of the MQTT listener (C2 and devices connect there): works for any broker. */
  brokerProbe: { job: 'e4-broker-probe', source: 'blackbox_exporter tcp_connect probe of the MQTT port', defaultPort: 9115, metricsPath: '/probe', scheme: 'http', blackboxModule: 'e4_tcp_connect' },
  /** postgres_exporter (pg_up, pg_replication_lag, pg_stat_replication_*). */
  postgres: { job: 'e4-postgres', source: 'postgres_exporter', defaultPort: 9187, metricsPath: '/metrics', scheme: 'http' },
  /** Patroni's own REST /metrics (patroni_primary, patroni_postgres_timeline ...); HA stacks only. */
  patroni: { job: 'e4-patroni', source: 'patroni REST API /metrics', defaultPort: 8008, metricsPath: '/metrics', scheme: 'http' },
  /** MQTT broker: mosquitto_exporter (minimal stack) or EMQX's built-in endpoint (HA stack). Rules only use up{job=...}. */
  broker: { job: 'e4-broker', source: 'mosquitto_exporter or EMQX /api/v5/prometheus/stats', defaultPort: 9234, metricsPath: '/metrics', scheme: 'http' },
  /** elasticsearch_exporter (elasticsearch_cluster_health_status{color=...}). */
  elasticsearch: { job: 'e4-elasticsearch', source: 'elasticsearch_exporter', defaultPort: 9114, metricsPath: '/metrics', scheme: 'http' },
  /** blackbox_exporter tcp/tls probes of every TLS endpoint (C2 gRPC 5555, gateway 8888, broker TLS, Kibana). */
  certificates: { job: 'e4-certificates', source: 'blackbox_exporter tls_connect probe', defaultPort: 9115, metricsPath: '/probe', scheme: 'http', blackboxModule: 'e4_tls_connect' },
  /** node_exporter with --collector.textfile.directory pointing at the e4ops textfile dir (lib/ops-metrics.ts). */
  node: { job: 'e4-node', source: 'node_exporter (textfile collector carries e4ops_* metrics)', defaultPort: 9100, metricsPath: '/metrics', scheme: 'http' },
} as const satisfies Record<string, ScrapeJob>;

export type ScrapeJobKey = keyof typeof SCRAPE_JOBS;

/**
 * Prometheus namespace the OpenCensus agent's exporter must be configured with
 * (`exporters.prometheus.namespace`): the rules expect `c2_grpc_io_server_completed_rpcs`,
 * `c2_grpc_io_server_server_latency_bucket` ... (OC gRPC plugin view names, '/' and '.' become '_').
 */
export const OC_PROMETHEUS_NAMESPACE = 'c2';

/** Default blackbox module definitions the two probe jobs above expect (blackbox.yml `modules:`). */
export const BLACKBOX_MODULES = {
  e4_c2_health: {
    prober: 'http',
    timeout: '5s',
    http: {
      method: 'GET',
      valid_status_codes: [200],
      // GET /e4/clients/count answers {"count":"N"} once C2 reaches its database.
      fail_if_body_not_matches_regexp: ['"count"'],
      tls_config: { insecure_skip_verify: true },
    },
  },
  e4_tcp_connect: { prober: 'tcp', timeout: '5s' },
  e4_tls_connect: { prober: 'tcp', timeout: '5s', tcp: { tls: true, tls_config: { insecure_skip_verify: true } } },
} as const;
