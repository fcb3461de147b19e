import * as pulumi from '@pulumi/pulumi';
import * as docker from '@pulumi/docker';
import { renderEmqxConf, renderEmqxBootstrapUsers } from '../../lib/render/emqx-conf.ts';
import { Placement, RESTART, memory, type Member } from '../placement.ts';
import type { BrokerArgs, BrokerEndpoint } from './broker.ts';

// HA profile broker: an EMQX 5.8 cluster (the last Apache-2.0 line) whose retained messages live
// in the replicated built-in database; HAProxy publishes it.

export class EmqxCluster extends pulumi.ComponentResource implements BrokerEndpoint {
  readonly nodes: Member[];
  readonly metricsTargets: string[];
  readonly mqttTargets: string[];
  readonly metricsPath = '/api/v5/prometheus/stats';
  readonly containers: docker.Container[] = [];
  private readonly placement: Placement;

  constructor(name: string, args: BrokerArgs, opts?: pulumi.ComponentResourceOptions) {
    super('e4ops:broker:EmqxCluster', name, {}, opts);
    const { settings: s, placement: pl } = args;
    this.placement = pl;
    this.nodes = pl.members('emqx', s.broker.nodes);
    const nodeName = (m: Member) => `emqx@${pl.hostOf(m)}`;
    const seeds = this.nodes.map(nodeName);
    const users = args.brokerPassword.apply((pw) => renderEmqxBootstrapUsers([{ username: 'c2', password: pw }, { username: 'automation', password: pw }]));
    for (const m of this.nodes) {
      const vol = new docker.Volume(`${m.name}-data`, { name: `e4ops-${m.name}-data` }, pl.opts(m, this, { retainOnDelete: true }));
      const conf = renderEmqxConf({
        nodeName: nodeName(m), seeds, listener: { bind: '0.0.0.0:1883' }, dashboardBind: '0.0.0.0:18083',
        allowAnonymous: s.broker.allowAnonymous, bootstrapUsersFile: '/opt/emqx/etc/e4ops-users.csv',
      });
      this.containers.push(new docker.Container(m.name, {
        name: m.name, hostname: m.name,
        image: pl.remoteImage(m, s.broker.emqxImage),
        restart: RESTART,
        envs: pulumi.secret(pulumi.all([args.emqxCookie, args.emqxDashboardPassword]).apply(([cookie, dash]) => [
          `EMQX_NODE__COOKIE=${cookie}`, `EMQX_DASHBOARD__DEFAULT_PASSWORD=${dash}`,
        ])),
        uploads: [
          { file: '/opt/emqx/etc/emqx.conf', content: conf },
          { file: '/opt/emqx/etc/e4ops-users.csv', content: pulumi.secret(users), permissions: '0600' },
        ],
        volumes: [{ volumeName: vol.name, containerPath: '/opt/emqx/data' }],
        networksAdvanced: pl.networks(m, false),
        // Across hosts: MQTT for the balancers, Erlang distribution (4370) and cluster RPC (5369).
        ports: pl.peerPorts(m, 'emqx', [1883, 4370, 5369, 18083]),
        healthcheck: { tests: ['CMD', '/opt/emqx/bin/emqx', 'ctl', 'status'], interval: '15s', timeout: '10s', retries: 3, startPeriod: '30s' },
        labels: [{ label: 'e4ops.service', value: 'broker' }],
        ...memory(s.broker.memoryMb),
      }, pl.opts(m, this)));
    }
    this.metricsTargets = this.nodes.map((m) => pl.address(m, 'emqx-dashboard', 18083));
    this.mqttTargets = this.nodes.map((m) => pl.address(m, 'emqx', 1883));
    this.registerOutputs({});
  }

  /** C2 on a host dials the local balancer, which spreads over the cluster. */
  url(host: number): string {
    return `tcp://${this.placement.perHost('haproxy')[host].name}:1883`;
  }
}
