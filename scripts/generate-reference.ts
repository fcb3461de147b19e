#!/usr/bin/env -S npx tsx
// `npm run docs:reference`: write docs/reference/ from the declarations (lib/cli/reference-docs.ts).
// `--check` writes nothing and exits 1 when a committed page is stale. A contributor tool, not an
// e4ops subcommand.
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { REPO_ROOT } from '../lib/repo-root.ts';
import { parseFlags } from '../lib/cli/flags.ts';
import { exitCodeOf } from '../lib/cli/exit-codes.ts';
import { renderReferencePages } from '../lib/cli/reference-docs.ts';
import { SUBCOMMANDS, isDeclared, loadCommand } from './e4ops.ts';
import { STACK_SETTINGS_SCHEMA, SECRET_KEYS } from '../lib/settings/stack-settings-schema.ts';
import { PROFILE_DEFAULTS } from '../lib/settings/profile-defaults.ts';

export const REFERENCE_DIR = path.join(REPO_ROOT, 'docs', 'reference');

/** The pages as the declarations in this tree make them. */
export async function currentReferencePages(): Promise<Map<string, string>> {
  const names = Object.keys(SUBCOMMANDS);
  const declared = names.filter(isDeclared);
  return renderReferencePages({
    commands: await Promise.all(declared.map(loadCommand)),
    undeclared: names.filter((n) => !declared.includes(n)),
    settingsSchema: STACK_SETTINGS_SCHEMA,
    profileDefaults: PROFILE_DEFAULTS,
    secretKeys: SECRET_KEYS,
  });
}

/** Committed pages that differ from the generated ones, are missing, or are no longer generated. */
export function staleReferencePages(pages: Map<string, string>, dir = REFERENCE_DIR): string[] {
  const committed = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.md')) : [];
  const stale = [...pages].filter(([f, text]) => !committed.includes(f) || fs.readFileSync(path.join(dir, f), 'utf8') !== text).map(([f]) => f);
  return [...stale, ...committed.filter((f) => !pages.has(f))].sort();
}

async function main(argv: string[]): Promise<number> {
  const { flags } = parseFlags({ check: { type: 'boolean', help: 'exit 1 when a committed page is stale; write nothing' } }, argv);
  const pages = await currentReferencePages();
  const stale = staleReferencePages(pages);
  if (flags.check) {
    if (stale.length) process.stderr.write(`docs/reference is stale (${stale.join(', ')}): run npm run docs:reference\n`);
    return stale.length ? 1 : 0;
  }
  fs.mkdirSync(REFERENCE_DIR, { recursive: true });
  for (const f of stale) {
    const file = path.join(REFERENCE_DIR, f);
    if (pages.has(f)) fs.writeFileSync(file, pages.get(f)!);
    else fs.rmSync(file);
  }
  process.stdout.write(stale.length ? `docs/reference: ${stale.join(', ')} updated\n` : 'docs/reference: up to date\n');
  return 0;
}

if (process.argv[1] && pathToFileURL(process.argv[1]).href === import.meta.url) {
  process.exitCode = await main(process.argv.slice(2)).catch((e) => {
    process.stderr.write(`generate-reference: ${(e as Error).message}\n`);
    return exitCodeOf(e);
  });
}
