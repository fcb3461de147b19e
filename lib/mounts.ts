// Which mount points exist and which are mounted, so a path on an unmounted filesystem is named as
// such instead of being written to the disk underneath (a backup landing on the local root disk).
import fs from 'node:fs';
import path from 'node:path';

/** Mounted mount points, from /proc/self/mountinfo (field 5; octal escapes decoded). */
export function mountedPoints(mountinfo = '/proc/self/mountinfo'): Set<string> {
  const out = new Set<string>();
  let text = '';
  try { text = fs.readFileSync(mountinfo, 'utf8'); } catch { return out; }
  for (const line of text.split('\n')) {
    const p = line.split(' ')[4];
    if (p) out.add(p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
  }
  return out;
}

/** Mount points /etc/fstab declares (swap and comments skipped). */
export function declaredMountPoints(fstab = '/etc/fstab'): string[] {
  let text = '';
  try { text = fs.readFileSync(fstab, 'utf8'); } catch { return []; }
  return text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'))
    .map((l) => l.split(/\s+/)[1]).filter((p): p is string => !!p && p.startsWith('/') && p !== '/')
    .map((p) => p.replace(/\\040/g, ' ').replace(/\/+$/, ''));
}

/**
 * The deepest mount point /etc/fstab declares at or above `dir` that is not mounted now, if any:
 * writing under it would write to the filesystem beneath.
 */
export function unmountedMountPointFor(dir: string, opts: { fstab?: string; mountinfo?: string } = {}): string | undefined {
  const abs = path.resolve(dir);
  const mounted = mountedPoints(opts.mountinfo);
  const covering = declaredMountPoints(opts.fstab)
    .filter((m) => abs === m || abs.startsWith(m + '/'))
    .sort((a, b) => b.length - a.length);
  return covering.find((m) => !mounted.has(m));
}

/** True when `dir` is itself a mounted filesystem's root (a mounted volume, tmpfs, NFS export...). */
export function isMountedPoint(dir: string, mountinfo?: string): boolean {
  return mountedPoints(mountinfo).has(path.resolve(dir));
}
