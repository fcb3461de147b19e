// Flags declared once per command, parsed strictly: an unknown flag, a missing value, a repeated
// single-value flag, a bad number or an unknown choice is a usage error (exit 2) naming the flag and,
// for a misspelling, the closest known one. Tokenising is Node's util.parseArgs; the checks are ours
// because its strict mode reports neither repeats nor near misses.
import { parseArgs } from 'node:util';
import { distance } from 'fastest-levenshtein';
import { OpsError } from './exit-codes.ts';

export type FlagType = 'string' | 'boolean' | 'integer' | 'number' | 'duration';

export interface FlagSpec {
  type: FlagType;
  /** One line for --help and the reference page. */
  help: string;
  /** Shown after the flag in help: `--target T`. */
  placeholder?: string;
  multiple?: boolean;
  required?: boolean;
  default?: string | number | boolean;
  /** Allowed values of a string flag. */
  choices?: readonly string[];
  /** Smallest allowed value of a number/integer/duration (seconds) flag. */
  min?: number;
  /** One-letter alias, e.g. 'y' for --yes. */
  short?: string;
  /** A group heading in help ("Source", "C2 connection"...). */
  group?: string;
}

export type FlagSpecs = Record<string, FlagSpec>;

type ValueOf<F extends FlagSpec> = F['type'] extends 'boolean' ? boolean : F['type'] extends 'string' ? string : number;

/** Parsed values, typed from the declarations: repeatable → array, required/defaulted/boolean → always set. */
export type FlagValues<Fs extends FlagSpecs> = {
  [K in keyof Fs]: Fs[K] extends { multiple: true }
    ? ValueOf<Fs[K]>[]
    : Fs[K] extends { type: 'boolean' } | { required: true } | { default: string | number | boolean }
      ? ValueOf<Fs[K]>
      : ValueOf<Fs[K]> | undefined;
};

export interface ParsedArgs<Fs extends FlagSpecs> {
  flags: FlagValues<Fs>;
  positionals: string[];
  /** Flags the user actually gave (not defaults). */
  given: Set<string>;
}

/** A usage error: exit 2. */
export class UsageError extends OpsError {
  constructor(message: string) {
    super('usage', message);
    this.name = 'UsageError';
  }
}

/** Durations as operators write them: 90, 90s, 10m, 1h30m, 7d. Returns seconds. */
export function parseDuration(text: string): number | undefined {
  const t = text.trim();
  if (/^\d+(\.\d+)?$/.test(t)) return Number(t);
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let m: RegExpExecArray | null;
  let consumed = 0;
  while ((m = re.exec(t))) {
    total += Number(m[1]) * { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 }[m[2] as 'ms' | 's' | 'm' | 'h' | 'd'];
    consumed = re.lastIndex;
  }
  return consumed === t.length && consumed > 0 ? total : undefined;
}

/** The known name closest to a misspelt one, when it is close enough to be a likely typo. */
export function closestName(name: string, known: readonly string[]): string | undefined {
  // An abbreviation (`--datab`) means the one name it starts.
  const extending = name.length >= 3 ? known.filter((k) => k.startsWith(name)) : [];
  if (extending.length === 1) return extending[0];
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const k of known) {
    const d = distance(name, k);
    if (d < bestDistance) { best = k; bestDistance = d; }
  }
  if (best === undefined) return undefined;
  return bestDistance <= Math.max(2, Math.floor(best.length / 3)) || best.startsWith(name) ? best : undefined;
}

function convert(name: string, spec: FlagSpec, raw: string): string | number {
  const flag = `--${name}`;
  switch (spec.type) {
    case 'string':
      if (spec.choices && !spec.choices.includes(raw)) {
        const near = closestName(raw, spec.choices);
        throw new UsageError(`${flag} must be one of ${spec.choices.join(', ')} (got "${raw}")${near ? `; did you mean "${near}"?` : ''}`);
      }
      return raw;
    case 'integer':
    case 'number': {
      const n = Number(raw);
      const ok = raw.trim() !== '' && Number.isFinite(n) && (spec.type === 'number' || Number.isInteger(n));
      if (!ok) throw new UsageError(`${flag} must be ${spec.type === 'integer' ? 'a whole number' : 'a number'} (got "${raw}")`);
      if (spec.min !== undefined && n < spec.min) throw new UsageError(`${flag} must be ${spec.type === 'integer' ? 'a whole number' : 'a number'} >= ${spec.min}, not "${raw}"`);
      return n;
    }
    case 'duration': {
      const s = parseDuration(raw);
      if (s === undefined) throw new UsageError(`${flag} must be a duration such as 90s, 10m, 1h30m or 7d (got "${raw}")`);
      if (spec.min !== undefined && s < spec.min) throw new UsageError(`${flag} must be at least ${spec.min} s (got ${raw})`);
      return s;
    }
    default:
      throw new UsageError(`${flag}: unexpected value "${raw}"`);
  }
}

/** Parse argv against the declarations. Throws UsageError (exit 2) on anything not declared or malformed. */
export function parseFlags<Fs extends FlagSpecs>(specs: Fs, argv: readonly string[], opts: { allowPositionals?: boolean } = {}): ParsedArgs<Fs> {
  const names = Object.keys(specs);
  const byShort = new Map(names.filter((n) => specs[n].short).map((n) => [specs[n].short!, n]));
  const { tokens } = parseArgs({
    args: [...argv],
    strict: false,
    allowPositionals: true,
    tokens: true,
    options: Object.fromEntries(names.map((n) => [n, { type: specs[n].type === 'boolean' ? 'boolean' : 'string', multiple: true, ...(specs[n].short ? { short: specs[n].short } : {}) }])) as never,
  });
  const values: Record<string, unknown> = {};
  const given = new Set<string>();
  const positionals: string[] = [];
  for (const token of tokens ?? []) {
    if (token.kind === 'positional') { positionals.push(token.value); continue; }
    if (token.kind === 'option-terminator') continue;
    const name = token.rawName.startsWith('--') ? token.name : byShort.get(token.name) ?? token.name;
    const spec = specs[name];
    if (!spec) {
      const near = closestName(token.name, names);
      throw new UsageError(`unknown flag ${token.rawName}${near ? `; did you mean --${near}?` : ''} (see --help)`);
    }
    const flag = `--${name}`;
    if (spec.type === 'boolean') {
      if (token.value !== undefined) throw new UsageError(`${flag} takes no value (got "${token.value}")`);
      if (given.has(name)) throw new UsageError(`${flag} given more than once`);
      values[name] = true;
    } else {
      const raw = token.value;
      // `--target --json`: parseArgs hands "--json" over as the value; that is a forgotten value.
      const looksLikeFlag = raw !== undefined && !token.inlineValue && /^-/.test(raw) && !(spec.type !== 'string' && /^-\d/.test(raw));
      if (raw === undefined || looksLikeFlag) throw new UsageError(`${flag} needs a value${spec.placeholder ? ` (${flag} ${spec.placeholder})` : ''}`);
      const v = convert(name, spec, raw);
      if (spec.multiple) (values[name] ??= [] as unknown[]) && (values[name] as unknown[]).push(v);
      else if (given.has(name)) throw new UsageError(`${flag} given more than once; it takes one value`);
      else values[name] = v;
    }
    given.add(name);
  }
  if (positionals.length && !opts.allowPositionals) throw new UsageError(`unexpected argument "${positionals[0]}" (see --help)`);
  for (const name of names) {
    const spec = specs[name];
    if (values[name] !== undefined) continue;
    if (spec.required) throw new UsageError(`--${name} is required${spec.placeholder ? ` (--${name} ${spec.placeholder})` : ''}: ${spec.help}`);
    if (spec.multiple) values[name] = [];
    else if (spec.type === 'boolean') values[name] = spec.default ?? false;
    else if (spec.default !== undefined) values[name] = spec.type === 'string' ? spec.default : convert(name, spec, String(spec.default));
  }
  return { flags: values as FlagValues<Fs>, positionals, given };
}
