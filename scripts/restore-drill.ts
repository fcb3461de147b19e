#!/usr/bin/env -S npx tsx
// Restore drill: prove a backup set restores, its passphrase opens every key, and (with --with-c2)
// a scratch C2 serves it; report RTO and RPO. Library: backups/drill/restore-drill.ts.
import fs from 'node:fs';
import { parseArgv } from 'zx';
import { createLogger } from '../lib/log.ts';
import { runRestoreDrillAndRecord } from '../backups/drill/restore-drill.ts';
import { renderDrillMarkdown } from '../backups/drill/drill-report.ts';
import { loadInventory, InventoryError } from '../backups/resync/fleet-inventory.ts';
import { BackupError } from '../backups/exit-codes.ts';
import { DRILL_JOB, printedSchedule } from '../backups/schedule.ts';

export const DRILL_EXIT = { ok: 0, internal: 1, config: 2, checkFailed: 8 } as const;

const HELP = `Usage: npx tsx scripts/restore-drill.ts --target T --backup latest|ID --identity AGE_IDENTITY_FILE
         --passphrase-file FILE [--report FILE.json] [--metrics-file FILE.prom]
         [--scratch-database-url URL --database-url PRODUCTION_URL]
         [--with-c2 [--c2-binary PATH | --c2-image IMAGE] [--resync [--inventory F] [--fleet-snapshot F]]]

Restores a backup set into a scratch PostgreSQL that the drill starts (or --scratch-database-url,
never the production database) and checks it: checksums of every object, decryption with the age
identity, C2's schema, inventory counts against the manifest, every sealed key opening with the
passphrase (and its fingerprint matching the manifest), orphan links, restored configs parsing and
certificates not expired. Scratch servers are always torn down. A passing drill marks the set as
drill-verified on the target, so retention never deletes the newest such set.

  --target T                  directory or rclone remote (remote:path) holding the sets
  --backup latest|ID          set to restore (default latest)
  --identity FILE             age identity (secret key) file
  --passphrase-file FILE      C2's db-encryption-passphrase (escrowed apart from the backups)
  --scratch-database-url URL  restore here instead (must be empty; refused if it is production)
  --database-url URL          the production database (also E4OPS_DATABASE_URL), never restored into
  --with-c2                   start a scratch C2 (and scratch Mosquitto) on the restored database and
                              check through its API that it serves the same clients and topics
  --c2-binary PATH            C2 binary (default: the one scripts/build-c2.sh built)
  --c2-image IMAGE            run the scratch C2 from this image (stacks/docker/c2.Dockerfile) on the Docker
                              engine of DOCKER_HOST, with host networking; never pulled
  --resync                    rehearse the topic-key resync against the scratch C2 with a simulated fleet
  --inventory FILE            fleet inventory (YAML) for the rehearsal
  --fleet-snapshot FILE       device key state before the restore (JSON from the fleet simulator)
  --rehearsal-devices N       simulated devices sampled from the backup when no snapshot is given (default 20)
  --report FILE               JSON report (FILE.md gets a Markdown summary)
  --metrics-file FILE         Prometheus textfile-collector output
  --rclone-config FILE        rclone config for remote targets
  --no-mark-verified          do not mark the set as drill-verified
  --print-systemd-timer [--on-calendar SPEC]   print a service + timer running this drill (default weekly,
                              Sunday 04:00) with the other flags given, instead of running it
  --print-crontab [--cron "0 4 * * 0"]         the same as an /etc/cron.d line
Exit codes: 0 passed, 1 internal error, 2 bad flags or files, 8 a check failed (named on stderr and in the report).`;

async function main(): Promise<number> {
  const argv = parseArgv(process.argv.slice(2), {
    boolean: ['help', 'with-c2', 'resync', 'mark-verified', 'print-systemd-timer', 'print-crontab'],
    string: ['target', 'backup', 'identity', 'passphrase-file', 'report', 'metrics-file', 'scratch-database-url', 'database-url',
      'c2-binary', 'c2-image', 'inventory', 'fleet-snapshot', 'rclone-config', 'on-calendar', 'cron', 'user'],
    default: { backup: 'latest', 'mark-verified': true },
  });
  if (argv.help) { process.stdout.write(HELP + '\n'); return DRILL_EXIT.ok; }
  const log = createLogger({ component: 'restore-drill' });
  try {
    const need = (flag: string) => {
      const v = argv[flag];
      if (v === undefined || v === '') throw new BackupError('config', `--${flag} is required (see --help)`);
      return String(v);
    };
    const schedule = printedSchedule(DRILL_JOB, process.argv.slice(2));
    if (schedule !== undefined) {
      for (const flag of ['target', 'identity', 'passphrase-file']) need(flag); // a scheduled drill that cannot run is no schedule
      process.stdout.write(schedule);
      return DRILL_EXIT.ok;
    }
    let fleetSnapshot;
    if (argv['fleet-snapshot']) {
      try { fleetSnapshot = JSON.parse(fs.readFileSync(String(argv['fleet-snapshot']), 'utf8')); } catch (e) {
        throw new BackupError('config', `--fleet-snapshot ${argv['fleet-snapshot']}: ${(e as Error).message}`);
      }
    }
    const report = await runRestoreDrillAndRecord({
      target: need('target'),
      backup: String(argv.backup),
      identityFile: need('identity'),
      passphraseFile: need('passphrase-file'),
      scratchDatabaseUrl: argv['scratch-database-url'] || undefined,
      productionDatabaseUrl: argv['database-url'] || undefined,
      withC2: !!argv['with-c2'],
      c2Binary: argv['c2-binary'] || undefined,
      c2Image: argv['c2-image'] || undefined,
      resync: !!argv.resync,
      inventory: argv.inventory ? loadInventory(String(argv.inventory)) : undefined,
      fleetSnapshot,
      rehearsalDevices: argv['rehearsal-devices'] ? Number(argv['rehearsal-devices']) : undefined,
      reportFile: argv.report || undefined,
      metricsFile: argv['metrics-file'] || undefined,
      rcloneConfig: argv['rclone-config'] || undefined,
      markVerified: argv['mark-verified'] !== false,
      logger: log,
    });
    process.stdout.write(renderDrillMarkdown(report));
    if (!report.ok) {
      process.stderr.write(`restore drill FAILED: ${report.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`).join('\n  ')}\n`);
      return DRILL_EXIT.checkFailed;
    }
    return DRILL_EXIT.ok;
  } catch (e) {
    const msg = (e as Error).message;
    if ((e instanceof BackupError && e.kind === 'usage') || e instanceof InventoryError) {
      log.error('drill.config', { error: msg });
      process.stderr.write(`restore drill: ${msg}\n`);
      return DRILL_EXIT.config;
    }
    log.error('drill.failed', { error: msg });
    process.stderr.write(`restore drill failed: ${msg}\n`);
    return DRILL_EXIT.internal;
  }
}

process.exitCode = await main();
