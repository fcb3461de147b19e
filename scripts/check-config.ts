#!/usr/bin/env -S npx tsx
// Validate a Pulumi stack file (Pulumi.<stack>.yaml) the way the Pulumi program will, before any
// resource exists. Exit 0 when valid, 1 when not (each problem names the key and the fix), 2 on usage.
import { argv } from 'zx';
import { checkStackFile, StackSettingsError, STACK_SETTINGS_SCHEMA } from '../lib/settings/stack-settings.ts';

const USAGE = `usage: npx tsx scripts/check-config.ts [--json] <Pulumi.STACK.yaml> ...
       npx tsx scripts/check-config.ts --schema
  Validates e4ops:settings (JSON Schema + C2's rules) and the e4ops:<secret> keys of each file.
  --json     print the validated settings with every default filled in
  --schema   print the stack settings JSON Schema (for editors and other tools)
exit: 0 all valid, 1 a file is invalid, 2 usage error`;

if (argv.help || argv.h) {
  console.log(USAGE);
  process.exit(0);
}
if (argv.schema) {
  console.log(JSON.stringify(STACK_SETTINGS_SCHEMA, null, 2));
  process.exit(0);
}
const files = argv._.map(String);
if (!files.length) {
  console.error(USAGE);
  process.exit(2);
}
let failed = false;
for (const file of files) {
  try {
    const { settings, notes } = checkStackFile(file);
    console.log(`${file}: valid (profile ${settings.profile}, ${settings.c2.replicas} C2 replica(s) on ${settings.hosts.length} Docker host(s))`);
    for (const n of notes) console.log(`  note: ${n}`);
    if (argv.json) console.log(JSON.stringify(settings, null, 2));
  } catch (err) {
    failed = true;
    if (err instanceof StackSettingsError) console.error(err.message.replace(/^stack settings/, file));
    else console.error(`${file}: ${(err as Error).message}`);
  }
}
process.exit(failed ? 1 : 0);
