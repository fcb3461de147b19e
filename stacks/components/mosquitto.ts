import * as pulumi from '@pulumi/pulumi';
import * as docker from '@pulumi/docker';
import { renderMosquittoConf, renderMosquittoPasswordFile } from '../../lib/render/mosquitto-conf.ts';
import { RESTART, memory, type Member } from '../placement.ts';
import type { BrokerArgs, BrokerEndpoint } from './broker.ts';

// Minimal profile broker: one Mosquitto with persistence (C2's retained QoS 2 commands survive
// restarts), published on publish.brokerAddress, plus mosquitto_exporter.

export class MosquittoBroker extends pulumi.ComponentResource implements BrokerEndpoint {
  readonly nodes: Member[];
  readonly metricsTargets: string[];
  readonly mqttTargets: string[];
  readonly metricsPath = '/metrics';
  readonly containers: docker.Container[] = [];

  constructor(name: string, args: BrokerArgs, opts?: pulumi.ComponentResourceOptions) {
    super('e4ops:broker:Mosquitto', name, {}, opts);
    const { settings: s, placement: pl } = args;
    const m = pl.members('mosquitto', 1)[0];
    // Behind a balancer that publishes brokerPort, a second binding of it would fail to start.
    const publish = args.publish ?? true;
    this.nodes = [m];
    this.mqttTargets = [`${m.name}:1883`];
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
      networksAdvanced: pl.networks(m, publish, ['broker']),
      ports: publish ? [{ internal: 1883, external: s.publish.brokerPort, ip: s.publish.brokerAddress, protocol: 'tcp' }] : [],
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

