// The drill's C2 step (--with-c2): a scratch C2 with its own broker on the restored database must serve
// what the database holds; with --resync, the topic-key resync is rehearsed against it. Shared by the
// logical and the PITR drill. The restored database counts as verified (RTO) once C2 serves it.
import type { FleetInventory } from '../../lib/fleet-inventory/fleet-inventory.ts';
import type { FleetSnapshot } from '../../lib/fleet/fleet.ts';
import { lap, markVerified, type DrillRun } from './drill-run.ts';
import type { DrillReportCounts } from './restored-database-verification.ts';
import type { DrillCheck } from './restored-database-checks.ts';

export interface C2CheckInput {
  dbUrl: string;
  dbHost: string;
  passphrase: string;
  dbKey: Buffer;
  c2Binary?: string;
  c2Image?: string;
  dockerHost?: string;
  workDir: string;
  resync?: boolean;
  fleetSnapshot?: FleetSnapshot;
  rehearsalDevices?: number;
  inventory?: FleetInventory;
  /** When the restored data was current (the set's start, or the PITR point): topics created after it are named. */
  restoredPointAt: Date;
  counts: DrillReportCounts;
}

function failed(name: string, e: unknown): DrillCheck {
  return { name, ok: false, detail: (e as Error)?.message ?? String(e) };
}

/** Scratch C2 (and broker) on the restored database; optionally the resync rehearsal. */
export async function checkScratchC2(run: DrillRun, i: C2CheckInput): Promise<void> {
  const since = Date.now();
  const { startScratchC2, checkC2ServesRestoredData } = await import('./scratch-c2.ts');
  let c2: Awaited<ReturnType<typeof startScratchC2>> | undefined;
  try {
    c2 = await startScratchC2({ dbUrl: i.dbUrl, dbHost: i.dbHost, passphrase: i.passphrase, binary: i.c2Binary, image: i.c2Image, dockerHost: i.dockerHost, scratch: run.scratch, workDir: i.workDir });
    run.checks.push(await checkC2ServesRestoredData(c2, i.dbUrl));
  } catch (e) {
    run.checks.push(failed('c2-serves-restored-data', e));
  }
  lap(run, 'c2', since);
  markVerified(run);
  if (i.resync && c2 && run.checks.every((c) => c.ok)) await rehearse(run, i, c2);
}

async function rehearse(run: DrillRun, i: C2CheckInput, c2: Awaited<ReturnType<typeof import('./scratch-c2.ts').startScratchC2>>): Promise<void> {
  const since = Date.now();
  const { rehearseResync } = await import('./resync-rehearsal.ts');
  try {
    const r = await rehearseResync({
      c2, dbUrl: i.dbUrl, dbKey: i.dbKey, snapshot: i.fleetSnapshot, devices: i.rehearsalDevices ?? 20, inventory: i.inventory,
      backupTakenAt: i.restoredPointAt, counts: i.counts, workDir: i.workDir, logger: run.log,
    });
    run.extra.resync = { ...r.summary, seconds: (Date.now() - since) / 1000 };
    run.checks.push(...r.checks);
  } catch (e) {
    run.checks.push(failed('resync-rehearsal', e));
  }
  lap(run, 'resync', since);
}
