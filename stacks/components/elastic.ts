import * as pulumi from '@pulumi/pulumi';
import * as docker from '@pulumi/docker';
import type { StackSettings } from '../../lib/settings/stack-settings.ts';
import { Placement, RESTART, memory, type Member } from '../placement.ts';
import type { Pki } from '../pki.ts';

// Elasticsearch 7.17 (C2's message logging needs 7.x) and Kibana, internal network only, security
// on (elastic password is a secret; transport TLS between nodes with certificates from the stack CA).
// Elasticsearch and Kibana 7.17 are under the Elastic License 2.0 / SSPL (see README).

export interface ElasticArgs {
  settings: StackSettings;
  placement: Placement;
  pki: Pki;
  elasticPassword: pulumi.Output<string>;
}

const CERTS = '/usr/share/elasticsearch/config/certs';

export class ElasticStack extends pulumi.ComponentResource {
  readonly nodes: Member[];
  readonly containers: docker.Container[] = [];
  /** http://elastic:PASSWORD@node:9200 for each node (secret). */
  readonly urlsWithCredentials: pulumi.Output<string[]>;
  /** host:port of each node (no credentials). */
  readonly httpHosts: string[];
  /** The Elasticsearch node containers and Kibana: `pulumi up` waits until each reports healthy. */
  readonly nodeContainers: docker.Container[] = [];
  readonly kibana: docker.Container;

  constructor(name: string, args: ElasticArgs, opts?: pulumi.ComponentResourceOptions) {
    super('e4ops:elastic:ElasticStack', name, {}, opts);
    const { settings: s, placement: pl } = args;
    const es = s.elasticsearch;
    this.nodes = pl.members('es', es.nodes);
    this.httpHosts = this.nodes.map((n) => pl.address(n, 'es', 9200));
    const multi = es.nodes > 1;
    for (const n of this.nodes) {
      const vol = new docker.Volume(`${n.name}-data`, { name: `e4ops-${n.name}-data` }, pl.opts(n, this, { retainOnDelete: true }));
      const env: string[] = [
        'cluster.name=e4ops', `node.name=${n.name}`, 'bootstrap.memory_lock=false',
        `ES_JAVA_OPTS=-Xms${es.heapMb}m -Xmx${es.heapMb}m`, 'xpack.security.enabled=true', 'ingest.geoip.downloader.enabled=false',
        ...(multi ? [
          `discovery.seed_hosts=${this.nodes.filter((o) => o !== n).map((o) => pl.address(o, 'es', 9300)).join(',')}`,
          `cluster.initial_master_nodes=${this.nodes.map((o) => o.name).join(',')}`,
          ...(pl.multiHost ? [`network.publish_host=${s.hosts[n.host].address}`] : []),
          'xpack.security.transport.ssl.enabled=true',
          'xpack.security.transport.ssl.verification_mode=certificate',
          `xpack.security.transport.ssl.key=${CERTS}/node.key`,
          `xpack.security.transport.ssl.certificate=${CERTS}/node.crt`,
          `xpack.security.transport.ssl.certificate_authorities=${CERTS}/ca.crt`,
        ] : ['discovery.type=single-node']),
      ];
      const uploads: pulumi.Input<docker.types.input.ContainerUpload>[] = [];
      if (multi) {
        const cert = args.pki.issue(n.name, [n.name], s.hosts[n.host].address ? [s.hosts[n.host].address!] : []);
        uploads.push(
          { file: `${CERTS}/node.key`, content: cert.keyPem, permissions: '0640' },
          { file: `${CERTS}/node.crt`, content: cert.certPem },
          { file: `${CERTS}/ca.crt`, content: args.pki.caCertPem },
        );
      }
      const node = new docker.Container(n.name, {
        name: n.name, hostname: n.name,
        image: pl.remoteImage(n, es.image),
        restart: RESTART,
        envs: pulumi.secret(args.elasticPassword.apply((pw) => [...env, `ELASTIC_PASSWORD=${pw}`])),
        uploads,
        volumes: [{ volumeName: vol.name, containerPath: '/usr/share/elasticsearch/data' }],
        networksAdvanced: pl.networks(n, false),
        ports: pl.peerPorts(n, 'es', [9200, 9300]),
        ulimits: [{ name: 'nofile', soft: 65535, hard: 65535 }],
        // Healthy once the cluster has a master and is at least yellow (writes succeed from then on).
        healthcheck: {
          tests: ['CMD-SHELL', 'curl -fs -u "elastic:$ELASTIC_PASSWORD" "http://127.0.0.1:9200/_cluster/health?wait_for_status=yellow&timeout=5s" >/dev/null'],
          interval: '15s', timeout: '10s', retries: 5, startPeriod: '90s',
        },
        wait: true, waitTimeout: 600,
        labels: [{ label: 'e4ops.service', value: 'elasticsearch' }],
        ...memory(es.memoryMb),
      }, pl.opts(n, this));
      this.nodeContainers.push(node);
      this.containers.push(node);
    }
    this.urlsWithCredentials = pulumi.secret(args.elasticPassword.apply((pw) => this.httpHosts.map((h) => `http://elastic:${pw}@${h}`)));

    const k = { name: 'kibana', index: 0, host: 0 };
    this.kibana = new docker.Container(k.name, {
      name: k.name, hostname: k.name,
      image: pl.remoteImage(k, es.kibanaImage),
      restart: RESTART,
      envs: pulumi.secret(args.elasticPassword.apply((pw) => [
        `ELASTICSEARCH_HOSTS=${JSON.stringify(this.httpHosts.map((h) => `http://${h}`))}`,
        'ELASTICSEARCH_USERNAME=elastic', `ELASTICSEARCH_PASSWORD=${pw}`, 'TELEMETRY_ENABLED=false',
      ])),
      networksAdvanced: pl.networks(k, false),
      // With security on, /api/status answers 401 to anonymous callers: ask as the elastic user.
      healthcheck: { tests: ['CMD-SHELL', 'curl -fs -u "elastic:$ELASTICSEARCH_PASSWORD" http://127.0.0.1:5601/api/status >/dev/null'], interval: '30s', timeout: '10s', retries: 5, startPeriod: '120s' },
      wait: true, waitTimeout: 600,
      labels: [{ label: 'e4ops.service', value: 'kibana' }],
    }, pl.opts(k, this));
    this.containers.push(this.kibana);

    const x = { name: 'elasticsearch-exporter', index: 0, host: 0 };
    this.containers.push(new docker.Container(x.name, {
      name: x.name,
      image: pl.remoteImage(x, es.exporterImage),
      restart: RESTART,
      envs: pulumi.secret(this.urlsWithCredentials.apply((u) => [`ES_URI=${u[0]}`])),
      networksAdvanced: pl.networks(x, false),
      labels: [{ label: 'e4ops.service', value: 'elasticsearch-exporter' }],
    }, pl.opts(x, this)));
    this.registerOutputs({});
  }
}
