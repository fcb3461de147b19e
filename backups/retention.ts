// Which backup sets to keep: --keep-last / --keep-daily / --keep-weekly / --keep-monthly (UTC periods,
// newest set of each period), and never the newest complete set nor the newest set a restore drill
// verified. Only complete sets are candidates; damaged (invalid) sets are reported, never deleted here.
import { BackupError } from './exit-codes.ts';
import { listBackupSets, type BackupSetListing } from './backup-sets.ts';
import type { BackupTarget } from './targets.ts';

export interface RetentionPolicy {
  keepLast?: number;
  keepDaily?: number;
  keepWeekly?: number;
  keepMonthly?: number;
}

export interface RetentionDecision {
  setId: string;
  startedAt: string;
  keep: boolean;
  reasons: string[];
}

export function hasRetentionRules(p: RetentionPolicy): boolean {
  return [p.keepLast, p.keepDaily, p.keepWeekly, p.keepMonthly].some((n) => n !== undefined);
}

export function validateRetentionPolicy(p: RetentionPolicy): void {
  for (const [k, v] of Object.entries(p)) {
    if (v !== undefined && (!Number.isInteger(v) || v < 0)) throw new BackupError('config', `--${k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())} must be a whole number >= 0 (got ${v})`);
  }
}

/** ISO-8601 week label (UTC), e.g. 2026-W48. */
function isoWeek(d: Date): string {
  const t = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
  const day = t.getUTCDay() || 7;
  t.setUTCDate(t.getUTCDate() + 4 - day);
  const yearStart = new Date(Date.UTC(t.getUTCFullYear(), 0, 1));
  const week = Math.ceil(((t.getTime() - yearStart.getTime()) / 86_400_000 + 1) / 7);
  return `${t.getUTCFullYear()}-W${String(week).padStart(2, '0')}`;
}

export interface RetentionCandidate { setId: string; startedAt: string; drillVerified?: boolean }

/** Pure decision over complete sets (any order in, newest first out). */
export function planRetention(sets: RetentionCandidate[], policy: RetentionPolicy): RetentionDecision[] {
  validateRetentionPolicy(policy);
  const sorted = [...sets].sort((a, b) => (a.startedAt < b.startedAt ? 1 : a.startedAt > b.startedAt ? -1 : a.setId < b.setId ? 1 : -1));
  const decisions = sorted.map((s) => ({ setId: s.setId, startedAt: s.startedAt, keep: false, reasons: [] as string[] }));
  if (!hasRetentionRules(policy)) {
    for (const d of decisions) { d.keep = true; d.reasons.push('no retention rule given'); }
    return decisions;
  }
  const bucket = (n: number | undefined, label: string, key: (d: Date) => string) => {
    if (!n) return;
    const seen = new Set<string>();
    for (const d of decisions) {
      const k = key(new Date(d.startedAt));
      if (seen.has(k)) continue;
      if (seen.size >= n) break;
      seen.add(k);
      d.keep = true;
      d.reasons.push(`${label} ${k}`);
    }
  };
  decisions.forEach((d, i) => { if (policy.keepLast && i < policy.keepLast) { d.keep = true; d.reasons.push(`last ${policy.keepLast}`); } });
  bucket(policy.keepDaily, 'daily', (d) => d.toISOString().slice(0, 10));
  bucket(policy.keepWeekly, 'weekly', isoWeek);
  bucket(policy.keepMonthly, 'monthly', (d) => d.toISOString().slice(0, 7));
  if (decisions.length) { decisions[0].keep = true; decisions[0].reasons.push('newest complete set'); }
  const drilled = sorted.findIndex((s) => s.drillVerified);
  if (drilled >= 0) { decisions[drilled].keep = true; decisions[drilled].reasons.push('newest set verified by a restore drill'); }
  return decisions;
}

export interface PruneResult {
  target: string;
  dryRun: boolean;
  decisions: RetentionDecision[];
  /** Sets deleted (empty on a dry run). */
  removed: string[];
  /** Sets a dry run would delete (empty on a real run). */
  wouldRemove: string[];
  /** Damaged sets left alone for a human to look at. */
  invalid: { setId: string; problem: string }[];
}

/** Apply a policy to one target (or show what would go, with dryRun). Hold the run lock while pruning. */
export async function pruneBackupSets(target: BackupTarget, policy: RetentionPolicy, opts: { dryRun?: boolean; sets?: BackupSetListing[] } = {}): Promise<PruneResult> {
  const sets = opts.sets ?? (await listBackupSets(target));
  const complete = sets.filter((s) => s.status === 'complete');
  const decisions = planRetention(complete.map((s) => ({ setId: s.setId, startedAt: s.manifest!.startedAt, drillVerified: !!s.drillVerified })), policy);
  const removed: string[] = [];
  const wouldRemove: string[] = [];
  for (const d of decisions) {
    if (d.keep) continue;
    if (opts.dryRun) { wouldRemove.push(d.setId); continue; }
    await target.removeSet(d.setId);
    removed.push(d.setId);
  }
  return {
    target: target.spec, dryRun: !!opts.dryRun, decisions, removed, wouldRemove,
    invalid: sets.filter((s) => s.status === 'invalid').map((s) => ({ setId: s.setId, problem: s.problem ?? '' })),
  };
}
