// Process trees read from /proc (Linux): who is whose child, killing a whole tree synchronously (a
// signal handler cannot await), and the resident memory of a tree (benchmarks' peak RSS). Every
// reader tolerates processes exiting mid-walk; without /proc, a tree is just its root.
import fs from 'node:fs';

/** Parent pid from /proc/PID/stat (the field after the parenthesised command, which may hold spaces). */
export function parentPid(pid: number | string): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined; // exited
  }
}

/** Every live pid, from the numeric entries of /proc (empty without /proc). */
export function livePids(): number[] {
  try {
    return fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number);
  } catch {
    return [];
  }
}

/** Direct children of `parent`. */
export function childPids(parent: number): number[] {
  return livePids().filter((p) => parentPid(p) === parent);
}

/** `root` and all its descendants, root first (one snapshot of /proc). */
export function descendantPids(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const pid of livePids()) {
    const ppid = parentPid(pid);
    if (ppid === undefined) continue;
    let list = children.get(ppid);
    if (!list) children.set(ppid, (list = []));
    list.push(pid);
  }
  const all: number[] = [];
  const stack = [root];
  while (stack.length) {
    const p = stack.pop()!;
    all.push(p);
    stack.push(...(children.get(p) ?? []));
  }
  return all;
}

/** Signal (default SIGKILL) a process and every descendant, synchronously; gone processes are skipped. */
export function killTreeSync(pid: number | undefined, signal: NodeJS.Signals = 'SIGKILL'): void {
  if (!pid) return;
  for (const p of descendantPids(pid)) try { process.kill(p, signal); } catch { /* gone */ }
}

/** Sum of VmRSS over a process and all its descendants, now, in bytes. */
export function treeRssBytes(root: number): number {
  let total = 0;
  for (const pid of descendantPids(root)) {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (m) total += Number(m[1]) * 1024;
    } catch { /* exited */ }
  }
  return total;
}

/**
 * CPU seconds (user + system) used so far by a process and its live descendants, from /proc/PID/stat
 * (utime and stime, in clock ticks of 1/100 s on Linux). Benchmarks diff two readings around a phase.
 */
export function treeCpuSeconds(root: number): number {
  let ticks = 0;
  for (const pid of descendantPids(root)) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[11]) + Number(f[12]);
    } catch { /* exited */ }
  }
  return ticks / 100;
}
