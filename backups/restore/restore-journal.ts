// The restore journal: one JSON line per lifecycle event, fsync'ed before the next step starts. A
// killed restore leaves a journal the next run reads to skip every finished step and re-enter the
// one in progress (each step knows how to pick up its own half-done work); a finished journal is
// closed, so a second run cannot restore over a restore.
import fs from 'node:fs';
import path from 'node:path';

/** The logical-set runbook: restore beside production, check, swap by rename. */
export const RESTORE_STEPS = [
  'preflight', 'stop-c2', 'restore-database', 'check-database', 'restore-configs', 'swap-database', 'start-c2', 'check-c2', 'resync', 'report',
] as const;
/** The pgBackRest runbook: the whole cluster comes back, the old data directory moved aside. */
export const PGBACKREST_STEPS = [
  'preflight', 'stop-c2', 'stop-postgres', 'restore-data-directory', 'start-postgres', 'check-database', 'start-c2', 'check-c2', 'resync', 'report',
] as const;
export type RestoreStep = (typeof RESTORE_STEPS)[number] | (typeof PGBACKREST_STEPS)[number];
export type RestoreSourceKind = 'logical' | 'pgbackrest';
export const stepsOf = (source: RestoreSourceKind | undefined): readonly RestoreStep[] => (source === 'pgbackrest' ? PGBACKREST_STEPS : RESTORE_STEPS);

/** What a run fixed once and every resumed run must keep (names, set, stamp); no secrets. */
export interface RestoreIdentity {
  restoreId: string;
  startedAt: string;
  /** Suffix of the restore's names (<db>_restore_<stamp>, <dir>.before-<stamp>). */
  stamp: string;
  setId: string;
  target: string;
  database: string;
  restoreDatabase: string;
  keptDatabase: string;
  c2Role: string;
  configsDir?: string;
  disasterAt?: string;
  /** Absent in journals of logical restores written before pgBackRest existed. */
  source?: RestoreSourceKind;
  /** pgBackRest: the data directory, where the old one is moved, and the recovery target. */
  dataDir?: string;
  keptDataDir?: string;
  targetTime?: string;
  delta?: boolean;
}

export type RestoreJournalEntry =
  | ({ type: 'start'; pid: number } & RestoreIdentity)
  | { type: 'resume'; at: string; pid: number }
  | { type: 'step-begin'; step: RestoreStep; at: string }
  | { type: 'step-done'; step: RestoreStep; at: string; result: Record<string, unknown> }
  | { type: 'step-failed'; step: RestoreStep; at: string; error: string }
  | { type: 'finish'; at: string; ok: boolean }
  | { type: 'finalized'; at: string; dropped: string[] };

export interface RestoreJournalState {
  exists: boolean;
  identity?: RestoreIdentity;
  /** Result of each finished step. */
  done: Map<RestoreStep, { at: string; result: Record<string, unknown> }>;
  /** Steps begun and neither done nor failed: a run died inside them. */
  inProgress?: RestoreStep;
  /** How many times each step began (a test's proof that no finished step ran twice). */
  begun: Map<RestoreStep, number>;
  runs: number;
  finished: boolean;
  finishedOk?: boolean;
  finishedAt?: string;
  finalized: boolean;
}

export class RestoreJournalError extends Error {}

export function readRestoreJournal(file: string): RestoreJournalState {
  const st: RestoreJournalState = { exists: false, done: new Map(), begun: new Map(), runs: 0, finished: false, finalized: false };
  if (!fs.existsSync(file)) return st;
  st.exists = true;
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  lines.forEach((line, i) => {
    if (!line.trim()) return;
    let e: RestoreJournalEntry;
    try { e = JSON.parse(line); } catch {
      if (i >= lines.length - 2) return; // the torn last write of a killed run
      throw new RestoreJournalError(`restore journal ${file} line ${i + 1} is not JSON: the file is damaged; read it by hand to see which steps finished`);
    }
    switch (e.type) {
      case 'start': { const { type: _t, pid: _p, ...identity } = e; st.identity = identity; st.runs++; break; }
      case 'resume': st.runs++; break;
      case 'step-begin': st.inProgress = e.step; st.begun.set(e.step, (st.begun.get(e.step) ?? 0) + 1); break;
      case 'step-done': st.done.set(e.step, { at: e.at, result: e.result }); if (st.inProgress === e.step) st.inProgress = undefined; break;
      case 'step-failed': if (st.inProgress === e.step) st.inProgress = undefined; break;
      case 'finish': st.finished = true; st.finishedOk = e.ok; st.finishedAt = e.at; break;
      case 'finalized': st.finalized = true; break;
    }
  });
  return st;
}

/** Append-only; every entry reaches the disk (fdatasync) before the caller goes on. */
export class RestoreJournalWriter {
  private fd: number;
  constructor(readonly file: string) {
    fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    this.fd = fs.openSync(file, 'a', 0o600);
  }
  append(entry: RestoreJournalEntry): void {
    fs.writeSync(this.fd, JSON.stringify(entry) + '\n');
    fs.fdatasyncSync(this.fd);
  }
  close(): void {
    try { fs.closeSync(this.fd); } catch { /* closed */ }
  }
}
