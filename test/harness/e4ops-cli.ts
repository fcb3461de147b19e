// The real `e4ops <subcommand>` in a child process, for tests that kill it part-way (SIGKILL the moment
// a predicate holds) or need it asynchronous beside servers the test drives.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { REPO_ROOT } from '../../lib/repo-root.ts';

export interface E4opsRun { code: number | null; stdout: string; stderr: string; killed: boolean }

export function runE4ops(args: string[], killWhen?: () => boolean): Promise<E4opsRun> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'scripts/e4ops.ts'), ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let killed = false;
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const iv = killWhen ? setInterval(() => { if (!killed && killWhen()) { killed = true; child.kill('SIGKILL'); } }, 10) : undefined;
    child.on('close', (code) => { if (iv) clearInterval(iv); resolve({ code, stdout, stderr, killed }); });
  });
}
