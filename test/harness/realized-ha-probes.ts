// What an operator looks at on the realized ha profile, read from inside its containers (the
// internal network is not reachable from the host): Patroni's /cluster, HAProxy's stats CSV and
// Prometheus' target list.
import type { RealizedStack } from './stack-realizer.ts';

export interface PatroniMemberState { name: string; role: string; state: string; lag?: number | string; timeline?: number }

/** GET /cluster from the first Patroni member that answers. */
export async function patroniCluster(stack: RealizedStack, members = ['pg-0', 'pg-1', 'pg-2']): Promise<PatroniMemberState[]> {
  const errors: string[] = [];
  for (const m of members) {
    const r = stack.exec(m, ['curl', '-fsS', '--max-time', '3', 'http://127.0.0.1:8008/cluster']);
    if (r.code === 0) return (JSON.parse(r.stdout).members as PatroniMemberState[]);
    errors.push(`${m}: ${r.stderr.trim() || `exit ${r.code}`}`);
  }
  throw new Error(`no Patroni member answers /cluster: ${errors.join('; ')}`);
}

export interface HaproxyServerState { backend: string; server: string; status: string }

/** Every server line of HAProxy's stats CSV (from its stats frontend on :8404). */
export function haproxyServers(stack: RealizedStack, balancer = 'haproxy-local'): HaproxyServerState[] {
  const r = stack.exec(balancer, ['curl', '-fsS', '--max-time', '3', 'http://127.0.0.1:8404/stats;csv']);
  if (r.code !== 0) throw new Error(`HAProxy stats: ${r.stderr.trim() || `exit ${r.code}`}`);
  const lines = r.stdout.trim().split('\n');
  const head = lines[0].replace(/^# /, '').split(',');
  const col = (n: string) => head.indexOf(n);
  return lines.slice(1).map((l) => l.split(',')).filter((f) => f[col('svname')] !== 'FRONTEND' && f[col('svname')] !== 'BACKEND')
    .map((f) => ({ backend: f[col('pxname')], server: f[col('svname')], status: f[col('status')] }));
}

export interface PrometheusTarget { job: string; instance: string; health: string; lastError: string }

export async function prometheusTargets(stack: RealizedStack): Promise<PrometheusTarget[]> {
  const r = stack.exec('prometheus', ['wget', '-qO-', 'http://127.0.0.1:9090/api/v1/targets?state=active']);
  if (r.code !== 0) throw new Error(`Prometheus targets: ${r.stderr.trim() || `exit ${r.code}`}`);
  return (JSON.parse(r.stdout).data.activeTargets as Array<{ labels: Record<string, string>; health: string; lastError: string; scrapeUrl: string }>)
    .map((t) => ({ job: t.labels.job, instance: t.labels.instance ?? t.scrapeUrl, health: t.health, lastError: t.lastError }));
}
