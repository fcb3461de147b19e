// bench:settings-error — how long Pulumi's Node.js language host spends formatting a bad-setting error
// before `pulumi preview` can show it. Each run is a fresh child process that does what the language
// host does (source-map-support registered, the program run inside a Pulumi Stack resource, here
// under mocks), catches the program's error and times Pulumi's own formatter for uncaught errors
// (defaultErrorMessage: util.inspect with colours, run for every uncaught error's trace span).
// Baseline: the error as the program threw it before the fix (a StackSettingsError with its stack
// trace), which Node 20.20's util.inspect loops on (nodejs/node#64011; docs/operate/deploy.md).
// Last stdout line: {"bench":"settings-error","fixSeconds":..,"baselineSeconds":..,"ratio":..,"node":..}
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { REPO_ROOT } from '../lib/repo-root.ts';

const here = fileURLToPath(import.meta.url);
const BAD_SETTINGS = { profile: 'minimal', c2: { replicas: 0 } };

interface RunResult { variant: string; seconds: number; runError: boolean; chars: number }

async function child(variant: 'fix' | 'baseline'): Promise<void> {
  const require = createRequire(import.meta.url);
  require('source-map-support/register'); // as @pulumi/pulumi/cmd/run/index.js does
  const { defaultErrorMessage } = require('@pulumi/pulumi/cmd/run/error.js') as { defaultErrorMessage(e: unknown): string };
  const { runInPulumiStack } = require('@pulumi/pulumi/runtime/stack.js') as { runInPulumiStack(f: () => Promise<unknown>): Promise<unknown> };
  const pulumi = await import('@pulumi/pulumi');
  const { installStackMocks } = await import('../test/stacks/pulumi-mocks.ts');
  const { readStackConfig } = await import('../stacks/stack-config.ts');
  const { validateStackSettings } = await import('../lib/settings/stack-settings.ts');
  await installStackMocks('bench', { 'e4ops:settings': JSON.stringify(BAD_SETTINGS) });
  const err = await runInPulumiStack(async () => {
    if (variant === 'fix') readStackConfig();
    else validateStackSettings(BAD_SETTINGS, {}, 'stack bench settings');
  }).then(() => undefined, (e: unknown) => e);
  if (!err) throw new Error('bench:settings-error: the bad settings were accepted');
  const t0 = performance.now();
  const text = defaultErrorMessage(err);
  const out: RunResult = { variant, seconds: (performance.now() - t0) / 1000, runError: pulumi.RunError.isInstance(err), chars: text.length };
  console.log(JSON.stringify(out));
  process.exit(0);
}

function measure(variant: 'fix' | 'baseline'): RunResult {
  const r = spawnSync(process.execPath, ['--import', 'tsx', here, '--child', variant], { cwd: REPO_ROOT, encoding: 'utf8', maxBuffer: 1 << 26 });
  const last = r.stdout.trim().split('\n').pop() ?? '';
  // Pulumi's exit hook reports the failed Stack resource's pending promises (exit 1); the result line is already out.
  if (!last.startsWith('{')) throw new Error(`bench:settings-error: ${variant} run failed (exit ${r.status}): ${r.stderr.slice(-2000)}`);
  return JSON.parse(last) as RunResult;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args[0] === '--child') return child(args[1] as 'fix' | 'baseline');
  if (args.length) { console.error(`bench:settings-error: unknown argument '${args[0]}' (takes none)`); process.exit(2); }
  const fixes = [measure('fix'), measure('fix'), measure('fix')];
  const baseline = measure('baseline');
  const fix = fixes.map((r) => r.seconds).sort((a, b) => a - b)[1];
  console.log(`fix (RunError, no frames): ${fixes.map((r) => r.seconds.toFixed(4)).join(' / ')} s; baseline (StackSettingsError with its stack): ${baseline.seconds.toFixed(2)} s; load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  console.log(JSON.stringify({ bench: 'settings-error', fixSeconds: Number(fix.toFixed(4)), baselineSeconds: Number(baseline.seconds.toFixed(2)), ratio: Number((baseline.seconds / Math.max(fix, 1e-4)).toFixed(0)), fixIsRunError: fixes.every((r) => r.runError), node: process.version }));
}

await main();
