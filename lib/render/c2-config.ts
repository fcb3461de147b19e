import YAML from 'yaml';

// C2 reads /opt/e4/configs/config.yaml (which must exist even when env vars set everything).
// Secrets are optional here on purpose: stacks pass them as E4C2_* environment variables (Pulumi
// secrets) so the rendered file, which lands in state and in backups, holds none.

export type C2CryptoMode = 'symkey' | 'pubkey';
export type C2DbSecureConnection = 'enabled' | 'selfsigned' | 'insecure';

export interface C2ConfigSettings {
  cryptoMode: C2CryptoMode;
  /** pubkey mode: raw 32-byte Curve25519 key file, relative to the configs dir or absolute. */
  c2PrivateKeyFile?: string;
  grpcHostPort?: string;
  grpcCert: string;
  grpcKey: string;
  httpHostPort?: string;
  /** Where the HTTPS gateway dials gRPC; grpcCert must carry this host as a SAN. */
  httpGrpcHostPort?: string;
  httpCert: string;
  httpKey: string;
  mqtt: {
    enabled?: boolean;
    broker: string;
    /** Must differ per replica: two clients with one id kick each other off the broker. */
    clientId: string;
    qosSub?: 0 | 1 | 2;
    username?: string;
    password?: string;
  };
  db: {
    type: 'postgres' | 'sqlite3';
    /** Host only: C2 always dials port 5432. */
    host: string;
    database: string;
    schema?: string;
    username: string;
    password?: string;
    encryptionPassphrase?: string;
    secureConnection?: C2DbSecureConnection;
  };
  /** OpenCensus agent (no TLS). */
  ocAgentAddr?: string;
  elasticsearch?: {
    enabled: boolean;
    urls: string[];
    messageLogging?: boolean;
    messageIndex?: string;
  };
  logLevel?: 'debug' | 'info' | 'warn' | 'error';
}

/** Defaults as C2 itself applies them; rendered explicitly so the file documents the deployment. */
export const C2_DEFAULTS = {
  grpcHostPort: '0.0.0.0:5555',
  httpHostPort: '0.0.0.0:8888',
  httpGrpcHostPort: '127.0.0.1:5555',
  mqttQosSub: 1,
  ocAgentAddr: 'localhost:55678',
  messageIndex: 'messages',
  logLevel: 'info',
} as const;

/** Render C2's config.yaml. Pure: same settings, same text. */
export function renderC2Config(s: C2ConfigSettings): string {
  if (s.db.host.includes(':')) {
    throw new Error(`c2 db.host "${s.db.host}" contains a port: C2 has no db port setting and always dials 5432; give the host only`);
  }
  if (s.db.encryptionPassphrase !== undefined && Buffer.byteLength(s.db.encryptionPassphrase) < 16) {
    throw new Error('c2 db.encryptionPassphrase is shorter than 16 bytes: C2 refuses to start; use a longer passphrase');
  }
  if (s.cryptoMode === 'pubkey' && !s.c2PrivateKeyFile) {
    throw new Error('c2 c2PrivateKeyFile is required in pubkey mode: give the path of the raw 32-byte Curve25519 key file');
  }
  const doc: Record<string, unknown> = {
    'crypto-mode': s.cryptoMode,
    ...(s.cryptoMode === 'pubkey' ? { 'crypto-c2-private-key': s.c2PrivateKeyFile } : {}),
    'grpc-host-port': s.grpcHostPort ?? C2_DEFAULTS.grpcHostPort,
    'grpc-cert': s.grpcCert,
    'grpc-key': s.grpcKey,
    'http-host-port': s.httpHostPort ?? C2_DEFAULTS.httpHostPort,
    'http-grpc-host-port': s.httpGrpcHostPort ?? C2_DEFAULTS.httpGrpcHostPort,
    'http-cert': s.httpCert,
    'http-key': s.httpKey,
    'mqtt-enabled': s.mqtt.enabled ?? true,
    'mqtt-broker': s.mqtt.broker,
    'mqtt-id': s.mqtt.clientId,
    'mqtt-qos-sub': s.mqtt.qosSub ?? C2_DEFAULTS.mqttQosSub,
    ...(s.mqtt.username !== undefined ? { 'mqtt-username': s.mqtt.username } : {}),
    ...(s.mqtt.password !== undefined ? { 'mqtt-password': s.mqtt.password } : {}),
    'db-type': s.db.type,
    'db-host': s.db.host,
    'db-database': s.db.database,
    ...(s.db.schema ? { 'db-schema': s.db.schema } : {}),
    'db-username': s.db.username,
    ...(s.db.password !== undefined ? { 'db-password': s.db.password } : {}),
    ...(s.db.encryptionPassphrase !== undefined ? { 'db-encryption-passphrase': s.db.encryptionPassphrase } : {}),
    'db-secure-connection': s.db.secureConnection ?? 'enabled',
    'oc-agent-addr': s.ocAgentAddr ?? C2_DEFAULTS.ocAgentAddr,
    'es-enable': s.elasticsearch?.enabled ?? false,
    ...(s.elasticsearch?.enabled
      ? {
          'es-urls': s.elasticsearch.urls.join(' '),
          'es-message-logging-enable': s.elasticsearch.messageLogging ?? true,
          'es-message-logging-index': s.elasticsearch.messageIndex ?? C2_DEFAULTS.messageIndex,
        }
      : {}),
    'log-level': s.logLevel ?? C2_DEFAULTS.logLevel,
  };
  return '# Rendered by e4ops (lib/render/c2-config.ts); edits are overwritten.\n' + YAML.stringify(doc);
}
