import YAML from 'yaml';

// config.yaml of the automation engine (C2AE, github.com/teserakt-io/automation-engine, cmd/api).
// Keys as its internal/config/config.go binds them (listen-grpc 5556, listen-http 8886,
// http-grpc-addr, db-*, c2-host-port, c2-cert, oc-*); not checked against a live engine.
// Secrets (db password, passphrase) come from C2AE_DB_PASSWORD / C2AE_DB_ENCRYPTION_PASSPHRASE.

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
  const grpc = s.grpcHostPort ?? '0.0.0.0:5556';
  const doc = {
    'listen-grpc': grpc,
    'listen-http': s.httpHostPort ?? '0.0.0.0:8886',
    // The HTTP gateway dials gRPC here and verifies the certificate: it carries 127.0.0.1.
    'http-grpc-addr': `127.0.0.1:${grpc.split(':').pop()}`,
    'grpc-cert': s.cert, 'grpc-key': s.key, 'http-cert': s.cert, 'http-key': s.key,
    'db-type': 'postgres',
    'db-host': s.db.host,
    'db-database': s.db.database,
    // Required by the engine ("no schema supplied" otherwise).
    'db-schema': 'public',
    'db-username': s.db.username,
    'db-secure-connection': s.db.secureConnection,
    'c2-host-port': s.c2HostPort,
    'c2-cert': s.c2Cert,
    'oc-agent-addr': s.ocAgentAddr ?? 'localhost:55678',
    'oc-sample-all': true,
    'log-level': 'info',
  };
  return '# Rendered by e4ops (lib/render/automation-engine-config.ts); edits are overwritten.\n' + YAML.stringify(doc);
}
