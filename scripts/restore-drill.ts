#!/usr/bin/env -S npx tsx
// `e4ops drill`: prove a backup set restores, its passphrase opens every key, and (with --with-c2)
// a scratch C2 serves it; report RTO and RPO. Library: backups/drill/restore-drill.ts.
import fs from 'node:fs';
import { createLogger } from '../lib/log.ts';
import { defineCommand, runIfMain } from '../lib/cli/command.ts';
import { EXIT } from '../lib/cli/exit-codes.ts';
import { UsageError } from '../lib/cli/flags.ts';
import { runRestoreDrillAndRecord } from '../backups/drill/restore-drill.ts';
import { renderDrillMarkdown } from '../backups/drill/drill-report.ts';
import { loadInventory, InventoryError } from '../backups/resync/fleet-inventory.ts';
import { DRILL_JOB, printedSchedule } from '../backups/schedule.ts';

const SOURCE = 'Backup set';
const C2 = 'Scratch C2 and resync rehearsal';
const OUTPUT = 'Report';
const SCHEDULE = 'Scheduling';

/** The flags that only shape a printed schedule; the rest are the scheduled drill's own. */
const SCHEDULE_FLAGS = new Set(['print-systemd-timer', 'print-crontab', 'on-calendar', 'cron', 'user']);

export const command = defineCommand({
  name: 'drill',
  summary: 'restore a backup set into scratch servers and prove it: every key opens, counts match, C2 serves it',
  description: `Restores a backup set into a scratch PostgreSQL that the drill starts (or --scratch-database-url,
never the production database) and checks it: checksums of every object, decryption with the age
identity, C2's schema, inventory counts against the manifest, every sealed key opening with the
passphrase (and its fingerprint matching the manifest), orphan links, restored configs parsing and
certificates not expired. Scratch servers are always torn down. A passing drill marks the set as
drill-verified on the target, so retention never deletes the newest such set.`,
  flags: {
    target: { type: 'string', placeholder: 'T', group: SOURCE, help: 'directory or rclone remote (remote:path) holding the sets (required)' },
    backup: { type: 'string', placeholder: 'latest|ID', default: 'latest', group: SOURCE, help: 'set to restore' },
    identity: { type: 'string', placeholder: 'FILE', group: SOURCE, help: 'age identity (secret key) file (required)' },
    'passphrase-file': { type: 'string', placeholder: 'FILE', group: SOURCE, help: "C2's db-encryption-passphrase, escrowed apart from the backups (required)" },
    'rclone-config': { type: 'string', placeholder: 'FILE', group: SOURCE, help: 'rclone config for remote targets' },
    'scratch-database-url': { type: 'string', placeholder: 'URL', help: 'restore here instead (must be empty; refused if it is production)' },
    'database-url': { type: 'string', placeholder: 'URL', help: 'the production database (also E4OPS_DATABASE_URL), never restored into' },
    'with-c2': { type: 'boolean', group: C2, help: 'start a scratch C2 (and scratch Mosquitto) on the restored database and check through its API that it serves the same clients and topics' },
    'c2-binary': { type: 'string', placeholder: 'PATH', group: C2, help: 'C2 binary (default: the one scripts/build-c2.sh built)' },
    'c2-image': { type: 'string', placeholder: 'IMAGE', group: C2, help: 'run the scratch C2 from this image (stacks/docker/c2.Dockerfile) on the Docker engine of DOCKER_HOST, host networking; never pulled' },
    resync: { type: 'boolean', group: C2, help: 'rehearse the topic-key resync against the scratch C2 with a simulated fleet' },
    inventory: { type: 'string', placeholder: 'FILE', group: C2, help: 'fleet inventory (YAML) for the rehearsal' },
    'fleet-snapshot': { type: 'string', placeholder: 'FILE', group: C2, help: 'device key state before the restore (JSON from the fleet simulator)' },
    'rehearsal-devices': { type: 'integer', min: 1, placeholder: 'N', group: C2, help: 'simulated devices sampled from the backup when no snapshot is given (default 20)' },
    report: { type: 'string', placeholder: 'FILE', group: OUTPUT, help: 'JSON report (FILE.md gets a Markdown summary)' },
    'metrics-file': { type: 'string', placeholder: 'FILE', group: OUTPUT, help: 'Prometheus textfile-collector output' },
    'no-mark-verified': { type: 'boolean', group: OUTPUT, help: 'do not mark the set as drill-verified' },
    'print-systemd-timer': { type: 'boolean', group: SCHEDULE, help: 'print a service + timer running this drill with the other flags given, instead of running it' },
    'print-crontab': { type: 'boolean', group: SCHEDULE, help: 'the same as an /etc/cron.d line' },
    'on-calendar': { type: 'string', placeholder: 'SPEC', group: SCHEDULE, help: 'systemd OnCalendar of the printed timer (default weekly, Sun 04:00)' },
    cron: { type: 'string', placeholder: 'SPEC', group: SCHEDULE, help: 'cron schedule of the printed line (default "0 4 * * 0")' },
    user: { type: 'string', placeholder: 'USER', group: SCHEDULE, help: 'user the scheduled drill runs as (default root)' },
  },
  exitCodes: ['checkFailed', 'target', 'integrity', 'wrongIdentity'],
  examples: [
    'e4ops drill --target /var/backups/c2 --backup latest --identity /etc/e4ops/drill.age --passphrase-file /etc/e4ops/c2-db-passphrase --report /var/lib/e4ops/drill.json',
    'e4ops drill --print-systemd-timer --target /var/backups/c2 --identity /etc/e4ops/drill.age --passphrase-file /etc/e4ops/c2-db-passphrase',
  ],
  async run({ flags, given }, ctx) {
    const need = (flag: 'target' | 'identity' | 'passphrase-file'): string => {
      const v = flags[flag];
      if (!v) throw new UsageError(`--${flag} is required: ${command.flags[flag].help.replace(/ \(required\)$/, '')}`);
      return v;
    };
    if (flags['print-systemd-timer'] || flags['print-crontab']) {
      for (const flag of ['target', 'identity', 'passphrase-file'] as const) need(flag); // a scheduled drill that cannot run is no schedule
      ctx.stdout(printedSchedule(DRILL_JOB, scheduleArgv(flags as Record<string, unknown>, given))!);
      return EXIT.ok;
    }
    const log = createLogger({ component: 'restore-drill' });
    let fleetSnapshot;
    if (flags['fleet-snapshot']) {
      try { fleetSnapshot = JSON.parse(fs.readFileSync(flags['fleet-snapshot'], 'utf8')); } catch (e) {
        throw new UsageError(`--fleet-snapshot ${flags['fleet-snapshot']}: ${(e as Error).message}`);
      }
    }
    let inventory;
    try { inventory = flags.inventory ? loadInventory(flags.inventory) : undefined; } catch (e) {
      if (e instanceof InventoryError) throw new UsageError((e as Error).message);
      throw e;
    }
    const report = await runRestoreDrillAndRecord({
      target: need('target'),
      backup: flags.backup,
      identityFile: need('identity'),
      passphraseFile: need('passphrase-file'),
      scratchDatabaseUrl: flags['scratch-database-url'] || undefined,
      productionDatabaseUrl: flags['database-url'] || undefined,
      withC2: flags['with-c2'],
      c2Binary: flags['c2-binary'] || undefined,
      c2Image: flags['c2-image'] || undefined,
      resync: flags.resync,
      inventory,
      fleetSnapshot,
      rehearsalDevices: flags['rehearsal-devices'],
      reportFile: flags.report || undefined,
      metricsFile: flags['metrics-file'] || undefined,
      rcloneConfig: flags['rclone-config'] || undefined,
      markVerified: !flags['no-mark-verified'],
      logger: log,
    });
    ctx.stdout(renderDrillMarkdown(report));
    if (!report.ok) {
      ctx.stderr(`restore drill FAILED: ${report.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`).join('\n  ')}\n`);
      return EXIT.checkFailed;
    }
    return EXIT.ok;
  },
});

/** The command line to schedule: the given flags in declaration order, schedule flags kept for printedSchedule to strip. */
function scheduleArgv(flags: Record<string, unknown>, given: Set<string>): string[] {
  const argv: string[] = [];
  for (const name of Object.keys(command.flags)) {
    if (!given.has(name)) continue;
    const v = flags[name];
    if (v === true) argv.push(`--${name}`);
    else if (!SCHEDULE_FLAGS.has(name) || v !== false) argv.push(`--${name}`, String(v));
  }
  return argv;
}

await runIfMain(import.meta.url, command);
