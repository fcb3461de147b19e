// Run the e4ops command as an operator does (bin/e4ops, the shim on PATH), asynchronously so several
// can run at once and a test's own servers keep serving.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { REPO_ROOT } from '../../lib/repo-root.ts';

export const E4OPS_BIN = path.join(REPO_ROOT, 'bin', 'e4ops');

export interface E4opsResult { code: number | null; stdout: string; stderr: string }

/**
 * `e4ops ARGS` as a child process. By default node runs scripts/e4ops.ts directly (one process instead of
 * the shim's two: these tests spawn dozens); `viaShim` goes through bin/e4ops as installed on PATH.
 */
export function runE4ops(args: readonly string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv; viaShim?: boolean } = {}): Promise<E4opsResult> {
  const [file, argv] = opts.viaShim ? [E4OPS_BIN, [...args]] : [process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'scripts', 'e4ops.ts'), ...args]];
  return new Promise((resolve, reject) => {
    const child = spawn(file, argv, { cwd: REPO_ROOT, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    // A flag check that wrongly lets the command start must not hang the suite.
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', (e) => { clearTimeout(timer); reject(e); });
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
  });
}

/** Run jobs at most `limit` at a time (two cores, shared). */
export async function inTurn<T, R>(items: readonly T[], limit: number, job: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) { const i = next++; results[i] = await job(items[i]); }
  }));
  return results;
}
