import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import * as pulumi from '@pulumi/pulumi';
import { LocalWorkspace, PulumiCommand, type Stack } from '@pulumi/pulumi/automation/index.js';
import YAML from 'yaml';
import { REPO_ROOT } from '../../lib/repo-root.ts';
import { readStackConfig } from '../../stacks/stack-config.ts';
import { runStackProgram } from '../../stacks/stack-program.ts';

const run = promisify(execFile);

// Opt-in (E4OPS_PULUMI_CLI=path to a pulumi binary, e.g. from scripts/build-pulumi-cli.sh): the stack
// program through the real Pulumi engine, driven by the Automation API as an inline program (this
// process is its language host, so no pulumi-language-nodejs is needed), with a file:// backend, a
// passphrase secrets provider and plugin acquisition off. No provider plugin (docker, random, tls) can
// be had here, so a valid stack ends at "no resource plugin"; everything before that is real: the
// README's `pulumi config set` commands, the engine's config and secret handling, the settings errors.
const CLI = process.env.E4OPS_PULUMI_CLI;
const SECRET = 'plaintext-passphrase-' + 'x'.repeat(24);

describe.skipIf(!CLI)('the stack program on the real Pulumi engine (E4OPS_PULUMI_CLI)', () => {
  let tmp: string;
  let workDir: string;
  let backendDir: string;
  let env: Record<string, string>;
  let seen: ReturnType<typeof readStackConfig> | undefined;
  let seenSecretKey: boolean | undefined;

  // What `pulumi up` runs (stacks/index.ts runs the same function), plus a look at what the
  // program's config reader received.
  const program = async () => {
    seen = undefined;
    // The engine's list of secret config keys (the SDK keeps the check internal).
    seenSecretKey = (pulumi.runtime as unknown as { isConfigSecret(k: string): boolean }).isConfigSecret('e4ops:c2DbPassphrase');
    try { seen = readStackConfig(); } catch { /* runStackProgram reports it */ }
    return runStackProgram();
  };

  async function openStack(name: string): Promise<Stack> {
    const root = path.join(tmp, 'cli');
    const pulumiCommand = await PulumiCommand.get({ root });
    return LocalWorkspace.createOrSelectStack({ stackName: name, projectName: 'e4ops', program }, {
      workDir, pulumiHome: env.PULUMI_HOME, envVars: env, pulumiCommand,
      projectSettings: { name: 'e4ops', runtime: 'nodejs', backend: { url: env.PULUMI_BACKEND_URL } },
    });
  }

  /** The README's commands, run as an operator types them (in the project folder, on the selected stack). */
  async function pulumiCli(stack: string, ...args: string[]) {
    return run(CLI!, [...args, '--stack', stack, '--non-interactive'], { cwd: workDir, env: { ...process.env, ...env } });
  }

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-pulumi-engine-'));
    workDir = path.join(tmp, 'project');
    backendDir = path.join(tmp, 'state');
    for (const d of [workDir, backendDir, path.join(tmp, 'home'), path.join(tmp, 'cli', 'bin')]) fs.mkdirSync(d, { recursive: true });
    // PulumiCommand wants <root>/bin/pulumi, the installer's layout.
    fs.symlinkSync(path.resolve(CLI!), path.join(tmp, 'cli', 'bin', 'pulumi'));
    env = {
      PULUMI_HOME: path.join(tmp, 'home'),
      PULUMI_BACKEND_URL: `file://${backendDir}`,
      PULUMI_CONFIG_PASSPHRASE: 'engine test passphrase',
      PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: 'true',
      PULUMI_SKIP_UPDATE_CHECK: 'true',
      PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK: 'true',
    };
  }, 60_000);

  afterAll(() => {
    if (tmp && !process.env.E4OPS_KEEP_TMP) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('the README config commands reach the program; a valid stack runs until the engine needs a provider plugin', async () => {
    const stack = await openStack('minimal');
    // The operator's stack file: Pulumi.minimal.yaml as shipped, then the documented commands.
    const shipped = YAML.parse(fs.readFileSync(path.join(REPO_ROOT, 'Pulumi.minimal.yaml'), 'utf8'));
    const stackFile = path.join(workDir, 'Pulumi.minimal.yaml');
    const initialised = YAML.parse(fs.readFileSync(stackFile, 'utf8')) ?? {};
    fs.writeFileSync(stackFile, YAML.stringify({ ...initialised, config: shipped.config }));
    await pulumiCli('minimal', 'config', 'set', '--secret', 'c2DbPassphrase', SECRET);
    await pulumiCli('minimal', 'config', 'set', '--path', 'settings.c2.replicas', '1');
    await pulumiCli('minimal', 'config', 'set', '--path', 'settings.c2.logLevel', 'debug');
    const stackYaml = fs.readFileSync(stackFile, 'utf8');
    expect(stackYaml).toMatch(/e4ops:c2DbPassphrase:\s*\n\s*secure: v1:/);

    let output = '';
    const err = await stack.up({ onOutput: (s) => { output += s; } }).then(() => undefined, (e: Error) => e);
    expect(err, 'pulumi up cannot succeed without provider plugins').toBeInstanceOf(Error);
    const text = `${err!.message}\n${output}`;
    if (process.env.E4OPS_DEBUG_ENGINE) console.log(text);
    expect(text).toMatch(/no resource plugin '?(pulumi-resource-)?(docker|random|tls)/i);
    expect(text).not.toMatch(/settings are invalid/);

    // The program got the documented config: --path into the settings object, --secret as a secret key.
    expect(seen?.settings.profile).toBe('minimal');
    expect(seen?.settings.c2.logLevel).toBe('debug');
    expect(seen?.settings.c2.replicas).toBe(1);
    expect(seen?.secrets.c2DbPassphrase).toBe(SECRET);
    expect(seenSecretKey).toBe(true);

    // Nothing the engine or the CLI wrote holds the secret in plaintext.
    const stateFile = path.join(backendDir, '.pulumi', 'stacks', 'e4ops', 'minimal.json');
    expect(fs.existsSync(stateFile), `${stateFile} written`).toBe(true);
    for (const f of filesUnder(tmp).filter((p) => !p.startsWith(path.join(tmp, 'cli')))) {
      expect(fs.readFileSync(f).includes(SECRET), `${f} holds the secret in plaintext`).toBe(false);
    }
  }, 180_000);

  it('a bad setting fails with the settings error text alone, before any provider plugin is asked for', async () => {
    const stack = await openStack('broken');
    await pulumiCli('broken', 'config', 'set', '--path', 'settings.profile', 'minimal');
    await pulumiCli('broken', 'config', 'set', '--path', 'settings.c2.replicas', '0');
    await pulumiCli('broken', 'config', 'set', '--secret', 'c2DbPassphrase', 'short');

    let output = '';
    const err = await stack.preview({ onOutput: (s) => { output += s; } }).then(() => undefined, (e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    const text = `${err!.message}\n${output}`;
    if (process.env.E4OPS_DEBUG_ENGINE) console.log(text);
    expect(text).toMatch(/stack broken settings are invalid/);
    expect(text).toMatch(/c2\.replicas/);
    expect(text).toMatch(/c2DbPassphrase: is 5 bytes/);
    // The settings error is the whole report: no plugin was asked for, no stack trace dumped.
    expect(text).not.toMatch(/no resource plugin/i);
    expect(text).not.toMatch(/Unhandled exception|\n\s+at \S+ \(|stack-config\.ts:\d+/);
  }, 180_000);
});

function filesUnder(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((d) => d.isFile())
    .map((d) => path.join(d.parentPath, d.name));
}
