// bench:stacks — how long evaluating each profile takes under Pulumi mocks (what `pulumi preview`
// spends inside the program), measured in fresh child processes, median of N runs.
// Baseline: the same HA evaluation without the program's two speed settings: tsx's source maps
// left on (stacks/index.ts turns them off) and Pulumi's per-promise stack traces kept
// (defineStack normally captures them without frames).
// Last stdout line: {"bench":"stacks","minimalSeconds":..,"haSeconds":..,"baselineSeconds":..,"ratio":..}
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { REPO_ROOT } from '../lib/repo-root.ts';

const here = fileURLToPath(import.meta.url);
const repoRoot = REPO_ROOT;

interface RunResult { profile: string; sourceMaps: boolean; importSeconds: number; evalSeconds: number; resources: number }

/** sourceMaps = the baseline: tsx's source maps on and full promise stack traces. */
async function child(profile: 'minimal' | 'ha', sourceMaps: boolean): Promise<void> {
  process.setSourceMapsEnabled(sourceMaps);
  const t0 = performance.now();
  const { installStackMocks } = await import('../test/stacks/pulumi-mocks.ts');
  const rec = await installStackMocks(`bench-${profile}`, {});
  const { defineStack } = await import('../stacks/program.ts');
  const { validateStackSettings } = await import('../lib/settings/stack-settings.ts');
  const t1 = performance.now();
  let last = t1;
  const orig = rec.resources.push.bind(rec.resources);
  rec.resources.push = (...items) => { last = performance.now(); return orig(...items); };
  defineStack(validateStackSettings({ profile }), {}, { repoRoot, keepPromiseStackTraces: sourceMaps });
  // Registrations finish asynchronously: wait until none has arrived for 500 ms.
  for (;;) {
    const before = rec.resources.length;
    await new Promise((r) => setTimeout(r, 500));
    if (rec.resources.length === before) break;
  }
  const out: RunResult = { profile, sourceMaps, importSeconds: (t1 - t0) / 1000, evalSeconds: (last - t1) / 1000, resources: rec.resources.length };
  console.log(JSON.stringify(out));
  process.exit(0);
}

function measure(profile: 'minimal' | 'ha', sourceMaps: boolean): RunResult {
  const r = spawnSync(process.execPath, ['--import', 'tsx', here, '--child', profile, sourceMaps ? 'maps' : 'nomaps'], { cwd: repoRoot, encoding: 'utf8', timeout: 300_000 });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  if (r.status !== 0 || !line.startsWith('{')) throw new Error(`bench child ${profile} failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  return JSON.parse(line);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

if (process.argv[2] === '--child') {
  await child(process.argv[3] as 'minimal' | 'ha', process.argv[4] === 'maps');
} else {
  const runs = Number(process.env.BENCH_RUNS ?? 3);
  const results: Record<string, RunResult[]> = { minimal: [], ha: [], baseline: [] };
  for (let i = 0; i < runs; i++) {
    results.minimal.push(measure('minimal', false));
    results.ha.push(measure('ha', false));
    results.baseline.push(measure('ha', true));
  }
  for (const [k, rs] of Object.entries(results)) {
    console.log(`${k.padEnd(8)} eval ${rs.map((r) => r.evalSeconds.toFixed(2)).join(' / ')} s, module load ${median(rs.map((r) => r.importSeconds)).toFixed(2)} s, ${rs[0].resources} resources`);
  }
  const minimalSeconds = median(results.minimal.map((r) => r.evalSeconds));
  const haSeconds = median(results.ha.map((r) => r.evalSeconds));
  const baselineSeconds = median(results.baseline.map((r) => r.evalSeconds));
  console.log(JSON.stringify({
    bench: 'stacks', runs, minimalSeconds: +minimalSeconds.toFixed(3), haSeconds: +haSeconds.toFixed(3),
    baselineSeconds: +baselineSeconds.toFixed(3), ratio: +(haSeconds / baselineSeconds).toFixed(3),
    minimalResources: results.minimal[0].resources, haResources: results.ha[0].resources,
    moduleLoadSeconds: +median(results.ha.map((r) => r.importSeconds)).toFixed(3), cores: (await import('node:os')).cpus().length,
  }));
}
