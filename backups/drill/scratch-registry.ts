// A drill's scratch servers and folders, written down in a state file BEFORE they start (folders) and as
// soon as they run (processes), so a drill killed with SIGKILL, which can clean nothing up itself, does
// not leave a PostgreSQL holding the restored key store on 127.0.0.1. The next drill, and
// `e4ops drill --cleanup`, stop and remove what dead drills left. Processes are matched by pid AND
// start time (a reused pid is never killed), and by the registered folders they use.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { descendantPids, killTreeSync, livePids } from '../../lib/process-tree.ts';
import type { Logger } from '../../lib/log.ts';

export interface ScratchProcess { pid: number; procStart: string; what: string }
export interface ScratchState {
  kind: 'e4ops-drill-scratch';
  pid: number;
  procStart: string;
  host: string;
  startedAt: string;
  dirs: string[];
  processes: ScratchProcess[];
}

export function defaultDrillStateDir(): string {
  if (process.env.E4OPS_DRILL_STATE_DIR) return process.env.E4OPS_DRILL_STATE_DIR;
  return process.getuid?.() === 0 ? '/var/lib/e4ops/drill-scratch' : path.join(os.homedir(), '.local', 'state', 'e4ops', 'drill-scratch');
}

/** Start time of a process (field 22 of /proc/PID/stat), or undefined when it is gone. */
export function procStartOf(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch { return undefined; }
}

const alive = (pid: number, procStart: string) => procStartOf(pid) === procStart;

/** Folders under the temp dir a process refers to (command line, working directory, open files). */
function tempDirsOf(pid: number): string[] {
  const tmp = os.tmpdir();
  const refs: string[] = [];
  try { refs.push(...fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')); } catch { return []; }
  try { refs.push(fs.readlinkSync(`/proc/${pid}/cwd`)); } catch { /* gone */ }
  try { for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) try { refs.push(fs.readlinkSync(`/proc/${pid}/fd/${fd}`)); } catch { /* closed */ } } catch { /* gone */ }
  const mine = new RegExp(`^${tmp.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/(e4ops-[\\w.-]+)`);
  return [...new Set(refs.map((r) => mine.exec(r)?.[1]).filter((x): x is string => !!x).map((d) => path.join(tmp, d)))];
}

/** This drill's state file, rewritten (atomically) on every registration. */
export class ScratchRegistry {
  readonly file: string;
  private state: ScratchState;
  constructor(readonly stateDir = defaultDrillStateDir()) {
    fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    this.file = path.join(stateDir, `drill-${os.hostname()}-${process.pid}.json`);
    this.state = { kind: 'e4ops-drill-scratch', pid: process.pid, procStart: procStartOf(process.pid) ?? '', host: os.hostname(), startedAt: new Date().toISOString(), dirs: [], processes: [] };
    this.write();
  }
  private write(): void {
    const tmp = `${this.file}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(this.state), { mode: 0o600 });
    fs.renameSync(tmp, this.file);
  }
  addDir(dir: string): void {
    if (!this.state.dirs.includes(dir)) { this.state.dirs.push(dir); this.write(); }
  }
  /** Record every process this drill runs now (a server just started) and the temp folders it uses. */
  noteProcesses(what: string): void {
    for (const pid of descendantPids(process.pid)) {
      const procStart = procStartOf(pid);
      if (!procStart || this.state.processes.some((p) => p.pid === pid && p.procStart === procStart)) continue;
      this.state.processes.push({ pid, procStart, what });
      for (const d of tempDirsOf(pid)) if (!this.state.dirs.includes(d)) this.state.dirs.push(d);
    }
    this.write();
  }
  close(): void {
    fs.rmSync(this.file, { force: true });
  }
}

export interface CleanupResult { drills: number; killed: number[]; removedDirs: string[]; liveDrills: number }

/** Stop and remove what dead drills on this host left behind; live drills are not touched. */
export function cleanupDeadDrills(o: { stateDir?: string; log?: Logger } = {}): CleanupResult {
  const dir = o.stateDir ?? defaultDrillStateDir();
  const result: CleanupResult = { drills: 0, killed: [], removedDirs: [], liveDrills: 0 };
  let names: string[] = [];
  try { names = fs.readdirSync(dir).filter((n) => /^drill-.*\.json$/.test(n)); } catch { return result; }
  for (const name of names) {
    const file = path.join(dir, name);
    let s: ScratchState;
    try { s = JSON.parse(fs.readFileSync(file, 'utf8')) as ScratchState; } catch { continue; }
    if (s.kind !== 'e4ops-drill-scratch' || s.host !== os.hostname()) continue;
    if (s.pid !== process.pid && alive(s.pid, s.procStart)) { result.liveDrills++; continue; }
    if (s.pid === process.pid) continue;
    result.drills++;
    for (const p of s.processes) if (alive(p.pid, p.procStart)) { killTreeSync(p.pid); result.killed.push(p.pid); }
    // Servers that had not been noted yet: any process using a registered folder.
    for (const pid of allPids()) {
      const uses = tempDirsOf(pid);
      if (uses.some((u) => s.dirs.some((d) => u === d || u.startsWith(d + '/') || d.startsWith(u + '/')))) { killTreeSync(pid); result.killed.push(pid); }
    }
    for (const d of s.dirs) if (fs.existsSync(d)) { fs.rmSync(d, { recursive: true, force: true }); result.removedDirs.push(d); }
    fs.rmSync(file, { force: true });
    o.log?.warn('drill.leftovers_removed', { deadDrillPid: s.pid, startedAt: s.startedAt, killed: result.killed, removedDirs: result.removedDirs });
  }
  return result;
}

const allPids = () => livePids().filter((p) => p !== process.pid);

/** This drill's registry, or none (logged) when the state folder cannot be written: the drill still runs. */
export function openScratchRegistry(log?: Logger): ScratchRegistry | undefined {
  try { return new ScratchRegistry(); } catch (e) {
    log?.warn('drill.state_file_unavailable', { stateDir: defaultDrillStateDir(), error: (e as Error).message, hint: 'set E4OPS_DRILL_STATE_DIR to a writable folder' });
    return undefined;
  }
}
