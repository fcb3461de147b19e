import * as pulumi from '@pulumi/pulumi';
import * as docker from '@pulumi/docker';
import fs from 'node:fs';
import path from 'node:path';
import { renderPrometheusConfig, renderBlackboxConfig, type PrometheusScrapeJob } from '../../lib/render/prometheus-yml.ts';
import type { StackSettings } from '../../lib/settings/stack-settings.ts';
import { Placement, RESTART } from '../placement.ts';

// Prometheus with the rule files of dashboards/prometheus, the blackbox exporter (C2 health and
// TLS probes) and a node exporter per host (textfile collector for the e4ops_* job metrics).

export interface MonitoringArgs {
  settings: StackSettings;
  placement: Placement;
  /** Scrape jobs (job names from dashboards/prometheus/jobs.ts). */
  jobs: PrometheusScrapeJob[];
  /** Rule files to load: *.yml / *.yaml in this directory (read when the program runs). */
  rulesDir: string;
  /** Rule files rendered for this stack (file name → text); each replaces the same-named file of rulesDir. */
  renderedRules?: Record<string, string>;
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
    const rendered = args.renderedRules ?? {};
    const fromDir = fs.existsSync(args.rulesDir) ? fs.readdirSync(args.rulesDir).filter((f) => /\.ya?ml$/.test(f)) : [];
    this.ruleFiles = [...new Set([...fromDir, ...Object.keys(rendered)])].sort();
    const ruleText = (f: string) => rendered[f] ?? fs.readFileSync(path.join(args.rulesDir, f), 'utf8');
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
        ...this.ruleFiles.map((f) => ({ file: `/etc/prometheus/rules/${f}`, content: ruleText(f) })),
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
