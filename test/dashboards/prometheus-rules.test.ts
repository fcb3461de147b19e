// The alert rules as Prometheus itself sees them: promtool checks and unit tests, plus the cross-checks
// an operator relies on (every alert tested both ways, every runbook present, metric/job names shared).
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { renderPrometheusRules, buildRuleGroups, alertNames, type AlertRule } from '../../dashboards/prometheus/alert-rules.ts';
import { SCRAPE_JOBS } from '../../dashboards/prometheus/jobs.ts';
import { OPS_METRICS } from '../../lib/ops-metrics.ts';

const repo = path.resolve(import.meta.dirname, '../..');
const promDir = path.join(repo, 'dashboards/prometheus');
const rulesFile = path.join(promDir, 'e4-rules.yml');
const testFiles = fs.readdirSync(path.join(promDir, 'tests')).filter((f) => f.endsWith('.test.yml')).map((f) => path.join(promDir, 'tests', f));

function promtool(args: string[], cwd = repo) {
  const r = spawnSync('promtool', args, { cwd, encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}\n${r.stderr}` };
}

const alerts = buildRuleGroups().flatMap((g) => g.rules).filter((r): r is AlertRule => 'alert' in r);

describe('prometheus rules', () => {
  it('the committed rules file is what the renderer produces (regenerate with scripts/dashboards.ts render-rules)', () => {
    expect(fs.readFileSync(rulesFile, 'utf8')).toBe(renderPrometheusRules());
  });

  it('promtool check rules accepts the rules file', () => {
    const r = promtool(['check', 'rules', rulesFile]);
    expect(r.out).toContain('SUCCESS');
    expect(r.status, r.out).toBe(0);
  });

  it('promtool test rules passes every unit test', () => {
    const r = promtool(['test', 'rules', ...testFiles]);
    expect(r.status, r.out).toBe(0);
    expect(r.out).not.toContain('FAILED');
  });

  it('every alert has a unit test where it fires and one where it stays silent', () => {
    const fires = new Set<string>();
    const silent = new Set<string>();
    for (const f of testFiles) {
      const doc = YAML.parse(fs.readFileSync(f, 'utf8'));
      for (const t of doc.tests) for (const a of t.alert_rule_test ?? []) {
        (a.exp_alerts?.length ? fires : silent).add(a.alertname);
      }
    }
    const names = alertNames();
    expect(names.length).toBeGreaterThanOrEqual(15);
    expect(names.filter((n) => !fires.has(n)), 'alerts never tested firing').toEqual([]);
    expect(names.filter((n) => !silent.has(n)), 'alerts never tested silent').toEqual([]);
  });

  it('the unit tests catch a wrong threshold (rules rendered with a 48 h backup budget fail them)', () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-rules-'));
    try {
      fs.mkdirSync(path.join(tmp, 'tests'));
      fs.writeFileSync(path.join(tmp, 'e4-rules.yml'), renderPrometheusRules({ backupMaxAgeHours: 48 }));
      for (const f of testFiles) fs.copyFileSync(f, path.join(tmp, 'tests', path.basename(f)));
      const r = promtool(['test', 'rules', path.join(tmp, 'tests', 'ops-jobs-certs.test.yml')]);
      expect(r.status).not.toBe(0);
      expect(r.out).toContain('E4BackupTooOld');
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  it('every alert carries summary, description, severity and a runbook with the four sections', () => {
    for (const a of alerts) {
      expect(a.annotations.summary, a.alert).toBeTruthy();
      expect(a.annotations.description, a.alert).toBeTruthy();
      expect(['critical', 'warning']).toContain(a.labels.severity);
      expect(a.annotations.runbook_url).toBe(`dashboards/runbooks/${a.alert}.md`);
      const file = path.join(repo, a.annotations.runbook_url);
      expect(fs.existsSync(file), `${file} missing`).toBe(true);
      const text = fs.readFileSync(file, 'utf8');
      expect(text.startsWith(`# ${a.alert}\n`), `${file} title`).toBe(true);
      for (const h of ['Meaning', 'Impact', 'Diagnosis', 'Mitigation']) expect(text, `${file} lacks ## ${h}`).toMatch(new RegExp(`^## ${h}$`, 'm'));
    }
    // no orphan runbooks either
    const runbooks = fs.readdirSync(path.join(repo, 'dashboards/runbooks')).map((f) => f.replace(/\.md$/, ''));
    expect(runbooks.sort()).toEqual(alertNames().sort());
  });

  it('the runbook base URL is configurable', () => {
    const text = renderPrometheusRules({ runbookBaseUrl: 'https://git.example.org/ops/e4ops/-/blob/main/dashboards/runbooks/' });
    expect(text).toContain('runbook_url: https://git.example.org/ops/e4ops/-/blob/main/dashboards/runbooks/E4C2Down.md');
    expect(text).not.toContain('runbooks//');
  });

  it('rules use only the textfile metric names of lib/ops-metrics.ts and the job names of jobs.ts', () => {
    const text = fs.readFileSync(rulesFile, 'utf8');
    const known = new Set<string>(Object.values(OPS_METRICS));
    const used = new Set(text.match(/\be4ops_[a-z0-9_]+/g) ?? []);
    expect([...used].filter((m) => !known.has(m))).toEqual([]);
    for (const m of [OPS_METRICS.backupLastSuccessTimestamp, OPS_METRICS.backupLastRunSuccess, OPS_METRICS.drillLastRunSuccess,
      OPS_METRICS.drillLastSuccessTimestamp, OPS_METRICS.resyncTopicsFailed]) expect(used).toContain(m);
    const jobs = new Set<string>(Object.values(SCRAPE_JOBS).map((j) => j.job));
    const selected = [...text.matchAll(/job(?:=|=~)"([^"]+)"/g)].flatMap((m) => m[1].split('|'));
    expect(selected.length).toBeGreaterThan(10);
    expect(selected.filter((j) => !jobs.has(j))).toEqual([]);
  });

});
