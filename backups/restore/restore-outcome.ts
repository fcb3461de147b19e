// The report from what the journal knows: every step's status and result, RTO from the first run's
// start to C2 serving and to the resync's end, RPO from the restored point to the disaster, and,
// when a step stopped the run, exactly where the production name stands and what to do next.
import fs from 'node:fs';
import { OpsError } from '../../lib/cli/exit-codes.ts';
import type { BackupManifest } from '../manifest.ts';
import type { DrillCheck } from '../drill/restored-database-checks.ts';
import { swapBackSql } from './production-database.ts';
import type { ConfigsRestoreResult } from './restore-configs.ts';
import { stepsOf, type RestoreIdentity, type RestoreJournalState, type RestoreStep } from './restore-journal.ts';
import type { RestoreReport } from './restore-report.ts';
import type { PgBackRestBackup } from './pgbackrest-source.ts';

export interface OutcomeInput {
  identity: RestoreIdentity;
  /** Logical source. */
  manifest?: BackupManifest;
  /** pgBackRest source. */
  backup?: PgBackRestBackup;
  results: Map<RestoreStep, Record<string, unknown>>;
  journal: RestoreJournalState;
  resync: boolean;
  finishedAt: Date;
  journalFile: string;
  error?: OpsError;
}

/**
 * Where the old data directory is: the restore step's result, or, when that step stopped half-way (the
 * move done, pgbackrest restore not), the directory the journal fixed for it, if it is on disk.
 */
function keptDataDirOf(i: OutcomeInput): string | null {
  const done = i.results.get('restore-data-directory');
  if (done) return (done.keptDataDir as string | null | undefined) ?? null;
  const kept = i.identity.keptDataDir;
  return kept && !i.identity.delta && fs.existsSync(kept) ? kept : null;
}

const since = (start: string, at: unknown) => (typeof at === 'string' ? Math.max(0, (Date.parse(at) - Date.parse(start)) / 1000) : null);

/** What the operator does next, from how far the restore got. */
function nextActions(i: OutcomeInput, swapped: boolean, kept: string | null): string[] {
  const id = i.identity;
  if (!i.error) {
    return [
      'watch C2 and the devices; the devices at risk (below) need the action listed for each',
      id.source === 'pgbackrest'
        ? (i.results.get('restore-data-directory')?.keptDataDir ? `when satisfied: e4ops restore --finalize (removes ${i.results.get('restore-data-directory')!.keptDataDir})` : 'nothing was kept: no --finalize needed')
        : kept ? `when satisfied: e4ops restore --finalize (drops ${kept}${i.results.get('restore-configs') ? ' and the configs kept aside' : ''})` : 'nothing was kept: no --finalize needed',
      'resume the automation engine',
    ];
  }
  const out = [`re-run the same command to resume from ${stepsOf(id.source).find((s) => !i.results.has(s))}: finished steps are not repeated`];
  if (id.source === 'pgbackrest') {
    const moved = keptDataDirOf(i);
    out.push(moved ? `the old data directory is ${moved}; to go back: stop PostgreSQL, move ${id.dataDir} away, rename ${moved} to ${id.dataDir}, start PostgreSQL` : `${id.dataDir} was ${id.delta ? 'restored in place (--delta)' : 'not moved yet'}`);
  } else if (!swapped) out.push(`${id.database} was not swapped: it is ${i.results.get('preflight')?.productionExisted === false ? 'missing as before the restore' : 'the old production database, untouched'}; C2 may be stopped: start it by hand to go back to it`);
  else out.push(`${id.restoreDatabase} now serves as ${id.database}${kept ? `; to roll back (C2 stopped): ${swapBackSql({ database: id.database, restore: id.restoreDatabase, kept: id.keptDatabase }, kept)}` : ''}`);
  return out;
}

export function buildRestoreReport(i: OutcomeInput): RestoreReport {
  const id = i.identity;
  const m = i.manifest;
  const steps = stepsOf(id.source);
  const swap = i.results.get('swap-database');
  const kept = swap ? ((swap.keptDatabase as string | null) ?? null) : (i.results.get('preflight')?.productionExisted === false ? null : id.keptDatabase);
  const checks = (['preflight', 'check-database', 'restore-configs', 'check-c2'] as const).flatMap((s) => (i.results.get(s)?.checks as DrillCheck[] | undefined) ?? []);
  const failedChecks = (i.error?.details.checks as DrillCheck[] | undefined) ?? [];
  const resync = i.results.get('resync')?.resync as (RestoreReport['resync'] & { doneAt?: string }) | undefined;
  const counts = (i.results.get('check-database')?.counts as RestoreReport['counts'] | undefined)
    ?? (m ? { clients: m.c2.inventory.clients, topics: m.c2.inventory.topics, links: m.c2.inventory.topicLinks } : { clients: 0, topics: 0, links: 0 });
  const disasterAt = id.disasterAt ?? id.startedAt;
  const restoredPointAt = m ? m.startedAt : String(i.results.get('start-postgres')?.restoredPointAt ?? (id.targetTime !== 'latest' ? id.targetTime : i.backup?.stoppedAt ?? id.startedAt));
  const failedStep = i.error ? steps.find((s) => !i.results.has(s)) : undefined;
  const c2Role = id.c2Role || String(i.results.get('check-database')?.c2Role ?? '(as in the backup)');
  const dataDir = i.results.get('restore-data-directory');
  const report: RestoreReport = {
    kind: 'e4ops-restore',
    ok: !i.error,
    restoreId: id.restoreId,
    source: m
      ? { kind: 'logical', target: id.target, setId: id.setId, backupTakenAt: m.startedAt, backupFinishedAt: m.finishedAt }
      : { kind: 'pgbackrest', target: id.target, setId: id.setId, ...(i.backup ? { backupTakenAt: i.backup.startedAt, backupFinishedAt: i.backup.stoppedAt } : {}), targetTime: id.targetTime! },
    database: id.source === 'pgbackrest'
      ? { name: id.database, restoreName: id.dataDir!, keptName: null, c2Role, swapped: !!dataDir, swapBackSql: '-- a pgBackRest restore replaces the whole cluster: go back by moving the kept data directory back (see dataDirectory)' }
      : { name: id.database, restoreName: id.restoreDatabase, keptName: swap ? kept : null, c2Role, swapped: !!swap, swapBackSql: swapBackSql({ database: id.database, restore: id.restoreDatabase, kept: id.keptDatabase }, swap ? kept : null) },
    ...(id.source === 'pgbackrest' ? { dataDirectory: { path: id.dataDir!, keptAside: keptDataDirOf(i), delta: !!id.delta } } : {}),
    ...(i.results.get('restore-configs') ? { configs: i.results.get('restore-configs')!.configs as ConfigsRestoreResult } : {}),
    startedAt: id.startedAt,
    finishedAt: i.finishedAt.toISOString(),
    runs: Math.max(1, i.journal.runs),
    rto: { c2ServingSeconds: since(id.startedAt, i.results.get('start-c2')?.servingAt), resyncDoneSeconds: resync ? since(id.startedAt, resync.doneAt) : null },
    rpo: { restoredPointAt, disasterAt, seconds: Math.max(0, (Date.parse(disasterAt) - Date.parse(restoredPointAt)) / 1000) },
    counts,
    steps: steps.map((step) => {
      const r = i.results.get(step);
      const runs = i.journal.begun.get(step) ?? 0;
      if (step === 'resync' && !i.resync) return { step, status: 'skipped' as const, runs, detail: '--no-resync: run e4ops resync before devices need rotated keys' };
      if (step === 'report' && !i.error) return { step, status: 'done' as const, runs: runs + 1 };
      if (r) return { step, status: 'done' as const, runs, ...(typeof r.seconds === 'number' ? { seconds: r.seconds } : {}) };
      if (step === failedStep) return { step, status: 'failed' as const, runs, detail: i.error!.message };
      return { step, status: 'not-reached' as const, runs };
    }),
    checks: [...checks, ...failedChecks],
    ...(resync ? { resync: { journal: resync.journal, rotated: resync.rotated, failed: resync.failed, clientsCreated: resync.clientsCreated, linksCreated: resync.linksCreated, topicsCreated: resync.topicsCreated, atRisk: resync.atRisk } } : {}),
    ...(i.error ? { error: i.error.message } : {}),
    next: nextActions(i, !!swap, kept),
    journal: i.journalFile,
  };
  return report;
}
