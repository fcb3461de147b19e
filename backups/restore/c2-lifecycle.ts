// C2's service lifecycle during a restore: stop every replica before the database changes under
// it, start them after the swap, and wait until C2 serves the restored counts. The operator gives
// shell commands (systemctl, docker compose, ssh ...), or the stack's settings name the replica
// containers and their Docker hosts.
import { spawn } from 'node:child_process';
import { OpsError } from '../../lib/cli/exit-codes.ts';
import { redactUrl } from '../../lib/log.ts';
import type { C2Api } from '../../lib/c2/c2-api.ts';
import type { StackSettings } from '../../lib/settings/stack-settings.ts';
import { checkC2ServesRestoredData, type ScratchC2 } from '../drill/scratch-c2.ts';
import type { DrillCheck } from '../drill/restored-database-checks.ts';

export interface C2Lifecycle {
  /** What stop/start run, for the plan (no secrets: the commands are the operator's own text). */
  stopCommands: string[];
  startCommands: string[];
}

/** The replica containers a stack runs (stacks/components/c2.ts: c2-0, c2-1 ... round-robin over hosts). */
export function c2LifecycleFromStack(s: StackSettings): C2Lifecycle {
  const replicas = Array.from({ length: s.c2.replicas }, (_, i) => ({ name: `c2-${i}`, host: s.hosts[i % s.hosts.length].url }));
  return {
    stopCommands: replicas.map((r) => `docker --host ${r.host} stop --time 20 ${r.name}`),
    startCommands: replicas.map((r) => `docker --host ${r.host} start ${r.name}`),
  };
}

/** Run the operator's commands one by one through sh; the first failure stops (exit and output tail in the error). */
export async function runLifecycleCommands(commands: string[], what: string, timeoutMs = 300_000): Promise<{ command: string; seconds: number }[]> {
  const out: { command: string; seconds: number }[] = [];
  for (const command of commands) {
    const t0 = Date.now();
    const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve) => {
      const child = spawn('sh', ['-c', command], { stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      const keep = (d: Buffer) => { output = (output + d.toString()).slice(-2000); };
      child.stdout.on('data', keep);
      child.stderr.on('data', keep);
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      child.on('error', (e) => { clearTimeout(timer); resolve({ code: -1, output: e.message }); });
      child.on('close', (c) => { clearTimeout(timer); resolve({ code: c, output }); });
    });
    if (code !== 0) throw new OpsError(what === 'stop' ? 'refused' : 'c2Unreachable', `${what} C2: \`${command}\` exited ${code}: ${redactUrl(output.trim().split('\n').slice(-3).join(' | '))}`);
    out.push({ command, seconds: (Date.now() - t0) / 1000 });
  }
  return out;
}

/** After the start commands: poll C2's API until it answers with the restored counts (it migrates and connects to MQTT first). */
export async function waitForC2Counts(api: C2Api, expected: { clients: number; topics: number }, timeoutMs: number, signal?: AbortSignal): Promise<{ seconds: number; clients: number; topics: number }> {
  const t0 = Date.now();
  let last = 'no answer yet';
  while (Date.now() - t0 < timeoutMs && !signal?.aborted) {
    try {
      const [clients, topics] = await Promise.all([api.countClients(), api.countTopics()]);
      if (clients === expected.clients && topics === expected.topics) return { seconds: (Date.now() - t0) / 1000, clients, topics };
      last = `C2 serves ${clients} clients and ${topics} topics, the restored database holds ${expected.clients} and ${expected.topics}`;
    } catch (e) { last = (e as Error).message; }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new OpsError('c2Unreachable', `C2 at ${api.opts.baseUrl} did not serve the restored counts within ${Math.round(timeoutMs / 1000)} s (${last}); is it pointed at the restored database, and did the start command start it?`);
}

/** The drill's check of a C2 against the database it serves, pointed at the production C2. */
export function checkProductionC2Serves(api: C2Api, databaseUrl: string): Promise<DrillCheck> {
  // checkC2ServesRestoredData reads only the API client and the base URL/version for its message.
  const served = { api, c2: { baseUrl: api.opts.baseUrl, version: 'production' } } as unknown as ScratchC2;
  // 10 sampled topics and clients: this C2 counts a topic's clients with a scan of every link (about 0.6 s each at 5M links).
  return checkC2ServesRestoredData(served, databaseUrl, 10).then((c) => ({ ...c, detail: c.detail.replace(/^scratch C2/, 'C2') }));
}
