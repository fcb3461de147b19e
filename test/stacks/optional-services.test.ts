import { describe, it, expect, beforeAll } from 'vitest';
import YAML from 'yaml';
import { installStackMocks, quiesce, reveal, type MockRecorder } from './pulumi-mocks.ts';
import { assertCommonStackProperties, containers, envOf, upload, c2Configs } from './stack-assertions.ts';

// The minimal profile with every optional service switched on, in pubkey mode: the pieces the two
// example stacks leave off (automation engine, pubkey key file, single-node Elasticsearch).
describe('minimal profile with the optional services (Pulumi mocks)', () => {
  let rec: MockRecorder;

  beforeAll(async () => {
    rec = await installStackMocks('optional', {});
    const { defineStack } = await import('../../stacks/program.ts');
    const { validateStackSettings } = await import('../../lib/settings/stack-settings.ts');
    defineStack(validateStackSettings({
      profile: 'minimal',
      c2: { cryptoMode: 'pubkey' },
      elasticsearch: { enabled: true },
      logShipper: { enabled: true },
      tracing: { enabled: true },
      monitoring: { prometheus: { enabled: true } },
      automationEngine: { enabled: true },
      backup: { enabled: true, targets: [{ name: 'local', type: 'local', path: '/backups/e4' }], ageRecipients: ['age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p'] },
    }), {}, { repoRoot: process.cwd() });
    await quiesce(rec);
  });

  it('keeps the common properties', () => {
    assertCommonStackProperties(rec, { expectC2: 1 });
  });

  it('pubkey mode: C2 gets a secret 32-byte Curve25519 key file and points its config at it', () => {
    const c2 = containers(rec).get('c2-0')!;
    const key = upload(c2, '/opt/e4/configs/c2-key')!;
    expect(key.secret).toBe(true);
    expect(Buffer.from(key.contentBase64!, 'base64')).toHaveLength(32);
    expect(c2Configs(rec)[0].config).toMatchObject({ 'crypto-mode': 'pubkey', 'crypto-c2-private-key': 'c2-key' });
    // The backup job keeps the key file too (it lives outside the database).
    expect(JSON.parse(upload(containers(rec).get('backup-job')!, '/etc/e4ops/backup.json')!.content!).files).toEqual(['/opt/e4/configs/c2-key']);
  });

  it('exactly one automation engine, with its own database created next to C2’s', () => {
    const engines = [...containers(rec).values()].filter((c) => /automation/.test(c.inputs.name));
    expect(engines.map((c) => c.inputs.name)).toEqual(['automation-engine']);
    const cfg = YAML.parse(upload(engines[0], '/opt/e4/configs/config.yaml')!.content!);
    expect(cfg).toMatchObject({ 'db-host': 'pg-primary', 'db-database': 'e4_automation', 'c2-host-port': 'c2-0:5555' });
    const init = upload(containers(rec).get('postgres-0')!, '/etc/e4ops/post-bootstrap.sh')!.content!;
    expect(init).toMatch(/CREATE DATABASE e4 OWNER e4;\nCREATE DATABASE e4_automation OWNER e4;/);
  });

  it('single-node Elasticsearch (no transport TLS needed), C2 logs messages, the shipper reads C2’s log volume', () => {
    const es = envOf(containers(rec).get('es-0')!);
    expect(es['discovery.type']).toBe('single-node');
    expect(es['xpack.security.enabled']).toBe('true');
    expect(c2Configs(rec)[0].config['es-enable']).toBe(true);
    const shipper = containers(rec).get('log-shipper-local')!;
    expect(reveal<Array<{ volumeName: string; readOnly?: boolean }>>(shipper.inputs.volumes)).toEqual(expect.arrayContaining([
      expect.objectContaining({ volumeName: 'e4ops-c2-0-logs', readOnly: true }),
    ]));
    expect(reveal<Array<{ volumeName: string; containerPath: string }>>(containers(rec).get('c2-0')!.inputs.volumes)).toEqual([{ volumeName: 'e4ops-c2-0-logs', containerPath: '/var/log' }]);
    expect(c2Configs(rec)[0].config['oc-agent-addr']).toBe('ocagent:55678');
  });
});
