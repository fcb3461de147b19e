import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import fs from 'node:fs';

// Throwaway servers must never outlive the process that started them, even when a test
// runner kills the worker: remember every child and kill it on exit.
const running = new Set<ChildProcess>();
let hooked = false;
function hookExit() {
  if (hooked) return;
  hooked = true;
  const killAll = () => { for (const c of running) try { c.kill('SIGKILL'); } catch { /* gone */ } };
  process.on('exit', killAll);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => { killAll(); process.exit(130); });
}

export interface Daemon {
  child: ChildProcess;
  logFile: string;
  /** Last lines the program wrote (stdout and stderr), for error messages. */
  tail(lines?: number): string;
  /** Resolves when the process has exited (with its code or signal). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<void>;
}

/** Start a long-running program with output captured to logFile. */
export function startDaemon(cmd: string, args: string[], logFile: string, opts: SpawnOptions = {}): Daemon {
  hookExit();
  const out = fs.openSync(logFile, 'a');
  const child = spawn(cmd, args, { ...opts, stdio: ['ignore', out, out] });
  fs.closeSync(out);
  running.add(child);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => { running.delete(child); resolve({ code, signal }); });
    child.once('error', () => { running.delete(child); resolve({ code: -1, signal: null }); });
  });
  const tail = (n = 30) => {
    try { return fs.readFileSync(logFile, 'utf8').split('\n').slice(-n).join('\n'); } catch { return ''; }
  };
  const stop = async (signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000) => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill(signal);
    const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    await exited;
    clearTimeout(t);
  };
  return { child, logFile, tail, exited, stop };
}

/**
 * Running as root, run a program as a service user (PostgreSQL refuses root; Mosquitto drops to its
 * own user). Spawn options rather than runuser, so signals reach the server itself.
 */
export function asUser(user: string): { uid?: number; gid?: number } {
  if (process.getuid?.() !== 0) return {};
  const line = fs.readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith(`${user}:`));
  if (!line) throw new Error(`system user ${user} does not exist: install its Debian package`);
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

export function chownTo(path: string, user: string): void {
  if (process.getuid?.() !== 0) return;
  const r = spawnSync('chown', ['-R', `${user}:`, path], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`chown -R ${user} ${path} failed: ${r.stderr || r.error?.message}`);
}
