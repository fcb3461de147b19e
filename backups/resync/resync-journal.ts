// The resync journal: one JSON object per line, appended and fsync'ed before and after every
// change a resync makes through C2's API. A run that is killed (SIGKILL, power loss) leaves a
// journal that the next run reads to finish only what is left, so no topic is rotated twice in
// one resync. A finished journal is closed: a new resync needs a new journal file.
import fs from 'node:fs';
import path from 'node:path';

export type JournalEntry =
  | { type: 'start'; resyncId: string; at: string; c2: string; counts: { clients: number; topics: number }; pid: number }
  | { type: 'resume'; at: string; pid: number }
  | { type: 'client-created'; name: string; at: string }
  | { type: 'link-created'; name: string; topic: string; at: string }
  | { type: 'topic-created'; topic: string; at: string }
  /** Written before NewTopic is sent; keyDigest is the digest of the sealed key before rotation, when known. */
  | { type: 'begin'; topic: string; at: string; keyDigest?: string }
  /** NewTopic succeeded (C2 stored a fresh key); on C2 builds that do not push it, 'done' follows once pushed. */
  | { type: 'rotated'; topic: string; at: string; attempts: number; confirmedBy?: 'api' | 'database' }
  | { type: 'done'; topic: string; at: string; attempts: number; confirmedBy?: 'api' | 'database'; pushedTo?: number }
  | { type: 'failed'; topic: string; at: string; attempts: number; error: string }
  /** The main pass is over: every topic rotated (or failed). Entries below belong to --follow / --follow-up. */
  | { type: 'finish'; at: string; ok: boolean }
  /** NewClient with the inventory's identity key on a client the restored database already had. */
  | { type: 'identity-reregistered'; name: string; at: string; keyChanged: boolean | 'unknown' }
  /** A device holds every current key of its topics: pushed while it was connected. */
  | { type: 'device-served'; name: string; at: string; how: 'main-pass' | 'follow' }
  | { type: 'follow-start'; at: string; until: string; followUp: boolean; pid: number }
  | { type: 'follow-end'; at: string; served: number; notServed: string[] };

export interface JournalState {
  exists: boolean;
  resyncId?: string;
  startedAt?: string;
  /** Counts C2 reported when the resync first started (before any change). */
  startCounts?: { clients: number; topics: number };
  finished: boolean;
  finishedOk?: boolean;
  /** Topics whose rotation is complete (key rotated and, where needed, pushed to linked clients). */
  rotated: Set<string>;
  /** Topics rotated in C2 whose key still has to be pushed to the linked clients. */
  rotatedNotPushed: Set<string>;
  created: Set<string>;
  /** Topics with a `begin` but no `done`: the request may or may not have reached C2. */
  inDoubt: Map<string, { keyDigest?: string }>;
  failed: Map<string, string>;
  clientsCreated: Set<string>;
  linksCreated: number;
  runs: number;
  identityReRegistered: Map<string, boolean | 'unknown'>;
  /** Devices served while connected, by the main pass or a follow. */
  devicesServed: Set<string>;
  follows: number;
}

export class JournalError extends Error {}

/** Read a journal (a missing file is an empty state). A torn last line from a kill is ignored. */
export function readJournal(file: string): JournalState {
  const st: JournalState = {
    exists: false, finished: false, rotated: new Set(), rotatedNotPushed: new Set(), created: new Set(), inDoubt: new Map(),
    failed: new Map(), clientsCreated: new Set(), linksCreated: 0, runs: 0,
    identityReRegistered: new Map(), devicesServed: new Set(), follows: 0,
  };
  if (!fs.existsSync(file)) return st;
  st.exists = true;
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  lines.forEach((line, i) => {
    if (!line.trim()) return;
    let e: JournalEntry;
    try {
      e = JSON.parse(line);
    } catch {
      if (i >= lines.length - 2) return; // torn final write of a killed run
      throw new JournalError(`resync journal ${file} line ${i + 1} is not JSON: the file is damaged; move it away only if you know which topics were rotated`);
    }
    switch (e.type) {
      case 'start': st.resyncId = e.resyncId; st.startedAt = e.at; st.startCounts = e.counts; st.runs++; break;
      case 'resume': st.runs++; break;
      case 'client-created': st.clientsCreated.add(e.name); break;
      case 'link-created': st.linksCreated++; break;
      case 'topic-created': st.created.add(e.topic); st.inDoubt.delete(e.topic); break;
      case 'begin': st.inDoubt.set(e.topic, { keyDigest: e.keyDigest }); break;
      case 'rotated': st.rotatedNotPushed.add(e.topic); st.inDoubt.delete(e.topic); break;
      case 'done': st.rotated.add(e.topic); st.rotatedNotPushed.delete(e.topic); st.inDoubt.delete(e.topic); st.failed.delete(e.topic); break;
      case 'failed': st.failed.set(e.topic, e.error); st.inDoubt.delete(e.topic); break;
      case 'finish': st.finished = true; st.finishedOk = e.ok; break;
      case 'identity-reregistered': st.identityReRegistered.set(e.name, e.keyChanged); break;
      case 'device-served': st.devicesServed.add(e.name); break;
      case 'follow-start': st.follows++; break;
    }
  });
  return st;
}

/**
 * Append-only writer. Every entry is written at once (a killed process loses nothing: the kernel has
 * it). appendDurable also waits until the entry is on disk (fdatasync), with group commit: requests in
 * flight share one sync, so a journal entry before each NewTopic costs no throughput.
 */
export class JournalWriter {
  private fd: number;
  private inflight?: Promise<void>;
  private pending?: Promise<void>;
  private closed = false;
  constructor(readonly file: string) {
    fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    this.fd = fs.openSync(file, 'a', 0o600);
  }
  append(entry: JournalEntry): void {
    fs.writeSync(this.fd, JSON.stringify(entry) + '\n');
  }
  appendDurable(entry: JournalEntry): Promise<void> {
    this.append(entry);
    return this.sync();
  }
  /** Resolves once everything appended so far is on disk. */
  sync(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (!this.inflight) {
      this.inflight = new Promise<void>((resolve, reject) => fs.fdatasync(this.fd, (e) => (e ? reject(e) : resolve())))
        .finally(() => { this.inflight = undefined; });
      return this.inflight;
    }
    // A sync is running: entries written after it started need the next one.
    if (!this.pending) this.pending = this.inflight.catch(() => undefined).then(() => { this.pending = undefined; return this.sync(); });
    return this.pending;
  }
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try { fs.fdatasyncSync(this.fd); fs.closeSync(this.fd); } catch { /* already closed */ }
  }
}
