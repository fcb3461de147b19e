import YAML from 'yaml';

// config.yaml of the automation engine (C2AE, github.com/teserakt-io/automation-engine). Keys follow
// its configs/config.yaml.example (db-*, c2-host-port, c2-cert, oc-agent-addr) plus the gRPC/HTTP
// listeners of later versions (5556 / 8886, as c2-facts says); not checked against a live engine.
// Secrets (db password, passphrase) come from the environment, not this file.

export interface AutomationEngineSettings {
  grpcHostPort?: string;
  httpHostPort?: string;
  cert: string;
  key: string;
  db: { host: string; database: string; username: string; secureConnection: 'enabled' | 'selfsigned' | 'insecure' };
  /** C2's gRPC endpoint and the CA/cert file that verifies it. */
  c2HostPort: string;
  c2Cert: string;
  ocAgentAddr?: string;
}

/** Render the engine's config.yaml. Pure. */
export function renderAutomationEngineConfig(s: AutomationEngineSettings): string {
  if (s.db.host.includes(':')) throw new Error(`automation engine db.host "${s.db.host}": host only (port 5432 is implied)`);
  const doc = {
    'grpc-host-port': s.grpcHostPort ?? '0.0.0.0:5556',
    'http-host-port': s.httpHostPort ?? '0.0.0.0:8886',
    'grpc-cert': s.cert, 'grpc-key': s.key, 'http-cert': s.cert, 'http-key': s.key,
    'db-type': 'postgres',
    'db-host': s.db.host,
    'db-database': s.db.database,
    'db-username': s.db.username,
    'db-secure-connection': s.db.secureConnection,
    'c2-host-port': s.c2HostPort,
    'c2-cert': s.c2Cert,
    'oc-agent-addr': s.ocAgentAddr ?? 'localhost:55678',
    'oc-sample-all': true,
  };
  return '# Rendered by e4ops (lib/render/automation-engine-config.ts); edits are overwritten.\n' + YAML.stringify(doc);
}
