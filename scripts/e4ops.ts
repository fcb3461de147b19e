#!/usr/bin/env -S npx tsx
// `e4ops`: the one command. Each subcommand is a thin zx entry point in scripts/ exporting its
// declarations as `command`; this file only finds it and runs it, so `e4ops backup list` and
// `npx tsx scripts/backup.ts list` behave the same.
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { runCommand, type CommandSpec, type CommandContext } from '../lib/cli/command.ts';
import { closestName } from '../lib/cli/flags.ts';
import { EXIT } from '../lib/cli/exit-codes.ts';

/** Subcommand → its entry point in scripts/. Add new commands here (and nowhere else). */
export const SUBCOMMANDS: Record<string, string> = {
  backup: './backup.ts',
  drill: './restore-drill.ts',
  pitr: './pitr.ts',
  resync: './resync-topic-keys.ts',
  dashboards: './dashboards.ts',
  'check-config': './check-config.ts',
  'fleet-sim': './fleet-sim.ts',
  'build-appliance': './build-appliance.ts',
  restore: './restore.ts',
  provision: './provision.ts',
  appliance: './appliance.ts',
};

/** The entry point's file. */
export function scriptOf(name: string): string {
  return fileURLToPath(new URL(SUBCOMMANDS[name], import.meta.url));
}

/**
 * Whether the entry point exports its declarations. Until every script is on lib/cli, one that is not
 * is run as a child process instead of imported: importing it would run it.
 */
export function isDeclared(name: string): boolean {
  return /^export const command = defineCommand\(/m.test(fs.readFileSync(scriptOf(name), 'utf8'));
}

export async function loadCommand(name: string): Promise<CommandSpec<any>> {
  const mod = (await import(pathToFileURL(scriptOf(name)).href)) as { command?: CommandSpec<any> };
  if (!mod.command) throw new Error(`scripts/${SUBCOMMANDS[name]} exports no command`);
  return mod.command;
}

/** A stand-in declaration for an entry point not yet on lib/cli (listed in the top help; runs as it always did). */
function undeclared(name: string): CommandSpec<any> {
  return { name, summary: `(not yet on the strict flag layer: runs scripts/${path.basename(scriptOf(name))} as before)`, flags: {} };
}

export async function loadAllCommands(): Promise<CommandSpec<any>[]> {
  return Promise.all(Object.keys(SUBCOMMANDS).map((n) => (isDeclared(n) ? loadCommand(n) : undeclared(n))));
}

function runUndeclared(name: string, argv: string[]): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', scriptOf(name), ...argv], { stdio: 'inherit' });
    child.on('error', () => resolve(EXIT.internal));
    child.on('close', (code, signal) => resolve(code ?? (signal === 'SIGINT' ? EXIT.interrupted : signal === 'SIGTERM' ? EXIT.terminated : EXIT.internal)));
  });
}

export function renderTopHelp(commands: CommandSpec<any>[]): string {
  const w = Math.max(...commands.map((c) => c.name.length));
  return [
    'e4ops - deploy, back up, drill, restore and repair Teserakt E4 C2',
    '',
    'Usage: e4ops COMMAND [SUBCOMMAND] [OPTIONS]',
    '       e4ops help COMMAND      (the same as e4ops COMMAND --help)',
    '',
    'Commands:',
    ...commands.map((c) => `  ${c.name.padEnd(w)}  ${c.summary}`),
    '',
    'Every command takes --help; flags are strict (an unknown flag exits 2). Reference: docs/reference/.',
    '',
  ].join('\n');
}

/** `e4ops ARGV`. Output goes to `io` (default the process's stdout/stderr) except for undeclared scripts, which inherit them. */
export async function main(argv: string[], io: Partial<Pick<CommandContext, 'stdout' | 'stderr'>> = {}): Promise<number> {
  const stdout = io.stdout ?? ((t: string) => void process.stdout.write(t));
  const stderr = io.stderr ?? ((t: string) => void process.stderr.write(t));
  const [first, ...rest] = argv;
  if (first === undefined || first === '--help' || first === '-h' || (first === 'help' && rest.length === 0)) {
    stdout(renderTopHelp(await loadAllCommands()));
    return first === undefined ? EXIT.usage : EXIT.ok;
  }
  const name = first === 'help' ? rest[0] : first;
  if (!(name in SUBCOMMANDS)) {
    const near = closestName(name, Object.keys(SUBCOMMANDS));
    stderr(`e4ops: unknown command "${name}"${near ? `; did you mean "${near}"?` : ''} (see e4ops --help)\n`);
    return EXIT.usage;
  }
  const args = first === 'help' ? [...rest.slice(1), '--help'] : rest;
  if (!isDeclared(name)) return runUndeclared(name, args);
  // `e4ops help backup list` is `e4ops backup list --help`: the same resolution, the same text.
  return runCommand(await loadCommand(name), args, { stdout, stderr });
}

if (process.argv[1] && pathToFileURL(process.argv[1]).href === import.meta.url) process.exitCode = await main(process.argv.slice(2));
