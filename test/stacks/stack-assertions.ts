// Checks shared by the minimal and HA stack tests (what an operator cares about in any profile).
import YAML from 'yaml';
import { expect } from 'vitest';
import { containsSecret, reveal, type MockRecorder, type RecordedResource } from './pulumi-mocks.ts';

export const CONTAINER = 'docker:index/container:Container';

export function containers(rec: MockRecorder): Map<string, RecordedResource> {
  return new Map(rec.byType(CONTAINER).map((c) => [c.inputs.name as string, c]));
}

/** Image reference a container runs (RemoteImage name, or the built image's name). */
export function imageRef(rec: MockRecorder, c: RecordedResource): string {
  const id = reveal<string>(c.inputs.image);
  const remote = rec.byType('docker:index/remoteImage:RemoteImage').find((r) => `sha256:mock-${r.name}` === id);
  return remote ? remote.inputs.name : id;
}

export function upload(c: RecordedResource, file: string): { content?: string; contentBase64?: string; secret: boolean } | undefined {
  const list = (reveal<Array<Record<string, string>>>(c.inputs.uploads) ?? []);
  const idx = list.findIndex((u) => u.file === file);
  if (idx < 0) return undefined;
  const raw = c.inputs.uploads;
  const secret = containsSecret(Array.isArray(raw) ? raw[idx] : raw);
  return { content: list[idx].content, contentBase64: list[idx].contentBase64, secret };
}

export function envOf(c: RecordedResource): Record<string, string> {
  const list = reveal<string[]>(c.inputs.envs) ?? [];
  return Object.fromEntries(list.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
}

export function c2Configs(rec: MockRecorder): Array<{ name: string; config: Record<string, unknown> }> {
  return [...containers(rec).values()].filter((c) => /^c2-\d+$/.test(c.inputs.name)).map((c) => ({
    name: c.inputs.name, config: YAML.parse(upload(c, '/opt/e4/configs/config.yaml')!.content!),
  }));
}

/** Every secret value the program used (generated passwords, given secrets, private keys). */
export function secretValues(rec: MockRecorder, given: string[] = []): string[] {
  const out = [...given];
  for (const r of rec.resources) {
    if (r.type === 'random:index/randomPassword:RandomPassword') out.push(`mock-generated-${r.name}-0123456789abcdef`);
    if (r.type === 'tls:index/privateKey:PrivateKey') out.push(`mock-${r.name}`);
  }
  return out;
}

export function assertCommonStackProperties(rec: MockRecorder, opts: { expectC2: number }) {
  const all = containers(rec);
  const c2 = [...all.values()].filter((c) => /^c2-\d+$/.test(c.inputs.name));
  expect(c2).toHaveLength(opts.expectC2);

  // Distinct MQTT client ids (two replicas with one id kick each other off the broker).
  const ids = c2Configs(rec).map((x) => x.config['mqtt-id']);
  expect(new Set(ids).size).toBe(opts.expectC2);

  // Every container restarts by itself; C2 replicas carry the HTTPS health check.
  // (the one-shot dashboards installer is meant to exit and stay exited)
  for (const c of all.values()) expect(c.inputs.restart, c.inputs.name).toBe(c.inputs.name === 'dashboards-installer' ? 'no' : 'unless-stopped');
  for (const c of c2) expect(reveal(c.inputs.healthcheck).tests).toEqual(['CMD', 'curl', '-fsk', 'https://127.0.0.1:8888/e4/clients/count']);

  // Secrets: env vars holding passwords/passphrases are secret; key files and C2's config (MQTT password) too.
  for (const c of all.values()) {
    const env = envOf(c);
    if (Object.keys(env).some((k) => /PASSWORD|PASSPHRASE|PASS$|COOKIE|DATA_SOURCE_NAME|ES_URI|ES_URLS/.test(k))) {
      expect(containsSecret(c.inputs.envs), `${c.inputs.name} envs must be a secret`).toBe(true);
    }
    for (const u of reveal<Array<{ file: string }>>(c.inputs.uploads) ?? []) {
      if (/\.key$|passwd|users\.csv|c2-key$/.test(u.file)) expect(upload(c, u.file)!.secret, `${c.inputs.name}:${u.file}`).toBe(true);
    }
  }
  for (const c of c2) {
    expect(upload(c, '/opt/e4/configs/config.yaml')!.secret).toBe(true);
    const env = envOf(c);
    expect(env.E4C2_DB_PASSWORD).toBeTruthy();
    expect(Buffer.byteLength(env.E4C2_DB_ENCRYPTION_PASSPHRASE)).toBeGreaterThanOrEqual(16);
    // The file itself holds neither the DB password nor the passphrase.
    const text = upload(c, '/opt/e4/configs/config.yaml')!.content!;
    expect(text).not.toContain(env.E4C2_DB_PASSWORD);
    expect(text).not.toContain(env.E4C2_DB_ENCRYPTION_PASSPHRASE);
  }

  // C2's certificate: the gateway dials 127.0.0.1:5555 and verifies the gRPC certificate.
  for (const c of c2) {
    const csr = rec.resources.find((r) => r.type === 'tls:index/certRequest:CertRequest' && r.name === `${c.inputs.name}-csr`)!;
    expect(csr.inputs.ipAddresses).toContain('127.0.0.1');
    expect(csr.inputs.dnsNames).toEqual(expect.arrayContaining(['localhost', c.inputs.name]));
    expect(rec.resources.find((r) => r.name === `${c.inputs.name}-key`)!.inputs.algorithm).toBe('RSA');
  }

  // Databases and Elasticsearch publish nothing; they sit on the internal network only.
  const internal = rec.byType('docker:index/network:Network').filter((n) => n.inputs.internal === true).map((n) => n.inputs.name);
  expect(internal.length).toBeGreaterThan(0);
  for (const c of all.values()) {
    if (/^(postgres-\d+|pg-\d+|etcd-\d+|es-\d+|kibana|prometheus|jaeger)$/.test(c.inputs.name)) {
      expect(reveal(c.inputs.ports) ?? [], `${c.inputs.name} must not publish ports`).toEqual([]);
      expect(reveal<Array<{ name: string }>>(c.inputs.networksAdvanced).map((n) => n.name)).toEqual(internal.slice(0, 1));
    }
  }
}

export function assertNoSecretInOutputs(outputs: Record<string, unknown>, secrets: string[]) {
  const text = JSON.stringify(outputs);
  for (const s of secrets) expect(text, 'a stack output leaks a secret').not.toContain(s);
}
