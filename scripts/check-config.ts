#!/usr/bin/env -S npx tsx
// `e4ops check-config`: validate Pulumi stack files (Pulumi.<stack>.yaml) the way the Pulumi program
// will, before any resource exists. Library: lib/settings/stack-settings.ts.
import { defineCommand, runIfMain } from '../lib/cli/command.ts';
import { EXIT } from '../lib/cli/exit-codes.ts';
import { UsageError } from '../lib/cli/flags.ts';
import { checkStackFile, StackSettingsError, STACK_SETTINGS_SCHEMA } from '../lib/settings/stack-settings.ts';

export const command = defineCommand({
  name: 'check-config',
  summary: 'validate Pulumi stack files (settings schema, C2\'s rules, secrets) before deploying',
  description: `Validates e4ops:settings (JSON Schema + C2's rules) and the e4ops:<secret> keys of each file,
and notes secrets stored in plaintext. Every problem names the key and the fix.
A file that fails validation makes the command exit 1 after every file was checked (kept from
before e4ops, so CI jobs that run it keep working).`,
  flags: {
    json: { type: 'boolean', help: 'print the validated settings with every default filled in' },
    schema: { type: 'boolean', help: 'print the stack settings JSON Schema (for editors and other tools) and exit' },
  },
  positionals: [{ name: 'Pulumi.STACK.yaml', help: 'stack files to check (at least one unless --schema)', multiple: true }],
  examples: ['e4ops check-config Pulumi.minimal.yaml Pulumi.ha.yaml', 'e4ops check-config --schema > stack-settings.schema.json'],
  run({ flags, positionals }, ctx) {
    if (flags.schema) { ctx.stdout(JSON.stringify(STACK_SETTINGS_SCHEMA, null, 2) + '\n'); return EXIT.ok; }
    if (!positionals.length) throw new UsageError('give at least one stack file (e4ops check-config Pulumi.STACK.yaml), or --schema');
    let failed = false;
    for (const file of positionals) {
      try {
        const { settings, notes } = checkStackFile(file);
        ctx.stdout(`${file}: valid (profile ${settings.profile}, ${settings.c2.replicas} C2 replica(s) on ${settings.hosts.length} Docker host(s))\n`);
        for (const n of notes) ctx.stdout(`  note: ${n}\n`);
        if (flags.json) ctx.stdout(JSON.stringify(settings, null, 2) + '\n');
      } catch (err) {
        failed = true;
        ctx.stderr((err instanceof StackSettingsError ? err.message.replace(/^stack settings/, file) : `${file}: ${(err as Error).message}`) + '\n');
      }
    }
    return failed ? EXIT.internal : EXIT.ok;
  },
});

await runIfMain(import.meta.url, command);
