// A lease on the target itself, so runs on different hosts (or with different lock files: the stack's
// cron container and a manual run on the host) never write to, or clean up, one target at once. The
// lease is a small object at the target's root, written before anything else, naming its owner, host,
// start time and the set being written; the owner refreshes its heartbeat, and a lease whose heartbeat
// is older than `staleAfterSeconds` belongs to a dead run and is taken over (with a log line).
import crypto from 'node:crypto';
import os from 'node:os';
import type { Logger } from '../lib/log.ts';
import { BackupError } from './exit-codes.ts';
import type { BackupTarget } from './targets.ts';

export const LEASE_FILE = 'e4ops-lease.json';
export const DEFAULT_LEASE_STALE_SECONDS = 600;

export interface LeaseRecord {
  kind: 'e4ops-target-lease';
  token: string;
  /** user@host pid N: who to ask. */
  owner: string;
  host: string;
  pid: number;
  operation: string;
  startedAt: string;
  heartbeatAt: string;
  setId?: string;
}

export interface TargetLease {
  target: BackupTarget;
  record: LeaseRecord;
  /** Name the set being written (shown to a loser). */
  setSetId(setId: string): Promise<void>;
  release(): Promise<void>;
}

export interface LeaseOptions {
  operation: string;
  staleAfterSeconds?: number;
  /** Default: a quarter of the stale time, at most 60 s. */
  heartbeatSeconds?: number;
  /** Called once if another run took the lease over (this run must stop). */
  onLost?: (e: BackupError) => void;
  log?: Logger;
  /** Wait before the read-back that settles a race on storage without exclusive create (ms). */
  settleMs?: number;
  now?: () => Date;
}

function parse(text: string | undefined): LeaseRecord | undefined {
  if (text === undefined) return undefined;
  try {
    const r = JSON.parse(text) as LeaseRecord;
    return r?.kind === 'e4ops-target-lease' && typeof r.token === 'string' ? r : undefined;
  } catch { return undefined; }
}

export function describeLease(r: LeaseRecord, now = new Date()): string {
  const ago = Math.round((now.getTime() - Date.parse(r.heartbeatAt)) / 1000);
  return `${r.owner} (${r.operation}${r.setId ? ` of set ${r.setId}` : ''}, since ${r.startedAt}, last heartbeat ${ago} s ago)`;
}

function heldBy(target: BackupTarget, r: LeaseRecord, stale: number, now: Date): BackupError {
  return new BackupError('locked', `target ${target.spec} is leased by ${describeLease(r, now)}: another run is using it; not starting. `
    + `If that run is dead, its lease is taken over once its heartbeat is ${stale} s old (--lease-stale-after)`, { target: target.spec, owner: r.owner, lease: r });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Take the target's lease or throw BackupError('locked') naming the live owner. */
export async function acquireTargetLease(target: BackupTarget, o: LeaseOptions): Promise<TargetLease> {
  const now = o.now ?? (() => new Date());
  const stale = o.staleAfterSeconds ?? DEFAULT_LEASE_STALE_SECONDS;
  const t = now().toISOString();
  const record: LeaseRecord = {
    kind: 'e4ops-target-lease', token: crypto.randomBytes(12).toString('hex'),
    owner: `${os.userInfo().username}@${os.hostname()} pid ${process.pid}`, host: os.hostname(), pid: process.pid,
    operation: o.operation, startedAt: t, heartbeatAt: t,
  };
  const existing = parse(await target.readRootText(LEASE_FILE));
  let settle = o.settleMs ?? (target.kind === 'local' ? 0 : 1500);
  if (existing) {
    const age = (now().getTime() - Date.parse(existing.heartbeatAt)) / 1000;
    if (!(age >= stale)) throw heldBy(target, existing, stale, now());
    o.log?.warn('lease_taken_over', { target: target.spec, staleOwner: existing.owner, staleSetId: existing.setId, heartbeatAgeSeconds: Math.round(age) });
    await target.writeRootText(LEASE_FILE, JSON.stringify(record));
    settle = Math.max(settle, 300); // two runs may take over the same stale lease: the read-back decides
  } else if (!(await target.createRootText(LEASE_FILE, JSON.stringify(record)))) {
    const winner = parse(await target.readRootText(LEASE_FILE));
    throw winner ? heldBy(target, winner, stale, now()) : new BackupError('locked', `target ${target.spec}: another run is taking the lease right now; not starting`);
  }
  if (settle) await sleep(settle);
  const back = parse(await target.readRootText(LEASE_FILE));
  if (back?.token !== record.token) throw back ? heldBy(target, back, stale, now()) : new BackupError('locked', `target ${target.spec}: the lease vanished while taking it; not starting`);

  let lost = false;
  let released = false;
  let beating: Promise<void> = Promise.resolve();
  const beat = async () => {
    if (lost || released) return;
    try {
      const cur = parse(await target.readRootText(LEASE_FILE));
      if (released) return;
      if (cur?.token !== record.token) {
        lost = true;
        o.onLost?.(new BackupError('locked', `target ${target.spec}: this run's lease was taken over by ${cur ? describeLease(cur, now()) : 'nobody (it was deleted)'}; stopping`, { target: target.spec }));
        return;
      }
      record.heartbeatAt = now().toISOString();
      await target.writeRootText(LEASE_FILE, JSON.stringify(record));
    } catch (e) {
      o.log?.warn('lease_heartbeat_failed', { target: target.spec, error: (e as Error).message });
    }
  };
  const every = (o.heartbeatSeconds ?? Math.min(60, stale / 4)) * 1000;
  // One beat at a time, and release waits for it: a beat's write must never land after the lease was removed.
  const timer = setInterval(() => { beating = beating.then(beat); }, every);
  timer.unref();
  return {
    target, record,
    async setSetId(setId) {
      record.setId = setId;
      record.heartbeatAt = now().toISOString();
      await target.writeRootText(LEASE_FILE, JSON.stringify(record));
    },
    async release() {
      if (released) return;
      released = true;
      clearInterval(timer);
      await beating;
      try {
        const cur = parse(await target.readRootText(LEASE_FILE));
        if (cur?.token === record.token) await target.removeRootText(LEASE_FILE);
      } catch (e) {
        o.log?.warn('lease_release_failed', { target: target.spec, error: (e as Error).message });
      }
    },
  };
}
