// What one C2 replica of a stack gets: its C2ConfigSettings (rendered by renderC2Config) and the
// SANs of its certificate. Pure, shared by stacks/components/c2.ts and the real-C2 test.
import type { C2ConfigSettings } from './c2-config.ts';
import type { StackSettings } from '../settings/stack-settings.ts';

export const C2_CERT_FILE = 'c2.crt';
export const C2_KEY_FILE = 'c2.key';
export const C2_PUBKEY_FILE = 'c2-key';
/**
 * Path the stack health-checks C2 on (Docker HEALTHCHECK, HAProxy, blackbox probe). Not
 * /e4/health-check: the pinned C2 build answers 404 there (test/render/c2-replica-real.test.ts);
 * GET /e4/clients/count exists in every version and also proves gateway -> gRPC -> PostgreSQL.
 */
export const C2_HEALTH_PATH = '/e4/clients/count';

export interface C2ReplicaEndpoints {
  /** PostgreSQL host (C2 always dials port 5432). */
  dbHost: string;
  /** tcp://host:port of the broker. */
  brokerUrl: string;
  brokerPassword: string;
  ocAgentAddr?: string;
  /** Listen addresses; default C2's own 0.0.0.0:5555 / 0.0.0.0:8888 (tests move them). */
  grpcHostPort?: string;
  httpHostPort?: string;
}

/** Replica i logs MQTT messages into Elasticsearch only when it is replica 0 (else every message twice). */
export function c2ReplicaLogsMessages(s: StackSettings, index: number): boolean {
  return s.elasticsearch.enabled && s.c2.messageLogging && index === 0;
}

export function c2ReplicaMqttClientId(s: StackSettings, index: number): string {
  return `${s.c2.mqttIdPrefix}-${index}`;
}

/**
 * C2's config.yaml settings for replica `index`. The DB password, the passphrase and (when message
 * logging) the Elasticsearch URLs with credentials are NOT here: they come from E4C2_* env secrets.
 * The MQTT password is (C2 reads it from the file only), so the rendered file is a secret.
 */
export function c2ReplicaConfigSettings(s: StackSettings, index: number, e: C2ReplicaEndpoints): C2ConfigSettings {
  const grpcPort = (e.grpcHostPort ?? '0.0.0.0:5555').split(':').pop();
  const logs = c2ReplicaLogsMessages(s, index);
  return {
    cryptoMode: s.c2.cryptoMode,
    ...(s.c2.cryptoMode === 'pubkey' ? { c2PrivateKeyFile: C2_PUBKEY_FILE } : {}),
    ...(e.grpcHostPort ? { grpcHostPort: e.grpcHostPort } : {}),
    ...(e.httpHostPort ? { httpHostPort: e.httpHostPort } : {}),
    // The gateway dials gRPC here and verifies the gRPC certificate: it carries 127.0.0.1 as a SAN.
    httpGrpcHostPort: `127.0.0.1:${grpcPort}`,
    grpcCert: C2_CERT_FILE, grpcKey: C2_KEY_FILE, httpCert: C2_CERT_FILE, httpKey: C2_KEY_FILE,
    mqtt: { broker: e.brokerUrl, clientId: c2ReplicaMqttClientId(s, index), username: 'c2', password: e.brokerPassword },
    db: {
      type: 'postgres', host: e.dbHost, database: s.postgres.database, username: s.postgres.username,
      // C2 refuses to start without a schema ("no schema supplied").
      schema: 'public',
      secureConnection: s.c2.dbSecureConnection,
    },
    ...(e.ocAgentAddr ? { ocAgentAddr: e.ocAgentAddr } : {}),
    elasticsearch: logs ? { enabled: true, urls: [], messageLogging: true, messageIndex: s.elasticsearch.messageIndex } : { enabled: false, urls: [] },
    logLevel: s.c2.logLevel,
  };
}

/** SANs of replica `name`'s certificate: its names, localhost/127.0.0.1 (gateway → gRPC), host and public addresses. */
export function c2CertificateSans(name: string, opts: { extraDnsNames?: string[]; addresses?: string[] } = {}): { dnsNames: string[]; ipAddresses: string[] } {
  return {
    dnsNames: [...new Set([name, 'c2', 'localhost', ...(opts.extraDnsNames ?? [])])],
    ipAddresses: [...new Set(['127.0.0.1', ...(opts.addresses ?? []).filter((a) => a !== '0.0.0.0')])],
  };
}
