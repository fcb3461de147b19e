// Everything a drill starts (PostgreSQL, Mosquitto, C2, temp folders) is registered here so it is
// torn down on every path: normal end, thrown error, and SIGINT/SIGTERM (synchronously, because the
// server launchers' own exit hook ends the process right after the signal handlers run).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { childPids, killTreeSync } from '../../lib/process-tree.ts';
import type { ScratchRegistry } from './scratch-registry.ts';

interface Resource {
  what: string;
  stop: () => Promise<void>;
  /** Best-effort immediate teardown for signal handlers (no awaiting possible). */
  killSync?: () => void;
}

/** Remove a folder even while processes just killed are still letting go of it (retries for up to 3 s). */
export function removeDirSync(dir: string): void {
  const wait = new Int32Array(new SharedArrayBuffer(4));
  for (let i = 0; i < 30; i++) {
    try {
      fs.rmSync(dir, { recursive: true, force: true });
      if (!fs.existsSync(dir)) return;
    } catch { /* ENOTEMPTY while a dying process writes: retry */ }
    Atomics.wait(wait, 0, 0, 100);
  }
}

/**
 * Servers still starting when a signal arrives are not registered yet: find this process's children
 * whose command line, working directory or open files lie in an e4ops-* temp folder, kill them, remove
 * those folders.
 */
export function killStartingScratchSync(): void {
  const tmp = os.tmpdir();
  const mine = new RegExp(`^${tmp.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/(e4ops-[\\w.-]+)`);
  for (const d of childPids(process.pid)) {
    try {
      const refs = [...fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0')];
      try { refs.push(fs.readlinkSync(`/proc/${d}/cwd`)); } catch { /* gone */ }
      // Open files too: a server's log (stdout/stderr) lives in the launcher's own folder.
      try { for (const fd of fs.readdirSync(`/proc/${d}/fd`)) try { refs.push(fs.readlinkSync(`/proc/${d}/fd/${fd}`)); } catch { /* closed */ } } catch { /* gone */ }
      const dirs = new Set(refs.map((r) => mine.exec(r)?.[1]).filter((x): x is string => !!x));
      if (!dirs.size) continue;
      killTreeSync(d);
      for (const dir of dirs) removeDirSync(path.join(tmp, dir));
    } catch { /* exited meanwhile */ }
  }
}

export class ScratchResources {
  private items: Resource[] = [];
  private signalHandler?: (sig: NodeJS.Signals) => void;

  /** With a registry, everything added is also written to the drill's state file (scratch-registry.ts). */
  constructor(private registry?: ScratchRegistry) {}

  add(what: string, stop: () => Promise<void>, killSync?: () => void): void {
    this.items.push({ what, stop, killSync });
    try { this.registry?.noteProcesses(what); } catch { /* the state file is a safety net, not a reason to fail */ }
  }

  addDir(dir: string): void {
    try { this.registry?.addDir(dir); } catch { /* as above */ }
    this.add(`folder ${dir}`, async () => fs.rmSync(dir, { recursive: true, force: true }), () => removeDirSync(dir));
  }

  /** Tear everything down on SIGINT/SIGTERM before the process exits. */
  installSignalHandlers(): void {
    if (this.signalHandler) return;
    this.signalHandler = (sig) => {
      for (const r of [...this.items].reverse()) {
        try { r.killSync?.(); } catch { /* keep going */ }
      }
      try { killStartingScratchSync(); } catch { /* best effort */ }
      this.registry?.close();
      process.exit(sig === 'SIGINT' ? 130 : 143);
    };
    process.prependListener('SIGINT', this.signalHandler);
    process.prependListener('SIGTERM', this.signalHandler);
  }

  /** Stop in reverse order of start; returns what could not be stopped. */
  async stopAll(): Promise<string[]> {
    const errors: string[] = [];
    for (const r of this.items.reverse()) {
      try { await r.stop(); } catch (e) { errors.push(`${r.what}: ${(e as Error).message}`); }
    }
    this.items = [];
    if (!errors.length) this.registry?.close();
    if (this.signalHandler) {
      process.removeListener('SIGINT', this.signalHandler);
      process.removeListener('SIGTERM', this.signalHandler);
      this.signalHandler = undefined;
    }
    return errors;
  }
}
