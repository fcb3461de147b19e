// docs/reference/ is generated from the declarations (npm run docs:reference). Regenerated here and
// compared with the committed pages: a flag, exit code or settings key changed without regenerating
// fails this test.
import { describe, it, expect } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { currentReferencePages, staleReferencePages } from '../../scripts/generate-reference.ts';
import { SUBCOMMANDS, isDeclared, loadCommand } from '../../scripts/e4ops.ts';
import { EXIT_CODES } from '../../lib/cli/exit-codes.ts';
import { STACK_SETTINGS_SCHEMA, SECRET_KEYS } from '../../lib/settings/stack-settings-schema.ts';
import { commandTree as walk } from '../../lib/cli/command.ts';

describe('docs/reference', () => {
  it('the committed pages are what the declarations generate', async () => {
    const stale = staleReferencePages(await currentReferencePages());
    expect(stale, `docs/reference is stale (${stale.join(', ')}): run npm run docs:reference and commit the pages`).toEqual([]);
  });

  it('each command page documents every flag and exit code of the command and of each subcommand', async () => {
    const pages = await currentReferencePages();
    for (const name of Object.keys(SUBCOMMANDS).filter(isDeclared)) {
      const page = pages.get(`${name}.md`)!;
      expect(page, name).toBeDefined();
      for (const spec of walk(await loadCommand(name))) {
        const at = page.indexOf(`# e4ops ${spec.name}\n`);
        expect(at, `section of ${spec.name}`).toBeGreaterThanOrEqual(0);
        const section = page.slice(at);
        for (const flag of Object.keys(spec.flags)) expect(section, `${spec.name} --${flag}`).toContain(`\`--${flag}`);
        for (const kind of spec.exitCodes ?? []) expect(section, `${spec.name} exit ${kind}`).toContain(`| ${EXIT_CODES[kind].code} | ${EXIT_CODES[kind].meaning.split('|')[0]}`);
      }
    }
  });

  it('the exit-code page lists every code of the table; the settings page every key and secret', async () => {
    const pages = await currentReferencePages();
    for (const [kind, { code }] of Object.entries(EXIT_CODES)) expect(pages.get('exit-codes.md')).toContain(`| ${code} | \`${kind}\` |`);
    const keys = (props: Record<string, any>, prefix = ''): string[] => Object.entries(props).flatMap(([k, n]) =>
      n.properties ? keys(n.properties, `${prefix}${k}.`) : n.items?.properties ? [`${prefix}${k}`, ...keys(n.items.properties, `${prefix}${k}[].`)] : [`${prefix}${k}`]);
    const settings = pages.get('stack-settings.md')!;
    for (const k of keys(STACK_SETTINGS_SCHEMA.properties)) expect(settings, k).toContain(`| \`${k}\` |`);
    for (const k of Object.keys(SECRET_KEYS)) expect(settings).toContain(`\`e4ops:${k}\``);
  });

  it('a hand-edited, missing or left-over page is reported stale', async () => {
    const pages = await currentReferencePages();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-ref-'));
    try {
      for (const [f, text] of pages) fs.writeFileSync(path.join(dir, f), text);
      expect(staleReferencePages(pages, dir)).toEqual([]);
      fs.appendFileSync(path.join(dir, 'exit-codes.md'), 'edited by hand\n');
      fs.rmSync(path.join(dir, 'stack-settings.md'));
      fs.writeFileSync(path.join(dir, 'old-command.md'), 'a command that no longer exists\n');
      expect(staleReferencePages(pages, dir)).toEqual(['exit-codes.md', 'old-command.md', 'stack-settings.md']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
