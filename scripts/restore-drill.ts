#!/usr/bin/env -S npx tsx
// `e4ops drill`: prove a backup set restores, its passphrase opens every key, and (with --with-c2)
// a scratch C2 serves it; report RTO and RPO. Library: backups/drill/restore-drill.ts.
import fs from 'node:fs';
import { createLogger } from '../lib/log.ts';
import { defineCommand, runIfMain } from '../lib/cli/command.ts';
import { BACKUP_SET_FLAGS } from '../lib/cli/shared-flags.ts';
import { EXIT } from '../lib/cli/exit-codes.ts';
import { UsageError } from '../lib/cli/flags.ts';
import { runRestoreDrillAndRecord } from '../backups/drill/restore-drill.ts';
import { cleanupDeadDrills } from '../backups/drill/scratch-registry.ts';
import { runPitrDrillAndRecord } from '../backups/pitr/pitr-drill.ts';
import { renderDrillMarkdown } from '../backups/drill/drill-report.ts';
import { loadInventory, InventoryError } from '../backups/resync/fleet-inventory.ts';
import { DRILL_JOB, printedSchedule } from '../backups/schedule.ts';

const SOURCE = 'Backup set (logical drill)';
const PITR = 'pgBackRest repository (PITR drill)';
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
    ...BACKUP_SET_FLAGS,
    'passphrase-file': { type: 'string', placeholder: 'FILE', group: SOURCE, help: "C2's db-encryption-passphrase, escrowed apart from the backups (required)" },
    'pgbackrest-config': { type: 'string', placeholder: 'FILE', group: PITR, help: 'drill a pgBackRest point-in-time restore instead of a backup set: its pgbackrest.conf (rendered by e4ops or your own)' },
    stanza: { type: 'string', placeholder: 'NAME', group: PITR, help: 'pgBackRest stanza (default c2)' },
    'target-time': { type: 'string', placeholder: 'ISO|latest', group: PITR, help: 'point in time to restore to, with its zone (2026-12-02T20:15:00Z); default latest (the end of the archive)' },
    set: { type: 'string', placeholder: 'LABEL', group: PITR, help: 'pgBackRest set to restore from (without --target-time: to the end of that set)' },
    'config-include-path': { type: 'string', placeholder: 'DIR', group: PITR, help: 'folder of extra *.conf files with secrets such as repo1-cipher-pass (default: conf.d beside the config file, when it exists)' },
    'run-as': { type: 'string', placeholder: 'USER', group: PITR, help: 'OS user pgBackRest and the scratch server run as (default postgres when root)' },
    'c2-database': { type: 'string', placeholder: 'NAME', group: PITR, help: "C2's database in the restored cluster (default: the one holding C2's tables)" },
    'scratch-dir': { type: 'string', placeholder: 'DIR', group: PITR, help: 'folder for the scratch data directory (default the temp folder); refused at or around the configured pg1-path' },
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
    cleanup: { type: 'boolean', help: 'only stop and remove the scratch servers and folders of drills that died (SIGKILL, power loss), then exit' },
    'print-systemd-timer': { type: 'boolean', group: SCHEDULE, help: 'print a service + timer running this drill with the other flags given, instead of running it' },
    'print-crontab': { type: 'boolean', group: SCHEDULE, help: 'the same as an /etc/cron.d line' },
    'on-calendar': { type: 'string', placeholder: 'SPEC', group: SCHEDULE, help: 'systemd OnCalendar of the printed timer (default weekly, Sun 04:00)' },
    cron: { type: 'string', placeholder: 'SPEC', group: SCHEDULE, help: 'cron schedule of the printed line (default "0 4 * * 0")' },
    user: { type: 'string', placeholder: 'USER', group: SCHEDULE, help: 'user the scheduled drill runs as (default root)' },
  },
  exitCodes: ['checkFailed', 'target', 'integrity', 'wrongIdentity', 'pgbackrest', 'refused'],
  examples: [
    'e4ops drill --target /var/backups/c2 --backup latest --identity /etc/e4ops/drill.age --passphrase-file /etc/e4ops/c2-db-passphrase --report /var/lib/e4ops/drill.json',
    'e4ops drill --pgbackrest-config /etc/pgbackrest/pgbackrest.conf --stanza c2 --target-time 2026-12-02T20:15:00Z --passphrase-file /etc/e4ops/c2-db-passphrase',
    'e4ops drill --print-systemd-timer --target /var/backups/c2 --identity /etc/e4ops/drill.age --passphrase-file /etc/e4ops/c2-db-passphrase',
  ],
  async run({ flags, given }, ctx) {
    const need = (flag: 'target' | 'identity' | 'passphrase-file'): string => {
      const v = flags[flag];
      if (!v) throw new UsageError(`--${flag} is required: ${command.flags[flag].help.replace(/ \(required\)$/, '')}`);
      return v;
    };
    if (flags.cleanup) {
      const r = cleanupDeadDrills({ log: createLogger({ component: 'restore-drill' }) });
      ctx.stdout(`${r.drills} dead drill(s) cleaned up: ${r.killed.length} process(es) stopped, ${r.removedDirs.length} folder(s) removed${r.liveDrills ? `; ${r.liveDrills} running drill(s) left alone` : ''}\n`);
      return EXIT.ok;
    }
    const pitr = !!flags['pgbackrest-config'];
    checkDrillKindFlags(pitr, given);
    if (flags['print-systemd-timer'] || flags['print-crontab']) {
      // A scheduled drill that cannot run is no schedule.
      for (const flag of pitr ? ['passphrase-file'] as const : ['target', 'identity', 'passphrase-file'] as const) need(flag);
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
    const logical = pitr ? undefined : { target: need('target'), identity: need('identity') };
    const common = {
      passphraseFile: need('passphrase-file'),
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
      logger: log,
    };
    const report = pitr ? await runPitrDrillAndRecord({
      ...common,
      pgbackrestConfig: flags['pgbackrest-config']!,
      stanza: flags.stanza ?? 'c2',
      configIncludePath: flags['config-include-path'],
      runAs: flags['run-as'],
      targetTime: flags['target-time'],
      set: flags.set,
      c2Database: flags['c2-database'],
      scratchDir: flags['scratch-dir'],
    }) : await runRestoreDrillAndRecord({
      ...common,
      target: logical!.target,
      backup: flags.backup,
      identityFile: logical!.identity,
      scratchDatabaseUrl: flags['scratch-database-url'] || undefined,
      rcloneConfig: flags['rclone-config'] || undefined,
      markVerified: !flags['no-mark-verified'],
    });
    ctx.stdout(renderDrillMarkdown(report));
    if (!report.ok) {
      ctx.stderr(`restore drill FAILED: ${report.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`).join('\n  ')}\n`);
      return EXIT.checkFailed;
    }
    return EXIT.ok;
  },
});

const LOGICAL_ONLY = ['target', 'identity', 'rclone-config', 'scratch-database-url', 'no-mark-verified'];
const PITR_ONLY = ['stanza', 'target-time', 'set', 'config-include-path', 'run-as', 'c2-database', 'scratch-dir'];

/** A drill is of one kind: backup-set flags with --pgbackrest-config (or the reverse) are a usage error. */
function checkDrillKindFlags(pitr: boolean, given: Set<string>): void {
  const wrong = (pitr ? LOGICAL_ONLY : PITR_ONLY).filter((f) => given.has(f));
  if (wrong.length) {
    throw new UsageError(pitr
      ? `--${wrong[0]} is for a backup-set drill; a PITR drill (--pgbackrest-config) takes --stanza, --target-time, --set instead`
      : `--${wrong[0]} is for a PITR drill: add --pgbackrest-config FILE (or drop it for a backup-set drill)`);
  }
  if (pitr && given.has('backup')) throw new UsageError('--backup names a backup set; for a pgBackRest set use --set LABEL');
}

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
