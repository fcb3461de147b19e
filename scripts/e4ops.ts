#!/usr/bin/env -S npx tsx
// `e4ops`: the one command. Each subcommand is a thin zx entry point in scripts/ exporting its
// declarations as `command`; this file only finds it and runs it, so `e4ops backup list` and
// `npx tsx scripts/backup.ts list` behave the same.
import { pathToFileURL } from 'node:url';
import { runCommand, renderHelp, type CommandSpec } from '../lib/cli/command.ts';
import { closestName } from '../lib/cli/flags.ts';
import { EXIT } from '../lib/cli/exit-codes.ts';

/** Subcommand → its entry point in scripts/. Add new commands here (and nowhere else). */
export const SUBCOMMANDS: Record<string, string> = {
  backup: './backup.ts',
  drill: './restore-drill.ts',
  resync: './resync-topic-keys.ts',
  dashboards: './dashboards.ts',
  'check-config': './check-config.ts',
  'fleet-sim': './fleet-sim.ts',
  'build-appliance': './build-appliance.ts',
  appliance: './appliance.ts',
};

export async function loadCommand(name: string): Promise<CommandSpec<any>> {
  const mod = (await import(new URL(SUBCOMMANDS[name], import.meta.url).href)) as { command?: CommandSpec<any> };
  if (!mod.command) throw new Error(`scripts/${SUBCOMMANDS[name]} exports no command`);
  return mod.command;
}

export async function loadAllCommands(): Promise<CommandSpec<any>[]> {
  return Promise.all(Object.keys(SUBCOMMANDS).map(loadCommand));
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

export async function main(argv: string[]): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined || first === '--help' || first === '-h' || (first === 'help' && rest.length === 0)) {
    process.stdout.write(renderTopHelp(await loadAllCommands()));
    return first === undefined ? EXIT.usage : EXIT.ok;
  }
  const name = first === 'help' ? rest[0] : first;
  if (!(name in SUBCOMMANDS)) {
    const near = closestName(name, Object.keys(SUBCOMMANDS));
    process.stderr.write(`e4ops: unknown command "${name}"${near ? `; did you mean "${near}"?` : ''} (see e4ops --help)\n`);
    return EXIT.usage;
  }
  const spec = await loadCommand(name);
  if (first === 'help') {
    const words = rest.slice(1);
    let target = spec;
    for (const w of words) target = target.subcommands?.find((s) => s.name.split(' ').pop() === w) ?? target;
    process.stdout.write(renderHelp(target));
    return EXIT.ok;
  }
  return runCommand(spec, rest);
}

if (process.argv[1] && pathToFileURL(process.argv[1]).href === import.meta.url) process.exitCode = await main(process.argv.slice(2));
