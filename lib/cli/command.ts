// A command = its declarations (name, summary, flags, subcommands, exit codes) plus a run function.
// --help text, the EXIT STATUS section and docs/reference/<command>.md are all generated from the
// declarations, so they cannot drift from what the parser accepts.
import { pathToFileURL } from 'node:url';
import { EXIT, EXIT_CODES, COMMON_EXIT_KINDS, exitCodeOf, type ExitKind } from './exit-codes.ts';
import { parseFlags, UsageError, closestName, type FlagSpecs, type FlagSpec, type ParsedArgs } from './flags.ts';
import { redactUrl } from '../log.ts';

export interface CommandContext {
  /** Aborted on the first SIGINT/SIGTERM when the command declares `handlesSignals`. */
  signal: AbortSignal;
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

export interface PositionalSpec {
  name: string;
  help: string;
  required?: boolean;
  multiple?: boolean;
}

export interface CommandSpec<Fs extends FlagSpecs = FlagSpecs> {
  /** Full name as typed after `e4ops`, e.g. "backup" or "backup list". */
  name: string;
  summary: string;
  /** Paragraphs after the usage line. */
  description?: string;
  flags: Fs;
  positionals?: PositionalSpec[];
  /** Codes this command can exit with besides the common ones (ok, internal, usage, signals). */
  exitCodes?: readonly ExitKind[];
  subcommands?: CommandSpec<any>[];
  /** The command itself runs when no subcommand is named (e.g. `e4ops backup`). Without it a subcommand is required. */
  run?: (args: ParsedArgs<Fs>, ctx: CommandContext) => Promise<number> | number;
  /** The command watches ctx.signal and finishes cleanly; otherwise signals end the process at once. */
  handlesSignals?: boolean;
  examples?: string[];
}

export const HELP_FLAG: FlagSpec = { type: 'boolean', help: 'show this help and exit', short: 'h' };

export function defineCommand<Fs extends FlagSpecs>(spec: CommandSpec<Fs>): CommandSpec<Fs> {
  return spec;
}

function flagLabel(name: string, f: FlagSpec): string {
  const value = f.type === 'boolean' ? '' : ` ${f.placeholder ?? (f.type === 'duration' ? 'DURATION' : f.type === 'string' ? 'VALUE' : 'N')}`;
  return `${f.short ? `-${f.short}, ` : ''}--${name}${value}`;
}

function flagNotes(f: FlagSpec): string {
  const notes: string[] = [];
  if (f.required) notes.push('required');
  if (f.multiple) notes.push('repeatable');
  if (f.choices) notes.push(`one of: ${f.choices.join(', ')}`);
  if (f.default !== undefined && f.type !== 'boolean') notes.push(`default ${f.default}`);
  return notes.length ? ` (${notes.join('; ')})` : '';
}

export function usageLine(spec: CommandSpec<any>): string {
  const required = Object.entries(spec.flags as FlagSpecs).filter(([, f]) => f.required).map(([n, f]) => flagLabel(n, f));
  const pos = (spec.positionals ?? []).map((p) => (p.required ? p.name : `[${p.name}]`) + (p.multiple ? '...' : ''));
  const sub = spec.subcommands?.length ? (spec.run ? ` [${spec.subcommands.map((s) => lastWord(s.name)).join('|')}]` : ` ${spec.subcommands.map((s) => lastWord(s.name)).join('|')}`) : '';
  return `e4ops ${spec.name}${sub}${required.length ? ' ' + required.join(' ') : ''}${pos.length ? ' ' + pos.join(' ') : ''} [OPTIONS]`;
}

const lastWord = (name: string) => name.split(' ').pop()!;

/** The command and all its subcommands, depth first. */
export function commandTree(spec: CommandSpec<any>): CommandSpec<any>[] {
  return [spec, ...(spec.subcommands ?? []).flatMap(commandTree)];
}

export function exitKindsOf(spec: CommandSpec<any>): ExitKind[] {
  const kinds = new Set<ExitKind>([...COMMON_EXIT_KINDS, ...(spec.exitCodes ?? [])]);
  return [...kinds].sort((a, b) => EXIT_CODES[a].code - EXIT_CODES[b].code);
}

/** --help text, generated from the declarations. */
export function renderHelp(spec: CommandSpec<any>): string {
  const lines = [`e4ops ${spec.name} - ${spec.summary}`, '', `Usage: ${usageLine(spec)}`];
  if (spec.description) lines.push('', spec.description.trim());
  if (spec.subcommands?.length) {
    lines.push('', 'Subcommands:');
    const w = Math.max(...spec.subcommands.map((s) => lastWord(s.name).length));
    for (const s of spec.subcommands) lines.push(`  ${lastWord(s.name).padEnd(w)}  ${s.summary}`);
    lines.push(`  (e4ops ${spec.name} SUBCOMMAND --help for its flags)`);
  }
  if (spec.positionals?.length) {
    lines.push('', 'Arguments:');
    for (const p of spec.positionals) lines.push(`  ${p.name.padEnd(26)}  ${p.help}`);
  }
  const flags: [string, FlagSpec][] = [...Object.entries(spec.flags as FlagSpecs), ['help', HELP_FLAG]];
  const groups = new Map<string, [string, FlagSpec][]>();
  for (const entry of flags) {
    const g = entry[1].group ?? 'Options';
    groups.set(g, [...(groups.get(g) ?? []), entry]);
  }
  const width = Math.min(34, Math.max(...flags.map(([n, f]) => flagLabel(n, f).length)));
  for (const [group, entries] of groups) {
    lines.push('', `${group}:`);
    for (const [n, f] of entries) {
      const label = flagLabel(n, f);
      const text = f.help + flagNotes(f);
      lines.push(label.length > width ? `  ${label}\n  ${' '.repeat(width)}  ${text}` : `  ${label.padEnd(width)}  ${text}`);
    }
  }
  if (spec.examples?.length) lines.push('', 'Examples:', ...spec.examples.map((e) => `  ${e}`));
  lines.push('', 'Exit status:');
  for (const k of exitKindsOf(spec)) lines.push(`  ${String(EXIT_CODES[k].code).padStart(3)}  ${EXIT_CODES[k].meaning}`);
  return lines.join('\n') + '\n';
}

/** Find the (sub)command named by the leading positionals of argv. */
export function resolveCommand(spec: CommandSpec<any>, argv: readonly string[]): { spec: CommandSpec<any>; rest: string[] } {
  let current = spec;
  let rest = [...argv];
  while (current.subcommands?.length && rest.length && !rest[0].startsWith('-')) {
    const word = rest[0];
    const sub = current.subcommands.find((s) => lastWord(s.name) === word);
    if (!sub) {
      if (current.run && current.positionals?.length) break;
      const near = closestName(word, current.subcommands.map((s) => lastWord(s.name)));
      throw new UsageError(`unknown command "${word}" for e4ops ${current.name}${near ? `; did you mean "${near}"?` : `; one of ${current.subcommands.map((s) => lastWord(s.name)).join(', ')}`} (see e4ops ${current.name} --help)`);
    }
    current = sub;
    rest = rest.slice(1);
  }
  return { spec: current, rest };
}

/**
 * Parse, run and map the outcome to an exit code. Errors print one line on stderr,
 * `e4ops CMD: message`, with URLs' passwords redacted.
 */
export async function runCommand(root: CommandSpec<any>, argv: readonly string[], io: Partial<CommandContext> = {}): Promise<number> {
  const stdout = io.stdout ?? ((t: string) => void process.stdout.write(t));
  const stderr = io.stderr ?? ((t: string) => void process.stderr.write(t));
  let spec: CommandSpec<any> = root;
  try {
    const resolved = resolveCommand(root, argv);
    spec = resolved.spec;
    if (resolved.rest.includes('--help') || resolved.rest.includes('-h')) { stdout(renderHelp(spec)); return EXIT.ok; }
    if (!spec.run) {
      throw new UsageError(`e4ops ${spec.name} needs a subcommand: ${spec.subcommands!.map((s) => lastWord(s.name)).join(', ')} (see e4ops ${spec.name} --help)`);
    }
    const parsed = parseFlags(spec.flags, resolved.rest, { allowPositionals: !!spec.positionals?.length });
    for (const [i, p] of (spec.positionals ?? []).entries()) {
      if (p.required && parsed.positionals.length <= i) throw new UsageError(`${p.name} is required: ${p.help}`);
    }
    const max = spec.positionals?.some((p) => p.multiple) ? Infinity : spec.positionals?.length ?? 0;
    if (parsed.positionals.length > max) throw new UsageError(`unexpected argument "${parsed.positionals[max]}" (see e4ops ${spec.name} --help)`);
    const controller = new AbortController();
    let signalled: NodeJS.Signals | undefined;
    const onSignal = (sig: NodeJS.Signals) => {
      if (signalled) process.exit(sig === 'SIGINT' ? EXIT.interrupted : EXIT.terminated);
      signalled = sig;
      controller.abort(new Error(`interrupted by ${sig}`));
    };
    if (spec.handlesSignals) { process.on('SIGINT', onSignal); process.on('SIGTERM', onSignal); }
    try {
      const code = await spec.run(parsed, { signal: controller.signal, stdout, stderr });
      if (signalled && code !== EXIT.ok) return signalled === 'SIGINT' ? EXIT.interrupted : EXIT.terminated;
      return code;
    } finally {
      if (spec.handlesSignals) { process.off('SIGINT', onSignal); process.off('SIGTERM', onSignal); }
    }
  } catch (e) {
    const code = exitCodeOf(e);
    const msg = redactUrl((e as Error)?.message ?? String(e));
    stderr(`e4ops ${spec.name}: ${code === EXIT.internal ? 'failed: ' : ''}${msg}\n`);
    if (code === EXIT.internal && process.env.E4OPS_DEBUG) stderr(String((e as Error)?.stack) + '\n');
    return code;
  }
}

/** Bottom line of every scripts/*.ts: run the command when the file is executed, not when imported. */
export async function runIfMain(moduleUrl: string, spec: CommandSpec<any>): Promise<void> {
  const entry = process.argv[1];
  if (!entry || pathToFileURL(entry).href !== moduleUrl) return;
  process.exitCode = await runCommand(spec, process.argv.slice(2));
}
