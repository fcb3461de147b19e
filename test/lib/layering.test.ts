// The shape the architecture asks for, checked on the source: lib/ imports no capability folder
// (scripts/ → capability folders → lib/, never back), a capability folder imports no other one (what two
// of them share lives in lib/, e.g. the fleet inventory), and the repository root is resolved once,
// in lib/repo-root.ts, instead of each file counting '..' from where it happens to live.
import { describe, it, expect } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from '../../lib/repo-root.ts';

function tsFiles(dir: string): string[] {
  return fs.readdirSync(path.join(REPO_ROOT, dir), { withFileTypes: true }).flatMap((e) => {
    const rel = path.join(dir, e.name);
    return e.isDirectory() ? tsFiles(rel) : e.name.endsWith('.ts') ? [rel] : [];
  });
}

const CAPABILITIES = ['backups', 'provisioning', 'stacks', 'dashboards', 'appliances'];
// Checked so far: backups/ and provisioning/. Older edges not yet moved into lib/: stacks/ → dashboards/
// (scrape jobs, alert rules) and appliances/ → backups/ (the backup job's units).
const CHECKED = ['backups', 'provisioning'];

/** Relative imports of every .ts file under `dir`, as repository paths. */
function importsOf(dir: string): { file: string; target: string }[] {
  return tsFiles(dir).flatMap((file) => [...fs.readFileSync(path.join(REPO_ROOT, file), 'utf8').matchAll(IMPORT)]
    .map((m) => ({ file, target: path.relative(REPO_ROOT, path.resolve(REPO_ROOT, path.dirname(file), m[1] ?? m[2])) })));
}

const IMPORT = /(?:^|\n)\s*(?:import|export)\b[^'"]*?from\s+['"](\.[^'"]+)['"]|import\(\s*['"](\.[^'"]+)['"]\s*\)/g;

describe('layering', () => {
  it('lib/ imports nothing from backups/, dashboards/, stacks/, appliances/, scripts/ or test/', () => {
    const offenders: string[] = [];
    for (const file of tsFiles('lib')) {
      const text = fs.readFileSync(path.join(REPO_ROOT, file), 'utf8');
      for (const m of text.matchAll(IMPORT)) {
        const target = path.relative(REPO_ROOT, path.resolve(REPO_ROOT, path.dirname(file), m[1] ?? m[2]));
        if (!target.startsWith(`lib${path.sep}`)) offenders.push(`${file} imports ${target}`);
      }
    }
    expect(offenders).toEqual([]);
  });

  it('backups/ and provisioning/ import no other capability folder (they share the fleet inventory through lib/)', () => {
    const offenders = CHECKED.flatMap((cap) => importsOf(cap)
      .filter(({ target }) => CAPABILITIES.some((other) => other !== cap && target.startsWith(`${other}${path.sep}`)))
      .map(({ file, target }) => `${file} imports ${target}`));
    expect(offenders).toEqual([]);
    // The check sees real imports: provisioning reads the inventory module in lib/.
    expect(importsOf('provisioning').some(({ target }) => target === path.join('lib', 'fleet-inventory', 'fleet-inventory.ts'))).toBe(true);
  });

  it('the repository root is resolved only in lib/repo-root.ts (lib, stacks, scripts, bench)', () => {
    const rootFromHere = /import\.meta\.(?:url|dirname)[^\n;]*['"]\.\.(?:\/\.\.)?['"]/;
    const offenders = ['lib', 'stacks', 'scripts', 'bench'].flatMap(tsFiles)
      .filter((f) => f !== path.join('lib', 'repo-root.ts') && rootFromHere.test(fs.readFileSync(path.join(REPO_ROOT, f), 'utf8')));
    expect(offenders, 'import { REPO_ROOT } from lib/repo-root.ts instead').toEqual([]);
    expect(fs.existsSync(path.join(REPO_ROOT, 'package.json'))).toBe(true);
  });
});
