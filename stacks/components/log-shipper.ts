import * as pulumi from '@pulumi/pulumi';
import * as docker from '@pulumi/docker';
import { renderLogShipperConf } from '../../lib/render/log-shipper-rsyslog.ts';
import type { StackSettings } from '../../lib/settings/stack-settings.ts';
import { Placement, RESTART, type Member } from '../placement.ts';

// Log shipper: rsyslog, one per host, reading the C2 replicas' log volumes (C2 writes logrus JSON
// to /var/log/e4_c2.log) and bulk-indexing parsed events into Elasticsearch.

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

