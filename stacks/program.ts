import * as pulumi from '@pulumi/pulumi';
import * as docker from '@pulumi/docker';
import * as random from '@pulumi/random';
import path from 'node:path';
import type { StackSettings, StackSecrets } from '../lib/settings/stack-settings.ts';
import type { PrometheusScrapeJob } from '../lib/render/prometheus-yml.ts';
import { SCRAPE_JOBS, BLACKBOX_MODULES } from '../dashboards/prometheus/jobs.ts';
import { renderPrometheusRules } from '../dashboards/prometheus/alert-rules.ts';
import { Placement, RESTART } from './placement.ts';
import { C2_HEALTH_PATH } from '../lib/render/c2-replica.ts';
import { Pki } from './pki.ts';
import { resolveSecrets } from './secrets.ts';
import { C2Cluster } from './components/c2.ts';
import { PostgresServer } from './components/postgres.ts';
import { PatroniCluster, PATRONI_REST_PORT } from './components/patroni-cluster.ts';
import type { BrokerEndpoint } from './components/broker.ts';
import { MosquittoBroker } from './components/mosquitto.ts';
import { EmqxCluster } from './components/emqx.ts';
import { ElasticStack } from './components/elastic.ts';
import { LogShippers } from './components/log-shipper.ts';
import { Tracing, OC_AGENT_PORT, OC_PROMETHEUS_PORT } from './components/tracing.ts';
import { Monitoring } from './components/monitoring.ts';
import { LoadBalancers } from './components/load-balancer.ts';
import { AutomationEngine } from './components/automation-engine.ts';
import { BackupJob } from './components/backup-job.ts';
import { DashboardsInstaller } from './components/dashboards-installer.ts';

// The whole deployment from validated settings. stacks/index.ts calls this with the stack's
// config; tests and the benchmark call it directly under Pulumi mocks.

export interface StackOutputs {
  profile: string;
  dockerHosts: string[];
  hostLossTolerance: string;
  c2GrpcEndpoint: string;
  c2HttpsEndpoint: string;
  brokerEndpoint: string;
  c2Replicas: Array<{ name: string; mqttClientId: string; host: string; messageLogging: boolean }>;
  caCertificatePem: pulumi.Output<string>;
  internalEndpoints: Record<string, string>;
  prometheusRuleFiles: string[];
  /** Exit code of the one-shot dashboards installer (Elasticsearch on); `pulumi up` fails when it is not 0. */
  dashboardsInstallerExitCode?: pulumi.Output<number | undefined>;
}

export interface DefineStackOptions {
  repoRoot: string;
  /** Keep full stack traces on Pulumi's promises (for debugging its promise-leak reports; slow). */
  keepPromiseStackTraces?: boolean;
}

export function defineStack(s: StackSettings, givenSecrets: StackSecrets, opts: DefineStackOptions): StackOutputs {
  if (opts.keepPromiseStackTraces) return defineResources(s, givenSecrets, opts);
  // Every resource output property gets four promises, and Pulumi captures a JavaScript stack trace
  // for each (kept only for its promise-leak report): about 300 captures per container, most of the
  // program's run time. Without frames they cost nearly nothing. Pulumi's own resource source
  // positions are unaffected (it raises the limit itself when it takes them).
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return defineResources(s, givenSecrets, opts);
  } finally {
    Error.stackTraceLimit = limit;
  }
}

function defineResources(s: StackSettings, givenSecrets: StackSecrets, opts: { repoRoot: string }): StackOutputs {
  const ha = s.profile === 'ha';
  const pl = new Placement(s, undefined, opts.repoRoot);
  const secrets = resolveSecrets(givenSecrets);
  const pki = new Pki('pki');
  const extraDatabases = s.automationEngine.enabled ? [s.automationEngine.database] : [];

  const tracing = s.tracing.enabled ? new Tracing('tracing', { settings: s, placement: pl }) : undefined;

  let patroni: PatroniCluster | undefined;
  if (ha) {
    patroni = new PatroniCluster('postgres', {
      settings: s, placement: pl, superuserPassword: secrets.postgresSuperuserPassword,
      replicationPassword: secrets.postgresReplicationPassword, c2Password: secrets.postgresPassword, extraDatabases,
      pitrCipherPassphrase: secrets.pitrCipherPassphrase,
    });
  } else {
    new PostgresServer('postgres', { settings: s, placement: pl, superuserPassword: secrets.postgresSuperuserPassword, c2Password: secrets.postgresPassword, pitrCipherPassphrase: secrets.pitrCipherPassphrase, extraDatabases });
  }
  // C2 has no DB port setting: the name it dials must serve 5432. HA: the host's HAProxy (alias
  // pg-primary on the internal network); minimal: the server's own alias.
  const dbHost = 'pg-primary';

  const brokerArgs = { settings: s, placement: pl, brokerPassword: secrets.brokerPassword, emqxCookie: secrets.emqxCookie, emqxDashboardPassword: secrets.emqxDashboardPassword, publish: !ha };
  const broker: BrokerEndpoint = s.broker.kind === 'emqx' ? new EmqxCluster('broker', brokerArgs) : new MosquittoBroker('broker', brokerArgs);

  const elastic = s.elasticsearch.enabled ? new ElasticStack('elastic', { settings: s, placement: pl, pki, elasticPassword: secrets.elasticPassword }) : undefined;

  let c2PrivateKeyBase64: pulumi.Output<string> | undefined;
  if (s.c2.cryptoMode === 'pubkey') {
    // A Curve25519 private key is any 32 random bytes (C2 clamps it).
    c2PrivateKeyBase64 = pulumi.secret(new random.RandomBytes('c2-curve25519-key', { length: 32 }).base64);
  }
  const c2 = new C2Cluster('c2', {
    settings: s, placement: pl, pki,
    dbHost: () => dbHost,
    brokerUrl: (h) => broker.url(h),
    ocAgentAddr: tracing ? () => `ocagent:${OC_AGENT_PORT}` : undefined,
    elasticsearchUrls: elastic?.urlsWithCredentials,
    secrets: { dbPassword: secrets.postgresPassword, passphrase: secrets.c2DbPassphrase, brokerPassword: secrets.brokerPassword },
    publishApi: !ha,
    extraDnsNames: ha ? ['c2-api', ...pl.perHost('haproxy').map((b) => b.name)] : [],
    c2PrivateKeyBase64,
  });

  if (ha) {
    new LoadBalancers('lb', { settings: s, placement: pl, c2Replicas: c2.replicas, patroniMembers: patroni!.members, brokerNodes: broker.nodes });
  }

  // Templates, ILM policies and Kibana objects, once Elasticsearch and Kibana are healthy. Same
  // toolkit image as the backup job (built once per host and base image).
  const dashboards = elastic ? new DashboardsInstaller('dashboards', {
    settings: s, placement: pl, elastic, elasticPassword: secrets.elasticPassword,
    image: pl.builtImage(0, 'toolkit', 'toolkit.Dockerfile', { BASE_IMAGE: s.backup.baseImage }, true),
  }) : undefined;

  if (s.logShipper.enabled && elastic) {
    new LogShippers('logs', { settings: s, placement: pl, c2Replicas: c2.replicas, elasticHosts: elastic.httpHosts, elasticPassword: secrets.elasticPassword });
  }

  const textfile = s.hosts.map((h, i) => new docker.Volume(`textfile-${h.name}`, { name: 'e4ops-textfile' }, { provider: pl.provider(i) }));

  let monitoring: Monitoring | undefined;
  if (s.monitoring.prometheus.enabled) {
    const exporter = { name: 'postgres-exporter', index: 0, host: 0 };
    new docker.Container(exporter.name, {
      name: exporter.name,
      image: pl.remoteImage(exporter, s.postgres.exporterImage),
      restart: RESTART,
      envs: pulumi.secret(secrets.postgresSuperuserPassword.apply((pw) => [`DATA_SOURCE_NAME=postgresql://postgres:${pw}@${dbHost}:5432/postgres?sslmode=disable`])),
      networksAdvanced: pl.networks(exporter, false),
      labels: [{ label: 'e4ops.service', value: 'postgres-exporter' }],
    }, { provider: pl.provider(0) });
    const c2Https = c2.replicas.map((r) => `https://${pl.address(r, 'c2', 8888)}${C2_HEALTH_PATH}`);
    const jobs: PrometheusScrapeJob[] = [
      ...(tracing ? [{ job: SCRAPE_JOBS.c2Metrics.job, targets: tracing.agents.map((a) => pl.address(a, 'ocagent', OC_PROMETHEUS_PORT)) }] : []),
      { job: SCRAPE_JOBS.c2Health.job, targets: c2Https, blackbox: { exporter: 'blackbox:9115', module: SCRAPE_JOBS.c2Health.blackboxModule } },
      { job: SCRAPE_JOBS.certificates.job, targets: c2.replicas.flatMap((r) => [pl.address(r, 'c2', 5555), pl.address(r, 'c2', 8888)]), blackbox: { exporter: 'blackbox:9115', module: SCRAPE_JOBS.certificates.blackboxModule } },
      { job: SCRAPE_JOBS.postgres.job, targets: ['postgres-exporter:9187'] },
      ...(patroni ? [{ job: SCRAPE_JOBS.patroni.job, targets: patroni.members.map((m) => pl.address(m, 'postgres', PATRONI_REST_PORT)) }] : []),
      { job: SCRAPE_JOBS.broker.job, targets: broker.metricsTargets, metricsPath: broker.metricsPath },
      { job: SCRAPE_JOBS.brokerProbe.job, targets: broker.mqttTargets, blackbox: { exporter: 'blackbox:9115', module: SCRAPE_JOBS.brokerProbe.blackboxModule } },
      ...(elastic ? [{ job: SCRAPE_JOBS.elasticsearch.job, targets: ['elasticsearch-exporter:9114'] }] : []),
      { job: SCRAPE_JOBS.node.job, targets: pl.perHost('node-exporter').map((n) => pl.address(n, 'node-exporter', 9100)) },
    ];
    monitoring = new Monitoring('monitoring', {
      settings: s, placement: pl, jobs, rulesDir: path.join(opts.repoRoot, 'dashboards', 'prometheus'),
      // The committed e4-rules.yml holds the defaults; the stack loads the rules for its own settings.
      renderedRules: {
        'e4-rules.yml': renderPrometheusRules({
          backupMaxAgeHours: s.backup.maxAgeHours,
          drillMaxAgeDays: s.monitoring.alerts.drillMaxAgeDays,
          ...(s.monitoring.alerts.runbookBaseUrl ? { runbookBaseUrl: s.monitoring.alerts.runbookBaseUrl } : {}),
        }),
      },
      blackboxModules: BLACKBOX_MODULES as unknown as Record<string, unknown>,
      textfileVolume: (h) => textfile[h].name,
    });
  }

  if (s.automationEngine.enabled) {
    new AutomationEngine('automation', {
      settings: s, placement: pl, pki, dbHost, c2HostPort: ha ? 'c2-api:5555' : 'c2-0:5555',
      ocAgentAddr: tracing ? `ocagent:${OC_AGENT_PORT}` : undefined,
      dbPassword: secrets.postgresPassword, passphrase: secrets.c2DbPassphrase,
    });
  }
  if (s.backup.enabled) {
    new BackupJob('backup', {
      settings: s, placement: pl, dbHost, superuserPassword: secrets.postgresSuperuserPassword,
      textfileVolumeName: textfile[0].name, extraFiles: s.c2.cryptoMode === 'pubkey' ? ['/opt/e4/configs/c2-key'] : [],
    });
  }

  const hostCount = s.hosts.length;
  const hostLossTolerance = !ha
    ? 'minimal profile: one of each service on one Docker host; it does NOT survive the loss of that host (or of any single container without a restart)'
    : hostCount === 1
      ? `ha profile on a single Docker host (${s.hosts[0].name}): replicas survive container failures, but this deployment does NOT survive the loss of the host`
      : `ha profile over ${hostCount} Docker hosts (${s.hosts.map((h) => h.name).join(', ')}), at most one member of each cluster per host: survives the loss of one host`;
  return {
    profile: s.profile,
    dockerHosts: s.hosts.map((h) => h.name),
    hostLossTolerance,
    c2GrpcEndpoint: `${s.publish.c2Address}:${s.publish.grpcPort}`,
    c2HttpsEndpoint: `https://${s.publish.c2Address}:${s.publish.httpPort}/e4/`,
    brokerEndpoint: `tcp://${s.publish.brokerAddress}:${s.publish.brokerPort}`,
    c2Replicas: c2.replicas.map((r, i) => ({ name: r.name, mqttClientId: c2.mqttClientIds[i], host: pl.hostName(r), messageLogging: s.elasticsearch.enabled && s.c2.messageLogging && i === 0 })),
    caCertificatePem: pki.caCertPem,
    internalEndpoints: {
      postgres: `${dbHost}:5432`,
      ...(elastic ? { elasticsearch: `http://${elastic.httpHosts[0]}`, kibana: 'http://kibana:5601' } : {}),
      ...(monitoring ? { prometheus: 'http://prometheus:9090' } : {}),
      ...(tracing ? { jaeger: 'http://jaeger:16686' } : {}),
    },
    prometheusRuleFiles: monitoring?.ruleFiles ?? [],
    ...(dashboards ? { dashboardsInstallerExitCode: dashboards.exitCode } : {}),
  };
}
