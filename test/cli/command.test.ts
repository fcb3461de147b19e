// lib/cli/command.ts: how a declared command runs: flags checked before run, one stderr line on error,
// help from the declarations, and the exit code a signalled run ends with.
import { describe, it, expect } from 'vitest';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { runCommand, renderHelp, defineCommand } from '../../lib/cli/command.ts';

describe('runCommand', () => {
  const cmd = defineCommand({
    name: 'demo',
    summary: 'a demo',
    flags: { count: { type: 'integer', min: 1, help: 'how many' } },
    exitCodes: ['locked'],
    run: ({ flags }, ctx) => { ctx.stdout(`count=${flags.count}\n`); return 0; },
  });
  const capture = async (argv: string[]) => {
    let out = '', err = '';
    const code = await runCommand(cmd, argv, { stdout: (t) => { out += t; }, stderr: (t) => { err += t; } });
    return { code, out, err };
  };
  it('runs on good flags and exits 2 with one stderr line on bad ones, never running', async () => {
    expect(await capture(['--count', '3'])).toEqual({ code: 0, out: 'count=3\n', err: '' });
    expect(await capture(['--cont', '3'])).toEqual({ code: 2, out: '', err: 'e4ops demo: unknown flag --cont; did you mean --count? (see --help)\n' });
  });
  it('help ends with the exit status lines of the command, from the one table', async () => {
    const help = renderHelp(cmd);
    expect((await capture(['--help'])).out).toBe(help);
    const status = help.slice(help.indexOf('Exit status:'));
    expect(status).toMatch(/^\s+0 {2}success$/m);
    expect(status).toMatch(/^\s+2 {2}bad flags/m);
    expect(status).toMatch(/^\s+5 {2}another run holds the lock/m);
    expect(status).toMatch(/^\s+130 {2}interrupted by SIGINT/m);
    expect(status).not.toMatch(/^\s+6 /m);
  });
});

describe('signals', () => {
  const fixture = path.join(import.meta.dirname, 'fixtures', 'waits-for-signal.ts');
  /** Start the fixture, wait until it works, send the signal, return its exit code and stderr. */
  const stopWith = (signal: NodeJS.Signals) => new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', fixture], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => { stderr += d; });
    child.stdout.on('data', (d) => { if (String(d).includes('started')) child.kill(signal); });
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', reject);
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, stderr }); });
  });
  it('a run stopped part-way by SIGINT exits 130 after finishing cleanly', async () => {
    const r = await stopWith('SIGINT');
    expect(r.code).toBe(130);
    expect(r.stderr).toContain('journal flushed');
  });
  it('a run stopped part-way by SIGTERM exits 143 after finishing cleanly', async () => {
    const r = await stopWith('SIGTERM');
    expect(r.code).toBe(143);
    expect(r.stderr).toContain('journal flushed');
  });
});
