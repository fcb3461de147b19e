// A steady C2 write load for fault tests: NewClient and NewTopic alternately, at a fixed rate
// (open loop: a slow answer does not slow the load down), through whatever endpoint the API client
// points at. Every request is recorded with its start, end and outcome, so a fault's window can be
// measured and every acknowledged write read back afterwards.
import crypto from 'node:crypto';
import type { C2Api } from '../../lib/c2/c2-api.ts';

export interface WriteRecord {
  kind: 'client' | 'topic';
  name: string;
  startMs: number;
  endMs: number;
  ok: boolean;
  error?: string;
}

export interface WriteLoad {
  records: WriteRecord[];
  /** Resolves when every request started has finished. */
  stop(): Promise<void>;
}

export function startWriteLoad(api: C2Api, opts: { ratePerSecond: number; prefix: string; maxInFlight?: number }): WriteLoad {
  const records: WriteRecord[] = [];
  const inFlight = new Set<Promise<void>>();
  let seq = 0;
  const fire = () => {
    if (inFlight.size >= (opts.maxInFlight ?? 50)) return;
    const n = seq++;
    const kind = n % 2 === 0 ? 'client' : 'topic';
    const name = `${opts.prefix}-${kind}-${n}`;
    const rec: WriteRecord = { kind, name, startMs: Date.now(), endMs: 0, ok: false };
    records.push(rec);
    const p = (kind === 'client' ? api.newClient(name, crypto.randomBytes(32)) : api.newTopic(name))
      .then(() => { rec.ok = true; }, (e: Error) => { rec.error = e.message.slice(0, 200); })
      .finally(() => { rec.endMs = Date.now(); inFlight.delete(p); });
    inFlight.add(p);
  };
  const timer = setInterval(fire, 1000 / opts.ratePerSecond);
  return {
    records,
    async stop() {
      clearInterval(timer);
      while (inFlight.size) await Promise.all([...inFlight]);
    },
  };
}

export interface FaultWindow {
  /** Seconds from the fault until writes succeed again: the end of the first write, started after the
   * fault, from which on every later write succeeded. */
  recoverySeconds: number;
  failed: number;
  total: number;
  /** Longest answer time of a write started after the fault (s). */
  maxLatencySeconds: number;
  errors: string[];
}

export function faultWindow(records: WriteRecord[], faultMs: number): FaultWindow {
  const after = records.filter((r) => r.startMs >= faultMs).sort((a, b) => a.startMs - b.startMs);
  let lastBad = -1;
  after.forEach((r, i) => { if (!r.ok) lastBad = i; });
  const firstGood = after.slice(lastBad + 1).find((r) => r.ok);
  // Writes in flight when the fault hit count too: they are the ones a crash cuts.
  const touched = records.filter((r) => r.endMs >= faultMs);
  const failedRecords = touched.filter((r) => !r.ok);
  return {
    recoverySeconds: firstGood ? Math.max(0, (firstGood.endMs - faultMs) / 1000) : Number.NaN,
    failed: failedRecords.length,
    total: touched.length,
    maxLatencySeconds: Math.max(0, ...after.map((r) => (r.endMs - r.startMs) / 1000)),
    errors: [...new Set(failedRecords.map((r) => r.error ?? '?'))].slice(0, 5),
  };
}

/** Acknowledged writes that C2 no longer has (read back through the API, every page). */
export async function lostAcknowledgedWrites(api: C2Api, records: WriteRecord[]): Promise<string[]> {
  const clients = new Set(await api.allClients());
  const topics = new Set(await api.allTopics());
  return records.filter((r) => r.ok && !(r.kind === 'client' ? clients : topics).has(r.name)).map((r) => r.name);
}
