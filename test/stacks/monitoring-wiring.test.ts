import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import YAML from 'yaml';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { installStackMocks, quiesce, reveal, type MockRecorder } from './pulumi-mocks.ts';
import { containers, upload } from './stack-assertions.ts';
import { SCRAPE_JOBS } from '../../dashboards/prometheus/jobs.ts';
import type { StackSettings } from '../../lib/settings/stack-settings.ts';

// What Prometheus gets from the stack: every scrape job the dashboards rules select on (for the
// services the profile runs), the MQTT probe of each broker listener, and rules rendered from the
// stack's settings. The rendered prometheus.yml + rules go through promtool.

async function deploy(stack: string, settings: Record<string, unknown>): Promise<{ rec: MockRecorder; s: StackSettings }> {
  const rec = await installStackMocks(stack, {});
  const { defineStack } = await import('../../stacks/program.ts');
  const { validateStackSettings } = await import('../../lib/settings/stack-settings.ts');
  const s = validateStackSettings(settings);
  defineStack(s, {}, { repoRoot: process.cwd() });
  await quiesce(rec);
  return { rec, s };
}

function scrapeJobs(rec: MockRecorder): Map<string, any> {
  const cfg = YAML.parse(upload(containers(rec).get('prometheus')!, '/etc/prometheus/prometheus.yml')!.content!);
  return new Map(cfg.scrape_configs.map((j: any) => [j.job_name, j]));
}

const ALL_JOBS = Object.values(SCRAPE_JOBS).map((j) => j.job).sort();

describe('Prometheus wiring, ha profile (Pulumi mocks)', () => {
  let rec: MockRecorder;
  beforeAll(async () => {
    ({ rec } = await deploy('wiring-ha', {
      profile: 'ha',
      backup: { maxAgeHours: 50 },
      monitoring: { alerts: { drillMaxAgeDays: 3, runbookBaseUrl: 'https://runbooks.example.org/e4' } },
    }));
  });

  it('has every scrape job of dashboards/prometheus/jobs.ts (the HA profile runs every service)', () => {
    expect([...scrapeJobs(rec).keys()].sort()).toEqual(ALL_JOBS);
  });

  it('probes the MQTT listener of every EMQX node through the blackbox exporter (tcp_connect)', () => {
    const j = scrapeJobs(rec).get(SCRAPE_JOBS.brokerProbe.job);
    expect(j.params.module).toEqual(['e4_tcp_connect']);
    expect(j.static_configs[0].targets).toEqual(['emqx-0:1883', 'emqx-1:1883', 'emqx-2:1883']);
    expect(j.relabel_configs.at(-1)).toEqual({ target_label: '__address__', replacement: 'blackbox:9115' });
  });
});

describe('Prometheus wiring, minimal profile (Pulumi mocks)', () => {
  let rec: MockRecorder;
  beforeAll(async () => {
    ({ rec } = await deploy('wiring-minimal', { profile: 'minimal', monitoring: { prometheus: { enabled: true } } }));
  });

  it('has the jobs for the services minimal runs, and none for those it does not (no tracing, Patroni, Elasticsearch)', () => {
    const absent: string[] = [SCRAPE_JOBS.c2Metrics.job, SCRAPE_JOBS.patroni.job, SCRAPE_JOBS.elasticsearch.job];
    expect([...scrapeJobs(rec).keys()].sort()).toEqual(ALL_JOBS.filter((j) => !absent.includes(j)));
  });

  it('probes Mosquitto’s MQTT listener', () => {
    expect(scrapeJobs(rec).get(SCRAPE_JOBS.brokerProbe.job).static_configs[0].targets).toEqual(['mosquitto-0:1883']);
  });
});

describe('Prometheus rules rendered from the stack settings (Pulumi mocks + promtool)', () => {
  let rec: MockRecorder;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-stack-prom-'));
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
  beforeAll(async () => {
    ({ rec } = await deploy('wiring-rules', {
      profile: 'ha',
      backup: { maxAgeHours: 50 },
      monitoring: { alerts: { drillMaxAgeDays: 3, runbookBaseUrl: 'https://runbooks.example.org/e4' } },
    }));
  });

  function rule(name: string): any {
    const text = upload(containers(rec).get('prometheus')!, '/etc/prometheus/rules/e4-rules.yml')!.content!;
    return YAML.parse(text).groups.flatMap((g: any) => g.rules).find((r: any) => r.alert === name);
  }

  it('uploads e4-rules.yml with the stack’s backup age, drill age and runbook base, not the committed defaults', () => {
    expect(rule('E4BackupTooOld').expr).toContain(String(50 * 3600));
    expect(rule('E4BackupTooOld').annotations.summary).toMatch(/50 hours/);
    expect(rule('E4RestoreDrillTooOld').expr).toContain(String(3 * 86400));
    expect(rule('E4C2Down').annotations.runbook_url).toBe('https://runbooks.example.org/e4/E4C2Down.md');
    const committed = fs.readFileSync('dashboards/prometheus/e4-rules.yml', 'utf8');
    expect(committed).not.toContain(String(50 * 3600));
  });

  it('still uploads every other rule file of dashboards/prometheus', () => {
    const uploaded = reveal<Array<{ file: string }>>(containers(rec).get('prometheus')!.inputs.uploads).map((u) => u.file);
    for (const f of fs.readdirSync('dashboards/prometheus').filter((x) => /\.ya?ml$/.test(x))) expect(uploaded).toContain(`/etc/prometheus/rules/${f}`);
  });

  it('promtool accepts the stack’s prometheus.yml with the rule files it uploads', () => {
    const prom = containers(rec).get('prometheus')!;
    const uploads = reveal<Array<{ file: string; content: string }>>(prom.inputs.uploads);
    for (const u of uploads) {
      const target = path.join(tmp, u.file);
      fs.mkdirSync(path.dirname(target), { recursive: true });
      fs.writeFileSync(target, u.content.replaceAll('/etc/prometheus/', `${tmp}/etc/prometheus/`));
    }
    const r = spawnSync('promtool', ['check', 'config', path.join(tmp, 'etc/prometheus/prometheus.yml')], { encoding: 'utf8' });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout + r.stderr).toMatch(/SUCCESS: \d+ rules found/);
  });
});
