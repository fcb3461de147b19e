import * as pulumi from '@pulumi/pulumi';
import * as docker from '@pulumi/docker';
import fs from 'node:fs';
import path from 'node:path';
import { renderLogShipperConf } from '../../lib/render/log-shipper-rsyslog.ts';
import { renderOcAgentConfig } from '../../lib/render/ocagent-yaml.ts';
import { renderPrometheusConfig, renderBlackboxConfig, type PrometheusScrapeJob } from '../../lib/render/prometheus-yml.ts';
import type { StackSettings } from '../../lib/settings/stack-settings.ts';
import { Placement, RESTART, type Member } from '../placement.ts';

// Log shipper (rsyslog, one per host, reading the C2 replicas' log volumes), tracing (Jaeger and
// one OpenCensus agent per host), Prometheus with the rule files of dashboards/prometheus, the
// blackbox exporter (C2 health and TLS probes) and a node exporter per host (textfile collector
// for the e4ops_* job metrics).

export const OC_AGENT_PORT = 55678;
export const OC_PROMETHEUS_PORT = 9998;

export interface LogShipperArgs {
  settings: StackSettings;
  placement: Placement;
  c2Replicas: Member[];
  elasticHosts: string[];
  elasticPassword: pulumi.Output<string>;
}

export class LogShippers extends pulumi.ComponentResource {
  readonly containers: docker.Container[] = [];
  constructor(name: string, args: LogShipperArgs, opts?: pulumi.ComponentResourceOptions) {
    super('e4ops:logs:LogShippers', name, {}, opts);
    const { settings: s, placement: pl } = args;
    for (const h of pl.perHost('log-shipper')) {
      const local = args.c2Replicas.filter((r) => r.host === h.host);
      if (!local.length) continue;
      const conf = renderLogShipperConf({
        inputs: local.map((r) => ({ file: `/var/log/c2/${r.name}/e4_c2.log`, replica: r.name })),
        elasticsearch: { servers: args.elasticHosts, indexPrefix: s.elasticsearch.logIndex, user: 'elastic', passwordEnv: 'ELASTIC_PASSWORD' },
        workDirectory: '/var/spool/rsyslog',
      });
      const state = new docker.Volume(`${h.name}-state`, { name: `e4ops-${h.name}-state` }, pl.opts(h, this));
      this.containers.push(new docker.Container(h.name, {
        name: h.name, hostname: h.name,
        image: pl.builtImage(h, 'log-shipper', 'log-shipper.Dockerfile', { BASE_IMAGE: s.logShipper.baseImage }),
        restart: RESTART,
        command: ['rsyslogd', '-n', '-f', '/etc/rsyslog.conf'],
        envs: pulumi.secret(args.elasticPassword.apply((pw) => [`ELASTIC_PASSWORD=${pw}`])),
        uploads: [{ file: '/etc/rsyslog.conf', content: conf }],
        volumes: [
          { volumeName: state.name, containerPath: '/var/spool/rsyslog' },
          ...local.map((r) => ({ volumeName: `e4ops-${r.name}-logs`, containerPath: `/var/log/c2/${r.name}`, readOnly: true })),
        ],
        networksAdvanced: pl.networks(h, false),
        healthcheck: { tests: ['CMD-SHELL', 'kill -0 1'], interval: '30s', timeout: '5s', retries: 3 },
        labels: [{ label: 'e4ops.service', value: 'log-shipper' }],
      }, pl.opts(h, this)));
    }
    this.registerOutputs({});
  }
}

export interface TracingArgs { settings: StackSettings; placement: Placement }

export class Tracing extends pulumi.ComponentResource {
  readonly agents: Member[];
  readonly containers: docker.Container[] = [];
  constructor(name: string, args: TracingArgs, opts?: pulumi.ComponentResourceOptions) {
    super('e4ops:tracing:Tracing', name, {}, opts);
    const { settings: s, placement: pl } = args;
    const j = { name: 'jaeger', index: 0, host: 0 };
    this.containers.push(new docker.Container(j.name, {
      name: j.name, hostname: j.name,
      image: pl.remoteImage(j, s.tracing.jaegerImage),
      restart: RESTART,
      envs: ['SPAN_STORAGE_TYPE=memory', 'MEMORY_MAX_TRACES=100000'],
      networksAdvanced: pl.networks(j, false),
      ports: pl.peerPorts(j, 'jaeger', [14268]),
      healthcheck: { tests: ['CMD', 'wget', '-q', '-O-', 'http://127.0.0.1:14269/'], interval: '30s', timeout: '5s', retries: 3 },
      labels: [{ label: 'e4ops.service', value: 'jaeger' }],
    }, pl.opts(j, this)));
    this.agents = pl.perHost('ocagent');
    for (const a of this.agents) {
      const conf = renderOcAgentConfig({
        receiverAddress: `0.0.0.0:${OC_AGENT_PORT}`,
        prometheus: { address: `0.0.0.0:${OC_PROMETHEUS_PORT}`, namespace: 'c2' },
        jaeger: { collectorEndpoint: `http://${pl.address(j, 'jaeger', 14268)}/api/traces`, serviceName: 'c2' },
      });
      this.containers.push(new docker.Container(a.name, {
        name: a.name, hostname: a.name,
        image: pl.remoteImage(a, s.tracing.ocAgentImage),
        restart: RESTART,
        command: ['--config=/conf/ocagent.yaml'],
        uploads: [{ file: '/conf/ocagent.yaml', content: conf }],
        networksAdvanced: pl.networks(a, false, ['ocagent']),
        ports: pl.peerPorts(a, 'ocagent', [OC_PROMETHEUS_PORT]),
        labels: [{ label: 'e4ops.service', value: 'ocagent' }],
      }, pl.opts(a, this)));
    }
    this.registerOutputs({});
  }
}

export interface MonitoringArgs {
  settings: StackSettings;
  placement: Placement;
  /** Scrape jobs (job names from dashboards/prometheus/jobs.ts). */
  jobs: PrometheusScrapeJob[];
  /** Rule files to load: *.yml / *.yaml in this directory (read when the program runs). */
  rulesDir: string;
  blackboxModules: Record<string, unknown>;
  /** Volume holding the textfile-collector directory (shared with the backup job). */
  textfileVolume?: (host: number) => pulumi.Input<string>;
}

export class Monitoring extends pulumi.ComponentResource {
  readonly ruleFiles: string[];
  readonly prometheusConfig: string;
  readonly containers: docker.Container[] = [];
  constructor(name: string, args: MonitoringArgs, opts?: pulumi.ComponentResourceOptions) {
    super('e4ops:monitoring:Monitoring', name, {}, opts);
    const { settings: s, placement: pl } = args;
    const p = s.monitoring.prometheus;
    this.ruleFiles = fs.existsSync(args.rulesDir) ? fs.readdirSync(args.rulesDir).filter((f) => /\.ya?ml$/.test(f)).sort() : [];
    this.prometheusConfig = renderPrometheusConfig({
      scrapeIntervalSeconds: p.scrapeIntervalSeconds,
      ruleFiles: ['/etc/prometheus/rules/*.yml', '/etc/prometheus/rules/*.yaml'],
      externalLabels: { stack: pulumi.getStack() },
      jobs: args.jobs.filter((j) => j.targets.length),
    });
    const m = { name: 'prometheus', index: 0, host: 0 };
    const data = new docker.Volume('prometheus-data', { name: 'e4ops-prometheus-data' }, pl.opts(m, this));
    this.containers.push(new docker.Container(m.name, {
      name: m.name, hostname: m.name,
      image: pl.remoteImage(m, p.image),
      restart: RESTART,
      command: ['--config.file=/etc/prometheus/prometheus.yml', '--storage.tsdb.path=/prometheus', `--storage.tsdb.retention.time=${p.retentionDays}d`, '--web.enable-lifecycle'],
      uploads: [
        { file: '/etc/prometheus/prometheus.yml', content: this.prometheusConfig },
        ...this.ruleFiles.map((f) => ({ file: `/etc/prometheus/rules/${f}`, content: fs.readFileSync(path.join(args.rulesDir, f), 'utf8') })),
      ],
      volumes: [{ volumeName: data.name, containerPath: '/prometheus' }],
      networksAdvanced: pl.networks(m, false),
      healthcheck: { tests: ['CMD', 'wget', '-q', '-O-', 'http://127.0.0.1:9090/-/ready'], interval: '30s', timeout: '5s', retries: 3 },
      labels: [{ label: 'e4ops.service', value: 'prometheus' }],
    }, pl.opts(m, this)));
    const b = { name: 'blackbox', index: 0, host: 0 };
    this.containers.push(new docker.Container(b.name, {
      name: b.name, hostname: b.name,
      image: pl.remoteImage(b, p.blackboxImage),
      restart: RESTART,
      command: ['--config.file=/etc/blackbox/blackbox.yml'],
      uploads: [{ file: '/etc/blackbox/blackbox.yml', content: renderBlackboxConfig(args.blackboxModules) }],
      networksAdvanced: pl.networks(b, false),
      labels: [{ label: 'e4ops.service', value: 'blackbox' }],
    }, pl.opts(b, this)));
    for (const n of pl.perHost('node-exporter')) {
      this.containers.push(new docker.Container(n.name, {
        name: n.name, hostname: n.name,
        image: pl.remoteImage(n, p.nodeExporterImage),
        restart: RESTART,
        command: ['--path.rootfs=/host', '--collector.textfile.directory=/textfile'],
        volumes: [
          { hostPath: '/', containerPath: '/host', readOnly: true },
          ...(args.textfileVolume ? [{ volumeName: args.textfileVolume(n.host), containerPath: '/textfile', readOnly: true }] : []),
        ],
        networksAdvanced: pl.networks(n, false),
        ports: pl.peerPorts(n, 'node-exporter', [9100]),
        labels: [{ label: 'e4ops.service', value: 'node-exporter' }],
      }, pl.opts(n, this)));
    }
    this.registerOutputs({});
  }
}
