// Retention decisions (pure), the printed systemd/cron scheduling, and the Elasticsearch snapshot step
// (against @elastic/elasticsearch-mock: no Elasticsearch can run here; opt-in real cluster via E4OPS_TEST_ES_URL).
import { describe, it, expect } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import MockPkg from '@elastic/elasticsearch-mock';
import { errors } from '@elastic/elasticsearch';
import { planRetention } from '../../backups/retention.ts';
import { renderCrontabLine, renderSystemdUnits, printedSchedule, DRILL_JOB, BACKUP_JOB } from '../../backups/schedule.ts';
import { snapshotElasticsearch } from '../../backups/elasticsearch-snapshot.ts';

// CJS default export under ESM: take .default when present.
type EsMock = { add(p: { method: string; path: string }, fn: (params: any) => any): void; getConnection(): any };
const Mock: new () => EsMock = (MockPkg as any).default ?? MockPkg;

const set = (startedAt: string, drillVerified = false) => ({ setId: `S-${startedAt}`, startedAt, drillVerified });

describe('planRetention', () => {
  it('keeps the newest set per ISO week and per month, across year ends', () => {
    const sets = [
      set('2025-12-29T02:00:00Z'), // Monday of ISO week 2026-W01
      set('2025-12-28T02:00:00Z'), // Sunday, ISO week 2025-W52
      set('2025-12-27T02:00:00Z'),
      set('2025-11-30T02:00:00Z'),
      set('2025-11-02T02:00:00Z'),
    ];
    const weekly = planRetention(sets, { keepWeekly: 2 });
    expect(weekly.filter((d) => d.keep).map((d) => d.startedAt)).toEqual(['2025-12-29T02:00:00Z', '2025-12-28T02:00:00Z']);
    expect(weekly[0].reasons).toContain('weekly 2026-W01');
    const monthly = planRetention(sets, { keepMonthly: 3 });
    expect(monthly.filter((d) => d.keep).map((d) => d.startedAt)).toEqual(['2025-12-29T02:00:00Z', '2025-11-30T02:00:00Z']);
  });

  it('with keep 0 everywhere still keeps the newest set and the newest drill-verified one', () => {
    const sets = [set('2026-03-03T00:00:00Z'), set('2026-03-02T00:00:00Z', true), set('2026-03-01T00:00:00Z', true)];
    const d = planRetention(sets, { keepLast: 0, keepDaily: 0 });
    expect(d.map((x) => x.keep)).toEqual([true, true, false]);
  });

  it('deletes nothing when no rule is given, and refuses negative or fractional counts', () => {
    expect(planRetention([set('2026-01-01T00:00:00Z'), set('2025-01-01T00:00:00Z')], {}).every((d) => d.keep)).toBe(true);
    expect(() => planRetention([], { keepDaily: -1 })).toThrow(/--keep-daily must be a whole number/);
    expect(() => planRetention([], { keepLast: 1.5 })).toThrow(/--keep-last/);
  });
});

describe('scheduling output', () => {
  it('prints a systemd service + timer that systemd-analyze accepts, running the given flags', () => {
    const u = renderSystemdUnits({ args: ['--target', '/var/backups/c2', '--recipient', 'age1 with space%'], onCalendar: 'daily' });
    expect(u.service).toContain('ExecStart=');
    expect(u.service).toContain('"age1 with space%%"');
    expect(u.timer).toMatch(/OnCalendar=daily\nRandomizedDelaySec=15m\nPersistent=true/);
    const analyze = spawnSync('systemd-analyze', ['--version']);
    if (analyze.status !== 0) return; // no systemd tools on this machine
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-units-'));
    try {
      fs.writeFileSync(path.join(dir, `${u.name}.service`), u.service);
      fs.writeFileSync(path.join(dir, `${u.name}.timer`), u.timer);
      const r = spawnSync('systemd-analyze', ['verify', path.join(dir, `${u.name}.service`), path.join(dir, `${u.name}.timer`)], { encoding: 'utf8' });
      const complaints = (r.stderr + r.stdout).split('\n').filter((l) => l.includes(dir) || /Unknown|Invalid|Failed to parse/i.test(l));
      expect(complaints).toEqual([]);
    } finally { fs.rmSync(dir, { recursive: true, force: true }); }
  });

  it('prints a cron.d line whose command survives /bin/sh quoting and cron\'s % rule', () => {
    // A stand-in node that records the arguments it receives.
    const repoDir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-cron-'));
    try {
      const nodeBin = path.join(repoDir, 'fake node');
      fs.writeFileSync(nodeBin, '#!/bin/sh\nprintf "%s\\n" "$@" > "$(dirname "$0")/args.txt"\n', { mode: 0o755 });
      const file = renderCrontabLine({ args: ['--target', "it's a %here"], cron: '15 3 * * *', repoDir, nodeBin });
      expect(file).toMatch(/^SHELL=\/bin\/bash$/m);
      const line = file.split('\n').find((l) => l.startsWith('15 3 '))!;
      expect(line.startsWith('15 3 * * * root cd ')).toBe(true);
      expect(line).not.toMatch(/[^\\]%/); // cron turns a bare % into a newline
      const cmd = line.replace(/^15 3 \* \* \* root /, '').replace(/\\%/g, '%').replace(/ 2>&1 \| logger.*$/, '');
      const r = spawnSync('bash', ['-c', cmd], { encoding: 'utf8' });
      expect(r.status).toBe(0);
      const args = fs.readFileSync(path.join(repoDir, 'args.txt'), 'utf8').split('\n');
      expect(args.slice(0, 9)).toEqual(['--max-semi-space-size=1', '--expose-gc', '--import', 'tsx', path.join(repoDir, 'scripts/backup.ts'), '--target', "it's a %here", '--timeout', '14400s']);
    } finally { fs.rmSync(repoDir, { recursive: true, force: true }); }
  });
});

describe('schedule specs are checked by real parsers', () => {
  it('refuses an out-of-range cron spec (cron-parser) and a bad OnCalendar (systemd-analyze calendar), naming the flag', () => {
    expect(() => printedSchedule(BACKUP_JOB, ['--print-crontab', '--cron', '99 99 * * *', '--target', '/b'])).toThrow(/^--cron "99 99 \* \* \*" is not a cron schedule: .*99/);
    expect(() => printedSchedule(BACKUP_JOB, ['--print-crontab', '--cron', '30 2 * *', '--target', '/b'])).toThrow(/--cron "30 2 \* \*" needs 5 cron fields/);
    try { printedSchedule(BACKUP_JOB, ['--print-crontab', '--cron', '99 99 * * *']); } catch (e) { expect((e as { exitCode: number }).exitCode).toBe(2); }
    if (spawnSync('systemd-analyze', ['--version']).status === 0) {
      expect(() => printedSchedule(BACKUP_JOB, ['--print-systemd-timer', '--on-calendar', 'every full moon', '--target', '/b'])).toThrow(/^--on-calendar "every full moon" is not a systemd calendar spec/);
    }
    expect(printedSchedule(BACKUP_JOB, ['--print-systemd-timer', '--on-calendar', 'Mon..Fri 01:00', '--target', '/b'])).toMatch(/^OnCalendar=Mon\.\.Fri 01:00$/m);
  });
});

describe('scheduling the weekly restore drill', () => {
  const drillFlags = ['--target', '/var/backups/c2', '--identity', '/etc/e4ops/drill.age', '--passphrase-file', '/etc/e4ops/c2-db-passphrase'];

  it('prints a weekly drill service + timer with the drill\'s own flags, the schedule flags removed', () => {
    const text = printedSchedule(DRILL_JOB, ['--print-systemd-timer', '--on-calendar', 'Sat *-*-* 05:00:00', ...drillFlags, '--report=/var/lib/e4ops/drill.json'])!;
    const exec = /^ExecStart=(.*)$/m.exec(text)![1].split(' ');
    expect(exec.slice(1, 4)).toEqual(['--import', 'tsx', path.join(path.resolve(import.meta.dirname, '../..'), 'scripts/restore-drill.ts')]);
    expect(exec.slice(4)).toEqual([...drillFlags, '--report=/var/lib/e4ops/drill.json']);
    expect(text).toMatch(/^OnCalendar=Sat \*-\*-\* 05:00:00$/m);
    expect(text).toContain('Description=e4ops restore drill');
    expect(text).not.toContain('--on-calendar');
    const cron = printedSchedule(DRILL_JOB, [...drillFlags, '--print-crontab'])!;
    expect(cron).toMatch(/^# \/etc\/cron\.d\/e4ops-restore-drill/m);
    expect(cron.split('\n').find((l) => l.startsWith('0 4 '))).toMatch(/^0 4 \* \* 0 root cd .*\/scripts\/restore-drill\.ts --target \/var\/backups\/c2 .* \| logger -t e4ops-restore-drill \|\| echo .*>&2$/);
    // Without a --print-* flag there is nothing to print: the entry point runs the job.
    expect(printedSchedule(DRILL_JOB, drillFlags)).toBeUndefined();
    expect(printedSchedule(BACKUP_JOB, ['--print-crontab', '--target', '/b'])).toContain('--expose-gc');
  });

  it('the drill entry point prints units systemd-analyze accepts, and refuses to schedule a drill that could not run', () => {
    const script = path.resolve(import.meta.dirname, '../../scripts/restore-drill.ts');
    const r = spawnSync(process.execPath, ['--import', 'tsx', script, '--print-systemd-timer', ...drillFlags], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const [service, timer] = r.stdout.split(/\n(?=# \/etc\/systemd\/system\/e4ops-restore-drill\.timer)/);
    if (spawnSync('systemd-analyze', ['--version']).status === 0) {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-drill-units-'));
      try {
        fs.writeFileSync(path.join(dir, 'e4ops-restore-drill.service'), service);
        fs.writeFileSync(path.join(dir, 'e4ops-restore-drill.timer'), timer);
        const v = spawnSync('systemd-analyze', ['verify', path.join(dir, 'e4ops-restore-drill.service'), path.join(dir, 'e4ops-restore-drill.timer')], { encoding: 'utf8' });
        expect((v.stderr + v.stdout).split('\n').filter((l) => l.includes(dir) || /Unknown|Invalid|Failed to parse/i.test(l))).toEqual([]);
      } finally { fs.rmSync(dir, { recursive: true, force: true }); }
    }
    const missing = spawnSync(process.execPath, ['--import', 'tsx', script, '--print-crontab', '--target', '/var/backups/c2'], { encoding: 'utf8' });
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain('--identity is required');
    expect(missing.stdout).toBe('');
  });
});

describe('Elasticsearch snapshot step', () => {
  it('verifies the repository, snapshots C2\'s indices and records the snapshot', async () => {
    const mock = new Mock();
    const calls: string[] = [];
    mock.add({ method: 'POST', path: '/_snapshot/c2-backups/_verify' }, () => { calls.push('verify'); return { nodes: { n1: { name: 'es1' } } }; });
    mock.add({ method: 'PUT', path: '/_snapshot/c2-backups/:snap' }, (p: { path: string; body: unknown }) => {
      calls.push(`create ${p.path}`);
      return { snapshot: { snapshot: p.path.split('/').pop(), state: 'SUCCESS', indices: ['messages-2026.01.01'], start_time: '2026-01-01T00:00:00Z', end_time: '2026-01-01T00:00:01Z' } };
    });
    const r = await snapshotElasticsearch({ node: 'http://127.0.0.1:9200', repository: 'c2-backups', snapshotName: 'e4ops-x', clientOptions: { Connection: mock.getConnection() } });
    expect(r).toMatchObject({ repository: 'c2-backups', snapshot: 'e4ops-x', state: 'SUCCESS', indices: ['messages-2026.01.01'] });
    expect(calls).toEqual(['verify', 'create /_snapshot/c2-backups/e4ops-x']);
  });

  it('a missing repository or failed snapshot is a source error naming the step', async () => {
    const mock = new Mock();
    mock.add({ method: 'POST', path: '/_snapshot/nope/_verify' }, () => new errors.ResponseError({
      body: { error: { type: 'repository_missing_exception', reason: '[nope] missing' } }, statusCode: 404, headers: {}, warnings: null, meta: {} as any,
    }));
    await expect(snapshotElasticsearch({ node: 'http://127.0.0.1:9200', repository: 'nope', snapshotName: 's', clientOptions: { Connection: mock.getConnection() } }))
      .rejects.toMatchObject({ kind: 'sourceUnreachable', message: expect.stringMatching(/verifying snapshot repository nope .*\[nope\] missing/) });
    const partial = new Mock();
    partial.add({ method: 'POST', path: '/_snapshot/r/_verify' }, () => ({ nodes: {} }));
    partial.add({ method: 'PUT', path: '/_snapshot/r/:snap' }, () => ({ snapshot: { snapshot: 's', state: 'PARTIAL', indices: [] } }));
    await expect(snapshotElasticsearch({ node: 'http://127.0.0.1:9200', repository: 'r', snapshotName: 's', clientOptions: { Connection: partial.getConnection() } }))
      .rejects.toThrow(/ended in state PARTIAL/);
  });

  it.skipIf(!process.env.E4OPS_TEST_ES_URL)('against a real Elasticsearch 7 (E4OPS_TEST_ES_URL, repository path.repo-enabled)', async () => {
    const r = await snapshotElasticsearch({
      node: process.env.E4OPS_TEST_ES_URL!, repository: 'e4ops-test', snapshotName: `e4ops-test-${Date.now()}`, indices: '*',
      registerRepository: { type: 'fs', settings: { location: process.env.E4OPS_TEST_ES_REPO_PATH ?? '/usr/share/elasticsearch/snapshots' } },
    });
    expect(r.state).toBe('SUCCESS');
  });
});
