// The journal of a `provision new`/`import` run, `<inventory>.journal-<pid>` (JSON lines): what must survive
// a kill between two inventory checkpoints. `prepared NAME` is durable (fsynced) before NewClient for NAME is
// sent, so a device C2 knows and the inventory does not is recognised as this tool's own, half-done one
// (never refused as "registered by other means", never needing --force); `done` carries the device's
// inventory entry once its links are made. A re-run folds the journals of dead runs into the inventory first:
// done devices are not registered again; prepared-only ones are provisioned again with a new key and bundle
// (their old bundle is replaced before C2 hears the new key; nobody can have flashed a device with it yet,
// the run that wrote it was killed seconds after).
// Group commit: records appended while an fsync is in flight go out together with the next one, so a run
// pays one fsync per batch of devices, not one per device, and the C2 lanes never wait for the disk while
// the devices ahead of them are being prepared.
// Only `prepared` needs the fsync. A `done` record is written (the page cache keeps it through a kill of
// the process) and flushed by the next group's `prepared` fsync, not by one of its own: after a crash of
// the machine a lost `done` leaves its device prepared-only, provisioned again by the next run.
// Flushing every `done` cost one disk flush per device (bench:provision, diskFlushesPerDevice). The `done`
// records of one turn of the event loop go out in one write (a kill inside that turn loses them: their
// devices count as prepared-only, as after a crash).
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import type { InventoryClient } from '../lib/fleet-inventory/fleet-inventory.ts';

export type JournalRecord = { op: 'prepared'; name: string } | { op: 'done'; entry: InventoryClient };

export interface ProvisionJournal {
  readonly file: string;
  /**
   * Resolves once the record is on disk (fsynced together with whatever else was appended meanwhile);
   * `durable: false` writes it at the end of this turn of the event loop (with the other such records) and
   * resolves at once, without waiting for a flush; if that write fails, `error` says so.
   */
  append(rec: JournalRecord, opts?: { durable?: boolean }): Promise<void>;
  /** Why a `done` record could not be written, if one could not (the run reports it at its end). */
  readonly error: Error | undefined;
  /** How many fsyncs were issued (the bench reports records per fsync). */
  readonly syncs: number;
  /** Flush and close; `keep` (records still needed by a later run) are rewritten, else the file is removed. */
  close(keep?: JournalRecord[]): Promise<void>;
}

const fsyncAsync = promisify(fs.fsync);

const JOURNAL = /\.journal-(\d+)$/;

export function openProvisionJournal(inventoryFile: string): ProvisionJournal {
  const file = `${path.resolve(inventoryFile)}.journal-${process.pid}`;
  const fd = fs.openSync(file, 'a', 0o600);
  let pending: string[] = [];
  let waiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  let flushing: Promise<void> | undefined;
  let syncs = 0;
  // `done` records not written yet, and the first error writing them (the next durable append rejects with it).
  let loose: string[] = [];
  let looseError: Error | undefined;
  const writeLoose = () => {
    if (!loose.length) return;
    const text = loose.join('');
    loose = [];
    try { fs.writeFileSync(fd, text); } catch (e) { looseError ??= e as Error; }
  };
  const flush = async (): Promise<void> => {
    while (pending.length) {
      writeLoose();
      const text = pending.join('');
      const done = waiters;
      pending = [];
      waiters = [];
      try {
        fs.writeFileSync(fd, text);
        // fsync on the thread pool: the event loop keeps serving C2's responses meanwhile.
        await fsyncAsync(fd);
        syncs++;
        for (const w of done) w.resolve();
      } catch (e) {
        for (const w of done) w.reject(e as Error);
      }
    }
    flushing = undefined;
  };
  return {
    file,
    get syncs() { return syncs; },
    get error() { return looseError; },
    append(rec, opts = {}) {
      if (opts.durable === false) {
        if (!loose.length) setImmediate(writeLoose);
        loose.push(JSON.stringify(rec) + '\n');
        return Promise.resolve(); // a failed write is `error`
      }
      if (looseError) return Promise.reject(looseError);
      return new Promise<void>((resolve, reject) => {
        pending.push(JSON.stringify(rec) + '\n');
        waiters.push({ resolve, reject });
        flushing ??= Promise.resolve().then(flush);
      });
    },
    async close(keep = []) {
      while (flushing) await flushing;
      writeLoose();
      fs.closeSync(fd);
      if (keep.length) {
        const tmp = `${file}.tmp`;
        fs.writeFileSync(tmp, keep.map((r) => JSON.stringify(r) + '\n').join(''), { mode: 0o600 });
        fs.renameSync(tmp, file);
      } else fs.rmSync(file, { force: true });
    },
  };
}

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}

export interface LeftOver {
  /** Journals of runs that no longer run (fold, then remove them). */
  files: string[];
  /** Devices a dead run finished: their inventory entries. */
  done: InventoryClient[];
  /** Devices a dead run may have registered without finishing (in C2 perhaps, not in the inventory). */
  unfinished: string[];
}

/** What runs that died left in their journals next to `inventoryFile` (a line cut by the kill is ignored). */
export function readLeftOverJournals(inventoryFile: string): LeftOver {
  const abs = path.resolve(inventoryFile);
  const dir = path.dirname(abs);
  const out: LeftOver = { files: [], done: [], unfinished: [] };
  const prepared = new Set<string>();
  const finished = new Map<string, InventoryClient>();
  let names: string[];
  try { names = fs.readdirSync(dir); } catch { return out; }
  for (const n of names.sort()) {
    const m = JOURNAL.exec(n);
    if (!m || !n.startsWith(`${path.basename(abs)}.journal-`) || Number(m[1]) === process.pid || alive(Number(m[1]))) continue;
    const file = path.join(dir, n);
    out.files.push(file);
    for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
      if (!line.trim()) continue;
      let rec: JournalRecord;
      try { rec = JSON.parse(line) as JournalRecord; } catch { continue; }
      if (rec.op === 'prepared') { prepared.add(rec.name); finished.delete(rec.name); }
      if (rec.op === 'done') finished.set(rec.entry.name, rec.entry);
    }
  }
  out.done = [...finished.values()];
  out.unfinished = [...prepared].filter((n) => !finished.has(n));
  return out;
}
