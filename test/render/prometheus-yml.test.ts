import { describe, it, expect, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { renderPrometheusConfig, renderBlackboxConfig } from '../../lib/render/prometheus-yml.ts';
import { BLACKBOX_MODULES } from '../../dashboards/prometheus/jobs.ts';

// promtool must accept the rendered prometheus.yml together with every rule file that
// dashboards/prometheus/ holds right now (the stack loads all of them).
describe('rendered prometheus.yml with promtool', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-prom-'));
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const rulesDir = path.resolve('dashboards/prometheus');

  function check(text: string): { status: number | null; out: string } {
    const file = path.join(tmp, 'prometheus.yml');
    fs.writeFileSync(file, text);
    const r = spawnSync('promtool', ['check', 'config', file], { encoding: 'utf8' });
    return { status: r.status, out: r.stdout + r.stderr };
  }

  it('accepts scrape jobs, blackbox probe jobs and the dashboards rule files', () => {
    const ruleTarget = path.join(tmp, 'rules');
    fs.mkdirSync(ruleTarget, { recursive: true });
    const ruleFiles = fs.existsSync(rulesDir) ? fs.readdirSync(rulesDir).filter((f) => /\.ya?ml$/.test(f)) : [];
    for (const f of ruleFiles) fs.copyFileSync(path.join(rulesDir, f), path.join(ruleTarget, f));
    const text = renderPrometheusConfig({
      scrapeIntervalSeconds: 15,
      ruleFiles: [path.join(ruleTarget, '*.yml'), path.join(ruleTarget, '*.yaml')],
      externalLabels: { stack: 'ha' },
      jobs: [
        { job: 'e4-c2-metrics', targets: ['ocagent-0:9998', 'ocagent-1:9998'] },
        { job: 'e4-postgres', targets: ['postgres-exporter:9187'] },
        { job: 'e4-patroni', targets: ['pg-0:8008', 'pg-1:8008'] },
        { job: 'e4-broker', targets: ['emqx-0:18083'], metricsPath: '/api/v5/prometheus/stats' },
        { job: 'e4-c2-health', targets: ['https://c2-0:8888/e4/health-check'], blackbox: { exporter: 'blackbox:9115', module: 'e4_c2_health' } },
      ],
    });
    const r = check(text);
    expect(r.status, r.out).toBe(0);
    expect(r.out).toMatch(/SUCCESS/);
    if (ruleFiles.length) expect(r.out).toMatch(/rules found/);
  });

  it('is rejected by promtool when a rule file it names is broken (the check is real)', () => {
    const bad = path.join(tmp, 'broken.rules.yml');
    fs.writeFileSync(bad, 'groups:\n  - name: x\n    rules:\n      - alert: A\n        expr: up ==\n');
    const r = check(renderPrometheusConfig({ scrapeIntervalSeconds: 15, ruleFiles: [bad], jobs: [{ job: 'x', targets: ['a:1'] }] }));
    expect(r.status).not.toBe(0);
  });

  it('refuses duplicate jobs and jobs without targets', () => {
    expect(() => renderPrometheusConfig({ scrapeIntervalSeconds: 15, ruleFiles: [], jobs: [{ job: 'a', targets: ['x:1'] }, { job: 'a', targets: ['y:1'] }] })).toThrow(/defined twice/);
    expect(() => renderPrometheusConfig({ scrapeIntervalSeconds: 15, ruleFiles: [], jobs: [{ job: 'a', targets: [] }] })).toThrow(/no targets/);
  });

  it('blackbox_exporter --config.check accepts the rendered blackbox.yml with the dashboards modules', () => {
    const file = path.join(tmp, 'blackbox.yml');
    fs.writeFileSync(file, renderBlackboxConfig(BLACKBOX_MODULES as unknown as Record<string, unknown>));
    const ok = spawnSync('prometheus-blackbox-exporter', ['--config.check', `--config.file=${file}`], { encoding: 'utf8' });
    expect(ok.status, ok.stdout + ok.stderr).toBe(0);
    fs.writeFileSync(file, renderBlackboxConfig({ broken: { prober: 'http', timeout: 'soon' } }));
    const bad = spawnSync('prometheus-blackbox-exporter', ['--config.check', `--config.file=${file}`], { encoding: 'utf8' });
    expect(bad.status).not.toBe(0);
  });
});
