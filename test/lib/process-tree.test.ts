import { describe, it, expect, afterAll } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { childPids, descendantPids, killTreeSync, parentPid, treeRssBytes } from '../../lib/process-tree.ts';

import fs from 'node:fs';

/** Running (a zombie waiting for its parent to reap it counts as dead). */
const alive = (pid: number) => {
  try { const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8'); return st[st.lastIndexOf(')') + 2] !== 'Z'; } catch { return false; }
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('process trees from /proc', () => {
  const started: ChildProcess[] = [];
  afterAll(() => { for (const c of started) killTreeSync(c.pid); });

  it('finds a shell and its grandchildren, sums their memory, and kills the whole tree', async () => {
    // sh -> (sh -> sleep) and sh -> sleep: three levels, so the walk must go past direct children.
    const root = spawn('sh', ['-c', "sleep 60 & sh -c 'sleep 60 & wait' & wait"], { stdio: 'ignore' });
    started.push(root);
    let tree: number[] = [];
    for (let i = 0; i < 50 && tree.length < 4; i++) { await sleep(50); tree = descendantPids(root.pid!); }
    expect(tree[0]).toBe(root.pid);
    expect(tree).toHaveLength(4);
    expect(childPids(root.pid!)).toHaveLength(2);
    for (const p of tree.slice(1)) expect(tree).toContain(parentPid(p));
    expect(childPids(process.pid)).toContain(root.pid);
    expect(treeRssBytes(root.pid!)).toBeGreaterThan(treeRssBytes(tree[tree.length - 1]));

    killTreeSync(root.pid);
    for (let i = 0; i < 50 && tree.some(alive); i++) await sleep(50);
    await new Promise((r) => (root.exitCode !== null || root.signalCode ? r(null) : root.once('exit', r)));
    expect(root.signalCode).toBe('SIGKILL');
    expect(tree.slice(1).filter(alive)).toEqual([]);
  });

  it('treats a pid that does not exist as an empty tree', () => {
    expect(parentPid(2 ** 22 + 1)).toBeUndefined();
    expect(treeRssBytes(2 ** 22 + 1)).toBe(0);
    expect(() => killTreeSync(2 ** 22 + 1)).not.toThrow();
  });
});
