import * as pulumi from '@pulumi/pulumi';
import * as docker from '@pulumi/docker';
import { renderOcAgentConfig } from '../../lib/render/ocagent-yaml.ts';
import type { StackSettings } from '../../lib/settings/stack-settings.ts';
import { Placement, RESTART, type Member } from '../placement.ts';

// Tracing: Jaeger (all-in-one, in-memory) and one OpenCensus agent per host. C2 sends OpenCensus
// to `ocagent:55678` on its host; the agent exports traces to Jaeger and stats to Prometheus.

export const OC_AGENT_PORT = 55678;
export const OC_PROMETHEUS_PORT = 9998;

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

