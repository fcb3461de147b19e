import * as pulumi from '@pulumi/pulumi';
import * as docker from '@pulumi/docker';
import { renderHaproxyCfg } from '../../lib/render/haproxy-cfg.ts';
import type { StackSettings } from '../../lib/settings/stack-settings.ts';
import { Placement, RESTART, type Member } from '../placement.ts';
import { PATRONI_REST_PORT } from './patroni-cluster.ts';
import { C2_HEALTH_PATH } from '../../lib/render/c2-replica.ts';

// HA profile: one HAProxy per Docker host. It publishes the C2 API (5555 gRPC, 8888 HTTPS, both
// TLS passthrough with C2 health checks on C2_HEALTH_PATH) and MQTT on the configured addresses, and serves the
// Postgres primary as `pg-primary:5432` on the host's internal network (never published).

export interface LoadBalancerArgs {
  settings: StackSettings;
  placement: Placement;
  c2Replicas: Member[];
  patroniMembers: Member[];
  brokerNodes: Member[];
}

export class LoadBalancers extends pulumi.ComponentResource {
  readonly balancers: Member[];
  readonly containers: docker.Container[] = [];
  readonly configs: string[] = [];

  constructor(name: string, args: LoadBalancerArgs, opts?: pulumi.ComponentResourceOptions) {
    super('e4ops:lb:LoadBalancers', name, {}, opts);
    const { settings: s, placement: pl } = args;
    this.balancers = pl.perHost('haproxy');
    for (const b of this.balancers) {
      const cfg = renderHaproxyCfg({
        c2: {
          grpcBind: ':5555', httpBind: ':8888', healthPath: C2_HEALTH_PATH,
          replicas: args.c2Replicas.map((r) => ({ name: r.name, grpcAddress: pl.address(r, 'c2', 5555), httpAddress: pl.address(r, 'c2', 8888), healthPort: Number(pl.address(r, 'c2', 8888).split(':')[1]) })),
        },
        postgres: { bind: ':5432', members: args.patroniMembers.map((m) => ({ name: m.name, address: pl.address(m, 'postgres', 5432), checkPort: PATRONI_REST_PORT })) },
        mqtt: { bind: ':1883', nodes: args.brokerNodes.map((n) => ({ name: n.name, address: pl.address(n, 'emqx', 1883) })) },
        statsBind: ':8404',
        // Checks every second: a dead C2 replica is out within 3 s, a promoted Patroni leader in within 2 s.
        checkIntervalMs: 1000,
      });
      this.configs.push(cfg);
      this.containers.push(new docker.Container(b.name, {
        name: b.name, hostname: b.name,
        image: pl.remoteImage(b, s.loadBalancer.image),
        restart: RESTART,
        uploads: [{ file: '/usr/local/etc/haproxy/haproxy.cfg', content: cfg }],
        networksAdvanced: pl.networks(b, true, ['pg-primary', 'c2-api']),
        ports: [
          { internal: 5555, external: s.publish.grpcPort, ip: s.publish.c2Address, protocol: 'tcp' },
          { internal: 8888, external: s.publish.httpPort, ip: s.publish.c2Address, protocol: 'tcp' },
          { internal: 1883, external: s.publish.brokerPort, ip: s.publish.brokerAddress, protocol: 'tcp' },
        ],
        // The stats listener answers while HAProxy runs. Not `haproxy -c`: it resolves every backend name,
        // and on the internal network a name of a container that is down takes seconds to fail.
        healthcheck: { tests: ['CMD', 'bash', '-c', 'exec 3<>/dev/tcp/127.0.0.1/8404'], interval: '10s', timeout: '5s', retries: 3 },
        labels: [{ label: 'e4ops.service', value: 'haproxy' }],
      }, pl.opts(b, this)));
    }
    this.registerOutputs({});
  }
}
