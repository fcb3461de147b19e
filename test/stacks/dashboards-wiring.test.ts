import { describe, it, expect, beforeAll } from 'vitest';
import { installStackMocks, quiesce, containsSecret, reveal, type MockRecorder } from './pulumi-mocks.ts';
import { assertCommonStackProperties, containers, envOf, upload, CONTAINER } from './stack-assertions.ts';
import { DEFAULT_ES_ASSET_OPTIONS } from '../../dashboards/elasticsearch/index-templates.ts';

// The dashboards work inside the stacks: the one-shot installer runs after Elasticsearch and Kibana
// are healthy, with the stack's index names and retention, and the log shipper writes C2's logs to
// the index family the installed templates map.

async function deploy(stack: string, settings: Record<string, unknown>): Promise<MockRecorder> {
  const rec = await installStackMocks(stack, {});
  const { defineStack } = await import('../../stacks/program.ts');
  const { validateStackSettings } = await import('../../lib/settings/stack-settings.ts');
  defineStack(validateStackSettings(settings), {}, { repoRoot: process.cwd() });
  await quiesce(rec);
  return rec;
}

function flag(command: string[], name: string): string | undefined {
  const i = command.indexOf(name);
  return i < 0 ? undefined : command[i + 1];
}

describe('dashboards installer and log indices, Elasticsearch + Kibana on (Pulumi mocks)', () => {
  let rec: MockRecorder;
  beforeAll(async () => {
    rec = await deploy('dash-on', {
      profile: 'minimal',
      elasticsearch: { enabled: true, messageIndex: 'e4msg' },
      logShipper: { enabled: true },
      monitoring: { retention: { messagesDays: 9, logsDays: 4 } },
      backup: { enabled: true, targets: [{ name: 'local', type: 'local', path: '/backups/e4' }], ageRecipients: ['age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p'] },
    });
  });

  it('keeps the common properties (the installer alone does not restart)', () => {
    assertCommonStackProperties(rec, { expectC2: 1 });
  });

  it('runs scripts/dashboards.ts install with the stack’s index names and ILM retention', () => {
    const c = containers(rec).get('dashboards-installer')!;
    const cmd = reveal<string[]>(c.inputs.command);
    expect(cmd.slice(0, 5)).toEqual(['node', '--import', 'tsx', 'scripts/dashboards.ts', 'install']);
    expect(flag(cmd, '--message-index')).toBe('e4msg');
    expect(flag(cmd, '--c2-logs-index-prefix')).toBe(DEFAULT_ES_ASSET_OPTIONS.c2LogsIndexPrefix);
    expect(flag(cmd, '--messages-retention-days')).toBe('9');
    expect(flag(cmd, '--logs-retention-days')).toBe('4');
  });

  it('gets the elastic credentials only through a secret environment, and runs once on the internal network', () => {
    const c = containers(rec).get('dashboards-installer')!;
    expect(containsSecret(c.inputs.envs)).toBe(true);
    const env = envOf(c);
    const pw = envOf(containers(rec).get('es-0')!).ELASTIC_PASSWORD;
    expect(pw).toBeTruthy();
    expect(env.E4OPS_ES_URL).toBe(`http://elastic:${encodeURIComponent(pw)}@es-0:9200`);
    expect(env.E4OPS_KIBANA_URL).toBe(`http://elastic:${encodeURIComponent(pw)}@kibana:5601`);
    expect(JSON.stringify(reveal(c.inputs.command))).not.toContain(pw);
    expect(c.inputs).toMatchObject({ restart: 'no', attach: true, logs: true, mustRun: false });
    expect(reveal<Array<{ name: string }>>(c.inputs.networksAdvanced).map((n) => n.name)).toEqual(['e4ops-internal']);
  });

  it('waits for healthy Elasticsearch and Kibana: depends on them, and they carry health checks with wait', () => {
    const c = containers(rec).get('dashboards-installer')!;
    const deps = c.dependencies.map((urn) => urn.split('::').at(-1));
    expect(deps).toEqual(expect.arrayContaining(['es-0', 'kibana']));
    for (const n of ['es-0', 'kibana']) {
      const target = containers(rec).get(n)!;
      expect(reveal(target.inputs.healthcheck).tests.length, n).toBeGreaterThan(0);
      expect(target.inputs.wait, n).toBe(true);
      expect(target.inputs.waitTimeout, n).toBeGreaterThanOrEqual(300);
    }
  });

  it('uses the one toolkit image the backup job runs (built once)', () => {
    const installer = containers(rec).get('dashboards-installer')!;
    expect(reveal(installer.inputs.image)).toBe(reveal(containers(rec).get('backup-job')!.inputs.image));
    const builds = rec.byType('docker:index/image:Image').filter((i) => /toolkit/.test(i.inputs.imageName));
    expect(builds).toHaveLength(1);
    expect(reveal(builds[0].inputs.build).dockerfile).toMatch(/stacks\/docker\/toolkit\.Dockerfile$/);
  });

  it('the log shipper writes C2’s logs to the index prefix the dashboards templates map', () => {
    const conf = upload(containers(rec).get('log-shipper-local')!, '/etc/rsyslog.conf')!.content!;
    expect(conf).toContain(`"${DEFAULT_ES_ASSET_OPTIONS.c2LogsIndexPrefix}-"`);
  });
});

describe('no dashboards installer without Elasticsearch (Pulumi mocks)', () => {
  it('the minimal profile as shipped (Elasticsearch off) has no installer', async () => {
    const rec = await deploy('dash-off', { profile: 'minimal', monitoring: { prometheus: { enabled: true } } });
    const names = rec.byType(CONTAINER).map((c) => c.inputs.name);
    expect(names).toContain('prometheus');
    expect(names).not.toContain('dashboards-installer');
    expect(names).not.toContain('kibana');
  });
});
