import * as pulumi from '@pulumi/pulumi';
import * as docker from '@pulumi/docker';
import { renderMosquittoConf, renderMosquittoPasswordFile } from '../../lib/render/mosquitto-conf.ts';
import { renderEmqxConf, renderEmqxBootstrapUsers } from '../../lib/render/emqx-conf.ts';
import type { StackSettings } from '../../lib/settings/stack-settings.ts';
import { Placement, RESTART, memory, type Member } from '../placement.ts';

// The MQTT broker. Minimal: one Mosquitto with persistence (retained commands survive restarts),
// published on publish.brokerAddress. HA: an EMQX 5.8 cluster (Apache-2.0) whose retained
// messages live in the replicated built-in database; HAProxy publishes it.

export interface BrokerArgs {
  settings: StackSettings;
  placement: Placement;
  brokerPassword: pulumi.Output<string>;
  emqxCookie: pulumi.Output<string>;
  emqxDashboardPassword: pulumi.Output<string>;
}

export interface BrokerEndpoint {
  /** MQTT URL C2 uses on a given host index. */
  url(host: number): string;
  /** Prometheus targets (host:port) and path. */
  metricsTargets: string[];
  metricsPath: string;
  nodes: Member[];
}

export class MosquittoBroker extends pulumi.ComponentResource implements BrokerEndpoint {
  readonly nodes: Member[];
  readonly metricsTargets: string[];
  readonly metricsPath = '/metrics';
  readonly containers: docker.Container[] = [];

  constructor(name: string, args: BrokerArgs, opts?: pulumi.ComponentResourceOptions) {
    super('e4ops:broker:Mosquitto', name, {}, opts);
    const { settings: s, placement: pl } = args;
    const m = pl.members('mosquitto', 1)[0];
    this.nodes = [m];
    const vol = new docker.Volume(`${m.name}-data`, { name: `e4ops-${m.name}-data` }, pl.opts(m, this, { retainOnDelete: true }));
    const conf = renderMosquittoConf({
      listeners: [{ port: 1883 }], persistenceDir: '/mosquitto/data', allowAnonymous: s.broker.allowAnonymous, passwordFile: '/mosquitto/config/passwd',
    });
    const passwd = args.brokerPassword.apply((pw) => renderMosquittoPasswordFile([{ username: 'c2', password: pw }, { username: 'monitor', password: pw }]));
    this.containers.push(new docker.Container(m.name, {
      name: m.name, hostname: m.name,
      image: pl.remoteImage(m, s.broker.mosquittoImage),
      restart: RESTART,
      envs: pulumi.secret(args.brokerPassword.apply((pw) => [`MOSQUITTO_MONITOR_PASSWORD=${pw}`])),
      uploads: [
        { file: '/mosquitto/config/mosquitto.conf', content: conf },
        // PBKDF2 hashes; world-readable because mosquitto reads it after dropping to its own user.
        { file: '/mosquitto/config/passwd', content: pulumi.secret(passwd), permissions: '0644' },
      ],
      volumes: [{ volumeName: vol.name, containerPath: '/mosquitto/data' }],
      networksAdvanced: pl.networks(m, true, ['broker']),
      ports: [{ internal: 1883, external: s.publish.brokerPort, ip: s.publish.brokerAddress, protocol: 'tcp' }],
      healthcheck: {
        tests: ['CMD-SHELL', 'mosquitto_sub -h 127.0.0.1 -p 1883 -u monitor -P "$MOSQUITTO_MONITOR_PASSWORD" -t \'$SYS/broker/uptime\' -C 1 -W 5 >/dev/null'],
        interval: '15s', timeout: '8s', retries: 3, startPeriod: '10s',
      },
      labels: [{ label: 'e4ops.service', value: 'broker' }],
      ...memory(s.broker.memoryMb),
    }, pl.opts(m, this)));
    const exp = { name: 'mosquitto-exporter', index: 0, host: m.host };
    this.containers.push(new docker.Container(exp.name, {
      name: exp.name,
      image: pl.remoteImage(exp, s.broker.exporterImage),
      restart: RESTART,
      envs: pulumi.secret(args.brokerPassword.apply((pw) => ['BROKER_ENDPOINT=tcp://mosquitto-0:1883', 'MQTT_USER=monitor', `MQTT_PASS=${pw}`])),
      networksAdvanced: pl.networks(exp, false),
      labels: [{ label: 'e4ops.service', value: 'broker-exporter' }],
    }, pl.opts(exp, this)));
    this.metricsTargets = ['mosquitto-exporter:9234'];
    this.registerOutputs({});
  }

  url(): string { return 'tcp://mosquitto-0:1883'; }
}

export class EmqxCluster extends pulumi.ComponentResource implements BrokerEndpoint {
  readonly nodes: Member[];
  readonly metricsTargets: string[];
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
    this.registerOutputs({});
  }

  /** C2 on a host dials the local balancer, which spreads over the cluster. */
  url(host: number): string {
    return `tcp://${this.placement.perHost('haproxy')[host].name}:1883`;
  }
}
