import * as pulumi from '@pulumi/pulumi';
import * as docker from '@pulumi/docker';
import { renderC2Config } from '../../lib/render/c2-config.ts';
import { c2ReplicaConfigSettings, c2CertificateSans, c2ReplicaLogsMessages, c2ReplicaMqttClientId, C2_CERT_FILE, C2_KEY_FILE, C2_PUBKEY_FILE, C2_HEALTH_PATH } from '../../lib/render/c2-replica.ts';
import type { StackSettings } from '../../lib/settings/stack-settings.ts';
import { Placement, RESTART, memory, dropPrivilegesCommand, FAST_DNS_FAILURE, type Member } from '../placement.ts';
import type { Pki } from '../pki.ts';

// C2 replicas. Each gets: config.yaml (rendered; the MQTT password is in it, so the upload is a
// secret), an RSA certificate whose SANs include 127.0.0.1/localhost (the gateway dials gRPC on
// 127.0.0.1:5555 and verifies it) and its service names, its own MQTT client id, an HTTPS health
// check (C2_HEALTH_PATH), a restart policy, and DB password/passphrase as E4C2_* environment secrets.
// Elasticsearch message logging runs on replica 0 only (two would index every message twice).

export const C2_CONFIG_DIR = '/opt/e4/configs';
/** Where stacks/docker/c2.Dockerfile puts the server (a prebuilt c2.image must keep it there). */
export const C2_BINARY = '/opt/e4/bin/c2';
export const C2_HEALTH_URL = `https://127.0.0.1:8888${C2_HEALTH_PATH}`;

export interface C2ClusterArgs {
  settings: StackSettings;
  placement: Placement;
  pki: Pki;
  /** Host (no port: C2 always dials 5432) of the PostgreSQL endpoint, per host index. */
  dbHost: (host: number) => string;
  /** MQTT broker URL (tcp://host:port) per host index. */
  brokerUrl: (host: number) => string;
  /** OpenCensus agent host:port per host index, when tracing is on. */
  ocAgentAddr?: (host: number) => string;
  elasticsearchUrls?: pulumi.Output<string[]>;
  secrets: { dbPassword: pulumi.Output<string>; passphrase: pulumi.Output<string>; brokerPassword: pulumi.Output<string> };
  /** Publish 5555/8888 on publish.c2Address (minimal profile: no balancer in front). */
  publishApi: boolean;
  /** Extra DNS names for the certificate (balancer names, public names). */
  extraDnsNames?: string[];
  /** pubkey mode: the C2 Curve25519 private key (base64 of 32 raw bytes). */
  c2PrivateKeyBase64?: pulumi.Output<string>;
}

export class C2Cluster extends pulumi.ComponentResource {
  readonly replicas: Member[];
  readonly containers: docker.Container[];
  readonly mqttClientIds: string[];

  constructor(name: string, args: C2ClusterArgs, opts?: pulumi.ComponentResourceOptions) {
    super('e4ops:c2:C2Cluster', name, {}, opts);
    const { settings: s, placement: pl } = args;
    this.replicas = pl.members('c2', s.c2.replicas);
    this.mqttClientIds = this.replicas.map((r) => c2ReplicaMqttClientId(s, r.index));
    this.containers = this.replicas.map((r) => {
      const hostAddr = s.hosts[r.host].address;
      const sans = c2CertificateSans(r.name, {
        extraDnsNames: args.extraDnsNames,
        addresses: [...(hostAddr ? [hostAddr] : []), ...(args.publishApi ? [s.publish.c2Address] : [])],
      });
      const cert = args.pki.issue(r.name, sans.dnsNames, sans.ipAddresses);
      const messageLogging = c2ReplicaLogsMessages(s, r.index);
      const configYaml = args.secrets.brokerPassword.apply((brokerPassword) => renderC2Config(c2ReplicaConfigSettings(s, r.index, {
        dbHost: args.dbHost(r.host), brokerUrl: args.brokerUrl(r.host), brokerPassword,
        ...(args.ocAgentAddr ? { ocAgentAddr: args.ocAgentAddr(r.host) } : {}),
      })));
      const envs = pulumi.all([args.secrets.dbPassword, args.secrets.passphrase, args.elasticsearchUrls ?? pulumi.output([] as string[])])
        .apply(([dbPassword, passphrase, esUrls]) => [
          `E4C2_DB_PASSWORD=${dbPassword}`,
          `E4C2_DB_ENCRYPTION_PASSPHRASE=${passphrase}`,
          ...(messageLogging ? [`E4C2_ES_URLS=${esUrls.join(' ')}`] : []),
        ]);
      const uploads: pulumi.Input<docker.types.input.ContainerUpload>[] = [
        { file: `${C2_CONFIG_DIR}/config.yaml`, content: pulumi.secret(configYaml), permissions: '0600' },
        { file: `${C2_CONFIG_DIR}/${C2_CERT_FILE}`, content: cert.certPem, permissions: '0644' },
        { file: `${C2_CONFIG_DIR}/${C2_KEY_FILE}`, content: cert.keyPem, permissions: '0600' },
        { file: `${C2_CONFIG_DIR}/ca.crt`, content: args.pki.caCertPem, permissions: '0644' },
      ];
      if (s.c2.cryptoMode === 'pubkey' && args.c2PrivateKeyBase64) {
        uploads.push({ file: `${C2_CONFIG_DIR}/${C2_PUBKEY_FILE}`, contentBase64: pulumi.secret(args.c2PrivateKeyBase64), permissions: '0600' });
      }
      const image = s.c2.image
        ? pl.remoteImage(r, s.c2.image)
        : pl.builtImage(r, 'c2', 'c2.Dockerfile', { C2_VERSION: s.c2.goModuleVersion });
      const logs = new docker.Volume(`${r.name}-logs`, { name: `e4ops-${r.name}-logs` }, pl.opts(r, this));
      const ports: docker.types.input.ContainerPort[] = [
        ...(args.publishApi ? [
          { internal: 5555, external: s.publish.grpcPort, ip: s.publish.c2Address, protocol: 'tcp' },
          { internal: 8888, external: s.publish.httpPort, ip: s.publish.c2Address, protocol: 'tcp' },
        ] : []),
        ...pl.peerPorts(r, 'c2', [5555, 8888]),
      ];
      return new docker.Container(r.name, {
        name: r.name,
        hostname: r.name,
        image,
        restart: RESTART,
        // Uploads land owned by root (config.yaml and the key are 0600): start as root, give the configs
        // folder to the e4 user (pubkey mode rewrites its key file there), and run C2 as e4.
        user: 'root',
        entrypoints: dropPrivilegesCommand('e4', [C2_CONFIG_DIR, '/var/log'], [C2_BINARY]),
        envs: pulumi.secret(envs),
        uploads,
        volumes: [{ volumeName: logs.name, containerPath: '/var/log' }],
        networksAdvanced: pl.networks(r, args.publishApi, ['c2']),
        ports,
        healthcheck: { tests: ['CMD', 'curl', '-fsk', C2_HEALTH_URL], interval: '10s', timeout: '5s', retries: 3, startPeriod: '30s' },
        labels: [{ label: 'e4ops.service', value: 'c2' }, { label: 'e4ops.mqtt-id', value: this.mqttClientIds[r.index] }, { label: 'e4ops.message-logging', value: String(messageLogging) }],
        logOpts: { 'max-size': '50m', 'max-file': '5' },
        dnsOpts: FAST_DNS_FAILURE,
        ...memory(s.c2.memoryMb),
      }, pl.opts(r, this));
    });
    this.registerOutputs({ replicas: this.replicas.map((r) => r.name) });
  }
}
