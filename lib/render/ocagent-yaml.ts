import YAML from 'yaml';

// OpenCensus agent (omnition/opencensus-agent 0.1.x) config: receives C2's OpenCensus traces and
// stats on 55678, exports traces to Jaeger's collector and stats as Prometheus metrics. The
// Prometheus namespace decides metric names (c2_grpc_io_server_* with namespace "c2").
// No agent binary exists in Debian: checked by tests for structure only.

export interface OcAgentSettings {
  receiverAddress: string;
  prometheus: { address: string; namespace: string };
  jaeger?: { collectorEndpoint: string; serviceName?: string };
  zpagesPort?: number;
}

/** Render ocagent.yaml. Pure. */
export function renderOcAgentConfig(s: OcAgentSettings): string {
  const doc = {
    receivers: { opencensus: { address: s.receiverAddress } },
    exporters: {
      prometheus: { namespace: s.prometheus.namespace, address: s.prometheus.address },
      ...(s.jaeger ? { jaeger: { collector_endpoint: s.jaeger.collectorEndpoint, ...(s.jaeger.serviceName ? { service_name: s.jaeger.serviceName } : {}) } } : {}),
    },
    ...(s.zpagesPort ? { zpages: { port: s.zpagesPort } } : {}),
  };
  return '# Rendered by e4ops (lib/render/ocagent-yaml.ts); edits are overwritten.\n' + YAML.stringify(doc);
}
