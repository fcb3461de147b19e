// scripts/dashboards.ts as an operator runs it: flags, exit codes, stdout report, against the Kibana stand-in.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { startKibanaStandIn } from './stand-ins.ts';
import { freeLoopbackPort } from '../../lib/ports.ts';

const repo = path.resolve(import.meta.dirname, '../..');
// Asynchronous on purpose: the Kibana stand-in lives in this process and must keep serving.
const run = (...args: string[]) => new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
  const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/dashboards.ts', ...args], { cwd: repo, env: { ...process.env, E4OPS_ES_URL: '', E4OPS_KIBANA_URL: '' } });
  let stdout = '', stderr = '';
  child.stdout.on('data', (d) => { stdout += d; });
  child.stderr.on('data', (d) => { stderr += d; });
  child.on('error', reject);
  child.on('close', (code) => resolve({ code, stdout, stderr }));
});

describe('scripts/dashboards.ts', () => {
  let kibana: Awaited<ReturnType<typeof startKibanaStandIn>>;
  beforeAll(async () => { kibana = await startKibanaStandIn(); });
  afterAll(async () => { await kibana.close(); });

  it('--help exits 0 and lists the commands; bad commands and flags exit 2 with a reason', async () => {
    const help = await run('--help');
    expect(help.code).toBe(0);
    for (const w of ['install', 'render-rules', 'render-saved-objects', '--dry-run', '--kibana-url']) expect(help.stdout).toContain(w);
    const bad = await run('frobnicate');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('unknown command "frobnicate"');
    const none = await run('install');
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('--es-url and/or --kibana-url');
    const badDays = await run('render-templates', '--messages-retention-days', '1');
    expect(badDays.code).toBe(2);
    expect(badDays.stderr).toContain('messagesRetentionDays');
  });

  it('render-rules prints the committed rules file, and honours a runbook base URL', async () => {
    expect((await run('render-rules')).stdout).toBe(fs.readFileSync(path.join(repo, 'dashboards/prometheus/e4-rules.yml'), 'utf8'));
    expect((await run('render-rules', '--runbook-base-url', 'https://wiki.example/e4')).stdout).toContain('runbook_url: https://wiki.example/e4/E4BackupTooOld.md');
  });

  it('install --dry-run against Kibana imports nothing; install imports once; a re-run changes nothing', async () => {
    const dry = await run('install', '--kibana-url', kibana.url, '--dry-run');
    expect(dry.code, dry.stderr).toBe(0);
    const dryReport = JSON.parse(dry.stdout.trim().split('\n').pop()!);
    expect(dryReport.dryRun).toBe(true);
    expect(dryReport.changed).toBeGreaterThan(20);
    expect(kibana.imports()).toHaveLength(0);

    const first = await run('install', '--kibana-url', kibana.url);
    expect(first.code, first.stderr).toBe(0);
    expect(kibana.imports()).toHaveLength(1);

    const again = await run('install', '--kibana-url', kibana.url);
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout.trim()).changed).toBe(0);
    expect(kibana.imports()).toHaveLength(1);
  });

  it('an unreachable Elasticsearch exits 1 with the error and no password in it', async () => {
    const port = await freeLoopbackPort();
    const r = await run('install', '--es-url', `http://elastic:hunter22@127.0.0.1:${port}`);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/dashboards install: .*(ECONNREFUSED|connect|Connection)/i);
    expect(r.stderr + r.stdout).not.toContain('hunter22');
  });
});
