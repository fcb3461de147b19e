// What every drill step shares: the checks recorded so far, phase timings, the scratch resources to tear
// down, and the clock. Logical drills (backup sets) and PITR drills (pgBackRest) both build one and hand
// it to the steps; buildDrillReport turns it into the one report schema.
import { createLogger, type Logger } from '../../lib/log.ts';
import { ScratchResources } from './scratch-resources.ts';
import { cleanupDeadDrills, openScratchRegistry } from './scratch-registry.ts';
import type { DrillReport } from './drill-report.ts';
import type { DrillCheck } from './restored-database-checks.ts';

export interface DrillRun {
  log: Logger;
  now: () => Date;
  startedAt: Date;
  /** Date.now() at the start: RTO and phase offsets count from here. */
  t0: number;
  checks: DrillCheck[];
  /** Seconds per phase (deriveKey, scratchDatabase, restore, verifyKeys, checks, c2, resync). */
  timings: Record<string, number>;
  scratch: ScratchResources;
  /** Report fields the steps fill in (backupTakenAt, keysPerSecond, orphanLinks, certificates, resync, pitr...). */
  extra: Partial<DrillReport>;
  /** Seconds from the start to the moment the restored database was verified (set by the last verifying step). */
  rtoSeconds: number;
}

export function createDrillRun(o: { logger?: Logger; now?: () => Date } = {}): DrillRun {
  const now = o.now ?? (() => new Date());
  const log = o.logger ?? createLogger({ component: 'restore-drill' });
  // Leftovers of drills that died (SIGKILL) go first; this drill's own are written down before they start.
  cleanupDeadDrills({ log });
  const scratch = new ScratchResources(openScratchRegistry(log));
  scratch.installSignalHandlers();
  return {
    log, now, startedAt: now(), t0: Date.now(),
    checks: [], timings: {}, scratch, extra: {}, rtoSeconds: 0,
  };
}

/** Record a failed check (and log it). */
export function failCheck(run: DrillRun, name: string, e: unknown): void {
  run.checks.push({ name, ok: false, detail: (e as Error)?.message ?? String(e) });
  run.log.error('drill.check.failed', { check: name, error: (e as Error)?.message });
}

/** Record the seconds a phase took. */
export function lap(run: DrillRun, name: string, since: number): void {
  run.timings[name] = (Date.now() - since) / 1000;
}

/** Mark the restored database verified now (RTO), unless a step already did. */
export function markVerified(run: DrillRun): void {
  if (!run.rtoSeconds) run.rtoSeconds = (Date.now() - run.t0) / 1000;
}

/** Tear down every scratch server and folder of the run; problems are logged, never thrown. */
export async function tearDownDrill(run: DrillRun): Promise<void> {
  const errors = await run.scratch.stopAll();
  if (errors.length) run.log.warn('drill.teardown', { errors });
}

export interface DrillReportBasics {
  backupId: string | null;
  target: string;
  rpoSeconds: number | null;
  counts: DrillReport['counts'];
}

/** The report of a finished (or failed) run: ok only when there were checks and every one passed. */
export function buildDrillReport(run: DrillRun, b: DrillReportBasics): DrillReport {
  const ok = run.checks.length > 0 && run.checks.every((c) => c.ok);
  markVerified(run);
  return {
    kind: 'restore-drill',
    ok,
    backupId: b.backupId,
    target: b.target,
    startedAt: run.startedAt.toISOString(),
    finishedAt: run.now().toISOString(),
    rtoSeconds: run.rtoSeconds,
    rpoSeconds: b.rpoSeconds,
    counts: b.counts,
    timings: run.timings,
    ...run.extra,
    ...(ok ? {} : { failedChecks: run.checks.filter((c) => !c.ok).map((c) => c.name) }),
    checks: run.checks,
  };
}
