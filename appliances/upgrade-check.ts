// `e4ops appliance upgrade-check`: what this appliance is (image version, suite, C2 build) and whether
// its PostgreSQL data can be served by the binaries installed. After an OS upgrade (bookworm → trixie:
// PostgreSQL 15 → 17) the cluster stays at its old major until pg_upgradecluster runs; if the old
// binaries are gone, C2 must not start against a server that cannot open its data. e4c2.service runs
// this with --guard before every start.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { APPLIANCE_PATHS, type ImageRelease } from './build-appliance.ts';

export interface PostgresCluster { major: number; name: string; dataDir: string }

export interface UpgradeReport {
  image?: ImageRelease;
  c2: { binary: string; sha256?: string; matchesImage?: boolean };
  postgres: { binaries: number[]; clusters: PostgresCluster[] };
  /** Reasons C2 must not start (empty: fine). */
  refusals: string[];
  notes: string[];
}

const majors = (dir: string) => (fs.existsSync(dir) ? fs.readdirSync(dir).filter((d) => /^\d+$/.test(d)).map(Number).sort((a, b) => a - b) : []);

/** Read-only: looks at files under root, changes nothing. */
export function checkUpgrade(root = '/'): UpgradeReport {
  const at = (p: string) => path.join(root, p);
  const notes: string[] = [];
  const refusals: string[] = [];
  let image: ImageRelease | undefined;
  try { image = JSON.parse(fs.readFileSync(at(APPLIANCE_PATHS.imageRelease), 'utf8')) as ImageRelease; } catch {
    notes.push(`${APPLIANCE_PATHS.imageRelease} missing or unreadable: not an e4ops appliance image, or a damaged one`);
  }
  const binary = at(APPLIANCE_PATHS.c2Binary);
  const c2: UpgradeReport['c2'] = { binary: APPLIANCE_PATHS.c2Binary };
  if (fs.existsSync(binary)) {
    c2.sha256 = crypto.createHash('sha256').update(fs.readFileSync(binary)).digest('hex');
    if (image) c2.matchesImage = c2.sha256 === image.c2.sha256;
    if (c2.matchesImage === false) notes.push(`C2 binary differs from the one the image shipped (${image!.c2.moduleVersion}): replaced by hand?`);
  } else refusals.push(`C2 binary ${APPLIANCE_PATHS.c2Binary} is missing`);

  const binaries = majors(at('/usr/lib/postgresql')).filter((v) => fs.existsSync(at(`/usr/lib/postgresql/${v}/bin/postgres`)));
  const clusters: PostgresCluster[] = [];
  for (const v of majors(at('/var/lib/postgresql'))) {
    const vdir = at(`/var/lib/postgresql/${v}`);
    for (const name of fs.readdirSync(vdir)) {
      const pv = path.join(vdir, name, 'PG_VERSION');
      if (!fs.existsSync(pv)) continue;
      clusters.push({ major: Number(fs.readFileSync(pv, 'utf8').trim()), name, dataDir: `/var/lib/postgresql/${v}/${name}` });
    }
  }
  if (!binaries.length) refusals.push('no PostgreSQL server binaries in /usr/lib/postgresql: reinstall postgresql');
  if (!clusters.length) notes.push('no PostgreSQL cluster yet: first boot creates one with the newest binaries');
  const newest = binaries[binaries.length - 1];
  for (const c of clusters) {
    if (!binaries.includes(c.major)) {
      refusals.push(`PostgreSQL data ${c.dataDir} is major ${c.major}, but only ${binaries.join(', ') || 'no'} binaries are installed: ` +
        `C2 stays stopped. Fix: install postgresql-${c.major} again, then pg_upgradecluster ${c.major} ${c.name} (back up first: e4ops backup)`);
    } else if (c.major < newest) {
      notes.push(`PostgreSQL data ${c.dataDir} is major ${c.major}; ${newest} is installed too: upgrade with pg_upgradecluster ${c.major} ${c.name} when convenient`);
    }
  }
  return { image, c2, postgres: { binaries, clusters }, refusals, notes };
}

/** Lines for people. Pure. */
export function describeUpgradeReport(r: UpgradeReport): string {
  const i = r.image;
  return [
    i ? `image: ${i.name} ${i.version} (Debian ${i.suite}, built ${i.builtAt}, toolkit ${i.toolkitVersion})` : 'image: unknown',
    `C2: ${i ? i.c2.moduleVersion : 'unknown build'}${r.c2.sha256 ? `, sha256 ${r.c2.sha256.slice(0, 16)}…` : ''}${r.c2.matchesImage === false ? ' (NOT the image\'s binary)' : r.c2.matchesImage ? ' (as shipped)' : ''}`,
    `PostgreSQL binaries: ${r.postgres.binaries.join(', ') || 'none'}; data: ${r.postgres.clusters.map((c) => `${c.major} (${c.dataDir})`).join(', ') || 'no cluster yet'}`,
    ...r.notes.map((n) => `note: ${n}`),
    ...r.refusals.map((n) => `REFUSED: ${n}`),
    r.refusals.length ? 'result: C2 must not start' : 'result: ok',
  ].join('\n');
}
