#!/usr/bin/env -S npx tsx
// `e4ops appliance`: commands that run ON the appliance. `upgrade-check` reports the image, the C2 build
// and whether the PostgreSQL data fits the installed binaries (e4c2.service runs it with --guard);
// `apply-settings` is first boot's settings step. Library: appliances/upgrade-check.ts, apply-settings.ts.
import { defineCommand, runIfMain } from '../lib/cli/command.ts';
import { EXIT, OpsError } from '../lib/cli/exit-codes.ts';
import { checkUpgrade, describeUpgradeReport } from '../appliances/upgrade-check.ts';
import { applySettings } from '../appliances/apply-settings.ts';
import { createLogger } from '../lib/log.ts';

const upgradeCheck = defineCommand({
  name: 'appliance upgrade-check',
  summary: 'report the image version, the C2 build and whether the PostgreSQL data matches the binaries',
  description: `Reads /etc/e4ops/image-release.json, hashes the C2 binary and compares the major version of every
PostgreSQL cluster under /var/lib/postgresql with the server binaries in /usr/lib/postgresql. Data whose
major has no binaries (an OS upgrade removed them) is refused: exit 9, and e4c2.service (which runs
--guard before each start) keeps C2 stopped. Changes nothing.`,
  flags: {
    root: { type: 'string', placeholder: 'DIR', default: '/', help: 'file-system root to inspect (a mounted image, for example)' },
    json: { type: 'boolean', help: 'print the report as JSON' },
    guard: { type: 'boolean', help: 'print only refusals (for ExecStartPre=); the exit code says it all' },
  },
  exitCodes: ['refused'],
  run({ flags }, ctx) {
    const r = checkUpgrade(flags.root);
    if (flags.json) ctx.stdout(JSON.stringify(r) + '\n');
    else if (!flags.guard) ctx.stdout(describeUpgradeReport(r) + '\n');
    if (r.refusals.length) throw new OpsError('refused', r.refusals.join('; '));
    return EXIT.ok;
  },
});

const applySettingsCommand = defineCommand({
  name: 'appliance apply-settings',
  summary: "first boot: validate the cloud-init settings block merged over the image's, and render the configs",
  description: `Merges /etc/e4ops/settings.yaml (written by cloud-init; the same keys as the definition's settings:)
over the settings in /etc/e4ops/appliance.yaml, validates the result with the definition's schema and
rules, and only then renders C2's, Mosquitto's and PostgreSQL's configs and the backup timer with the
renderers the build used. A bad block exits 2 naming each key; nothing is written. Run by
e4ops-firstboot.service; safe to re-run.`,
  flags: {
    root: { type: 'string', placeholder: 'DIR', default: '/', help: 'file-system root to work under' },
    hostname: { type: 'string', placeholder: 'NAME', help: "host name for C2's certificate (default: this machine's)" },
  },
  run({ flags }, ctx) {
    const log = createLogger({ component: 'appliance-settings' });
    const r = applySettings({ root: flags.root, hostname: flags.hostname });
    for (const p of r.written) ctx.stdout(`e4ops-firstboot: rendered ${p}\n`);
    for (const p of r.removed) ctx.stdout(`e4ops-firstboot: removed ${p} (settings.backup.enabled is false)\n`);
    ctx.stdout(`e4ops-firstboot: settings ok (${r.fromCloudInit ? 'cloud-init block merged over the image definition' : 'image definition only'}); host ${r.hostname}, certificate ${r.certSan}\n`);
    log.info('appliance.settings_applied', { fromCloudInit: r.fromCloudInit, files: r.written.length, backup: r.appliance.settings.backup.enabled });
    return EXIT.ok;
  },
});

export const command = defineCommand({
  name: 'appliance',
  summary: 'on the appliance: upgrade check, first-boot settings',
  flags: {},
  subcommands: [upgradeCheck, applySettingsCommand],
});

await runIfMain(import.meta.url, command);
