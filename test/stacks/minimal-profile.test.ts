import { describe, it, expect, beforeAll } from 'vitest';
import YAML from 'yaml';
import fs from 'node:fs';
import { installStackMocks, quiesce, settle, reveal, containsSecret, type MockRecorder } from './pulumi-mocks.ts';
import { assertCommonStackProperties, assertNoSecretInOutputs, containers, imageRef, secretValues, envOf, upload } from './stack-assertions.ts';

// The Pulumi program (Pulumi.yaml main) under Pulumi's mocks with Pulumi.minimal.yaml's settings,
// as `pulumi preview` would run it. The Pulumi engine and Docker cannot run on the project's machines.
describe('minimal profile (Pulumi.minimal.yaml) under Pulumi mocks', () => {
  let rec: MockRecorder;
  let outputs: Record<string, unknown> = {};
  const passphrase = 'an escrowed passphrase of 40 bytes......';

  beforeAll(async () => {
    const stackFile = YAML.parse(fs.readFileSync('Pulumi.minimal.yaml', 'utf8'));
    rec = await installStackMocks('minimal', {
      'e4ops:settings': JSON.stringify(stackFile.config['e4ops:settings']),
      'e4ops:c2DbPassphrase': passphrase,
    }, ['e4ops:c2DbPassphrase']);
    const program = await import('../../stacks/index.ts');
    await quiesce(rec);
    for (const [k, v] of Object.entries(program)) outputs[k] = (await settle(v as never)).value;
  });

  it('deploys C2, PostgreSQL on a named volume and Mosquitto, and nothing else', () => {
    expect([...containers(rec).keys()].sort()).toEqual(['c2-0', 'mosquitto-0', 'mosquitto-exporter', 'postgres-0']);
    const pg = containers(rec).get('postgres-0')!;
    const vol = reveal<Array<{ volumeName: string; containerPath: string }>>(pg.inputs.volumes);
    expect(vol).toEqual([{ volumeName: 'e4ops-postgres-0-data', containerPath: '/var/lib/postgresql/data' }]);
    expect(rec.byType('docker:index/volume:Volume').map((v) => v.inputs.name)).toContain('e4ops-postgres-0-data');
    expect(rec.byType('pulumi:providers:docker').map((p) => p.inputs.host)).toEqual(['unix:///var/run/docker.sock']);
  });

  it('has the properties every profile needs (ids, health checks, secrets, certificates, no DB/ES ports)', () => {
    assertCommonStackProperties(rec, { expectC2: 1 });
    // The secret check sees Pulumi's secret marking (a plain env list would fail it).
    expect(containsSecret(containers(rec).get('c2-0')!.inputs.envs)).toBe(true);
    expect(containsSecret(containers(rec).get('c2-0')!.inputs.labels)).toBe(false);
  });

  it('publishes only the C2 API and the broker, on the configured addresses', () => {
    const published = [...containers(rec).values()].flatMap((c) => (reveal<Array<{ internal: number }>>(c.inputs.ports) ?? []).map((p) => ({ c: c.inputs.name as string, ...p })))
      .sort((a, b) => `${a.c}:${a.internal}`.localeCompare(`${b.c}:${b.internal}`));
    expect(published).toEqual([
      { c: 'c2-0', internal: 5555, external: 5555, ip: '127.0.0.1', protocol: 'tcp' },
      { c: 'c2-0', internal: 8888, external: 8888, ip: '127.0.0.1', protocol: 'tcp' },
      { c: 'mosquitto-0', internal: 1883, external: 1883, ip: '0.0.0.0', protocol: 'tcp' },
    ]);
  });

  it('runs C2 built from its Go module, against pg-primary, without Elasticsearch logging', () => {
    const c2 = containers(rec).get('c2-0')!;
    const build = rec.byType('docker:index/image:Image').find((i) => i.inputs.imageName === imageRef(rec, c2))!;
    expect(build.inputs.build.args.C2_VERSION).toMatch(/^v0\.0\.0-2019/);
    const cfg = YAML.parse(upload(c2, '/opt/e4/configs/config.yaml')!.content!);
    expect(cfg).toMatchObject({ 'db-type': 'postgres', 'db-host': 'pg-primary', 'mqtt-broker': 'tcp://mosquitto-0:1883', 'mqtt-id': 'e4c2-0', 'es-enable': false });
    expect(envOf(c2).E4C2_DB_ENCRYPTION_PASSPHRASE).toBe(passphrase);
    expect(imageRef(rec, containers(rec).get('postgres-0')!)).toBe('postgres:15-bookworm');
  });

  it('stack outputs: endpoints, the plain host-loss statement, no secret', () => {
    expect(outputs.c2GrpcEndpoint).toBe('127.0.0.1:5555');
    expect(outputs.brokerEndpoint).toBe('tcp://0.0.0.0:1883');
    expect(outputs.hostLossTolerance).toMatch(/does NOT survive the loss of that host/);
    assertNoSecretInOutputs(outputs, secretValues(rec, [passphrase]));
  });
});
