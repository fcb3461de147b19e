// lib/cli/flags.ts: the strict flag layer every command parses with. What an operator types wrong must
// exit 2 with the flag named; what they type right must come out typed.
import { describe, it, expect } from 'vitest';
import { parseFlags, parseDuration, closestName, UsageError, type FlagSpecs } from '../../lib/cli/flags.ts';
import { exitCodeOf } from '../../lib/cli/exit-codes.ts';

const SPECS = {
  target: { type: 'string', multiple: true, placeholder: 'T', help: 'where to write' },
  'database-url': { type: 'string', placeholder: 'URL', help: 'source' },
  'dry-run': { type: 'boolean', help: 'change nothing' },
  'keep-last': { type: 'integer', min: 0, help: 'sets to keep' },
  offset: { type: 'number', help: 'a signed offset' },
  timeout: { type: 'duration', min: 1, default: '10m', help: 'overall timeout' },
  compression: { type: 'string', choices: ['zstd', 'pg_dump'], default: 'zstd', help: 'how' },
  yes: { type: 'boolean', short: 'y', help: 'confirm' },
} as const satisfies FlagSpecs;

/** The UsageError a parse throws (fails the test when it does not throw). */
function usageErrorOf(argv: string[], specs: FlagSpecs = SPECS): UsageError {
  try { parseFlags(specs, argv); } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    expect(exitCodeOf(e)).toBe(2);
    return e as UsageError;
  }
  throw new Error(`parsing ${argv.join(' ')} did not fail`);
}

describe('durations', () => {
  it('reads the forms operators write, in seconds', () => {
    expect(parseDuration('90')).toBe(90);
    expect(parseDuration('90s')).toBe(90);
    expect(parseDuration('10m')).toBe(600);
    expect(parseDuration('1h30m')).toBe(5400);
    expect(parseDuration('7d')).toBe(7 * 86400);
    expect(parseDuration('250ms')).toBeCloseTo(0.25);
    expect(parseDuration('1.5h')).toBe(5400);
  });
  it('refuses what is not a duration', () => {
    for (const bad of ['', 'm', '10 minutes', '10x', '-5s', '1h30', 'h1']) expect(parseDuration(bad), bad).toBeUndefined();
  });
  it('a duration flag converts, defaults, and names itself when wrong or below its minimum', () => {
    expect(parseFlags(SPECS, ['--timeout', '1h']).flags.timeout).toBe(3600);
    expect(parseFlags(SPECS, []).flags.timeout).toBe(600);
    expect(usageErrorOf(['--timeout', 'soon']).message).toMatch(/--timeout must be a duration such as 90s.*"soon"/);
    expect(usageErrorOf(['--timeout', '0s']).message).toMatch(/--timeout must be at least 1 s/);
  });
});

describe('choices', () => {
  it('accepts a listed value and refuses another, listing the choices and the near one', () => {
    expect(parseFlags(SPECS, ['--compression', 'pg_dump']).flags.compression).toBe('pg_dump');
    const e = usageErrorOf(['--compression', 'zstdd']);
    expect(e.message).toContain('--compression must be one of zstd, pg_dump (got "zstdd")');
    expect(e.message).toContain('did you mean "zstd"?');
  });
});

describe('closest names', () => {
  const known = ['dry-run', 'database-url', 'target', 'keep-last', 'keep-daily'];
  it('finds the likely typo, and nothing for a word far from every name', () => {
    expect(closestName('dry-rn', known)).toBe('dry-run');
    expect(closestName('targt', known)).toBe('target');
    expect(closestName('keep-lsat', known)).toBe('keep-last');
    expect(closestName('datab', known)).toBe('database-url');
    expect(closestName('frobnicate', known)).toBeUndefined();
    expect(closestName('x', [])).toBeUndefined();
  });
  it('an unknown flag names itself and the closest known one', () => {
    const e = usageErrorOf(['--dry-rn']);
    expect(e.message).toBe('unknown flag --dry-rn; did you mean --dry-run? (see --help)');
    expect(usageErrorOf(['--frobnicate']).message).toBe('unknown flag --frobnicate (see --help)');
    expect(usageErrorOf(['-q']).message).toContain('unknown flag -q');
  });
});

describe('missing and repeated values', () => {
  it('a flag at the end without its value is a missing value', () => {
    expect(usageErrorOf(['--database-url']).message).toBe('--database-url needs a value (--database-url URL)');
  });
  it('`--flag --other` is a missing value, not a value "--other"', () => {
    expect(usageErrorOf(['--database-url', '--dry-run']).message).toContain('--database-url needs a value');
    expect(usageErrorOf(['--target', '--keep-last', '3']).message).toContain('--target needs a value');
    // Written with `=`, the operator meant it literally.
    expect(parseFlags(SPECS, ['--database-url=--odd']).flags['database-url']).toBe('--odd');
  });
  it('a single-value flag given twice is refused; a repeatable one collects; a boolean twice is refused', () => {
    expect(usageErrorOf(['--database-url', 'a', '--database-url', 'b']).message).toBe('--database-url given more than once; it takes one value');
    expect(parseFlags(SPECS, ['--target', '/a', '--target', 'r:b']).flags.target).toEqual(['/a', 'r:b']);
    expect(usageErrorOf(['--dry-run', '--dry-run']).message).toBe('--dry-run given more than once');
    expect(usageErrorOf(['--yes', '-y']).message).toBe('--yes given more than once');
  });
  it('a boolean given a value is refused', () => {
    expect(usageErrorOf(['--dry-run=no']).message).toBe('--dry-run takes no value (got "no")');
  });
  it('a required flag that is absent names itself and what it is for', () => {
    const specs = { journal: { type: 'string', required: true, placeholder: 'FILE', help: 'journal of this run' } } as const satisfies FlagSpecs;
    expect(usageErrorOf([], specs).message).toBe('--journal is required (--journal FILE): journal of this run');
  });
});

describe('numbers', () => {
  it('a negative number is a value, not a flag, for number flags', () => {
    expect(parseFlags(SPECS, ['--offset', '-5']).flags.offset).toBe(-5);
    expect(parseFlags(SPECS, ['--offset', '-0.5']).flags.offset).toBe(-0.5);
  });
  it('a negative number below the minimum is refused naming the minimum', () => {
    expect(usageErrorOf(['--keep-last', '-1']).message).toBe('--keep-last must be a whole number >= 0, not "-1"');
  });
  it('a string flag does not swallow a negative-looking value as missing unless it is written with =', () => {
    expect(usageErrorOf(['--database-url', '-5']).message).toContain('--database-url needs a value');
    expect(parseFlags(SPECS, ['--database-url=-5']).flags['database-url']).toBe('-5');
  });
  it('bad numbers are refused naming the flag', () => {
    expect(usageErrorOf(['--keep-last', '3.5']).message).toBe('--keep-last must be a whole number (got "3.5")');
    expect(usageErrorOf(['--keep-last', 'three']).message).toBe('--keep-last must be a whole number (got "three")');
    expect(usageErrorOf(['--offset', '']).message).toMatch(/--offset (must be a number|needs a value)/);
    expect(parseFlags(SPECS, ['--keep-last', '0']).flags['keep-last']).toBe(0);
  });
});

describe('positionals and given flags', () => {
  it('refuses a stray argument unless the command takes some', () => {
    expect(usageErrorOf(['extra']).message).toBe('unexpected argument "extra" (see --help)');
    const p = parseFlags(SPECS, ['one', '--dry-run', 'two'], { allowPositionals: true });
    expect(p.positionals).toEqual(['one', 'two']);
    expect([...p.given]).toEqual(['dry-run']);
    expect(parseFlags(SPECS, ['--', '--not-a-flag'], { allowPositionals: true }).positionals).toEqual(['--not-a-flag']);
  });
});
