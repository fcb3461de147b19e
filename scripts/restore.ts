#!/usr/bin/env -S npx tsx
// `e4ops restore`: restore production from a backup set as one resumable command (preflight, stop C2,
// restore beside production, check, swap by rename, start C2, resync, report). Library:
// backups/restore/run-restore.ts; runbook: docs/operate/restore.md.
import fs from 'node:fs';
import readline from 'node:readline/promises';
import { createLogger } from '../lib/log.ts';
import { defineCommand, runIfMain } from '../lib/cli/command.ts';
import { EXIT, OpsError } from '../lib/cli/exit-codes.ts';
import { UsageError } from '../lib/cli/flags.ts';
import { readFlagFile, BACKUP_SET_FLAGS } from '../lib/cli/shared-flags.ts';
import { checkStackFile, StackSettingsError } from '../lib/settings/stack-settings.ts';
import { loadInventory, InventoryError } from '../backups/resync/fleet-inventory.ts';
import { c2LifecycleFromStack, type C2Lifecycle } from '../backups/restore/c2-lifecycle.ts';
import { finalizeRestore, planRestore, runRestore, type RestoreOptions } from '../backups/restore/run-restore.ts';
import { renderRestoreMarkdown } from '../backups/restore/restore-report.ts';

const SOURCE = 'Source (logical backup set)';
const PITR = 'Source (pgBackRest, point in time)';
const DEST = 'Destination';
const C2 = 'C2';
export const command = defineCommand({
  name: 'restore',
  summary: 'restore production (C2\'s database and configs) from a backup set, resumably, nothing destroyed',
  description: `Restores the set into a new database <db>_restore_<stamp> next to production, checks it with the
drill's checks, swaps it in by rename (production keeps its name throughout; the old database is kept
as <db>_before_<stamp>), restores C2's configs (old ones kept as <dir>.before-<stamp>), starts C2 and
checks it serves the restored counts, then resyncs the topic keys. Each step is journaled in
--state-dir: re-run the same command after a crash and it resumes where it stopped. --plan shows
every step and what it touches and changes nothing; --finalize drops what the restore kept.
Runbook: docs/operate/restore.md.`,
  flags: {
    ...BACKUP_SET_FLAGS,
    'passphrase-file': { type: 'string', placeholder: 'FILE', group: SOURCE, help: "C2's db-encryption-passphrase (escrowed apart from the backups); both sources" },
    'pgbackrest-config': { type: 'string', placeholder: 'FILE', group: PITR, help: 'pgbackrest.conf of the stanza: restore the whole cluster with pgBackRest instead of a logical set' },
    'pgbackrest-config-include-path': { type: 'string', placeholder: 'DIR', group: PITR, help: "pgBackRest's include folder with the repository cipher passphrase (default: conf.d beside the config file, when it exists)" },
    stanza: { type: 'string', placeholder: 'S', group: PITR, help: 'pgBackRest stanza' },
    'target-time': { type: 'string', placeholder: 'ISO|latest', default: 'latest', group: PITR, help: 'recover to this time (then promote), or to the end of the archived WAL' },
    'pg-data': { type: 'string', placeholder: 'DIR', group: PITR, help: "PostgreSQL's data directory on this machine (moved to DIR.before-<stamp>)" },
    delta: { type: 'boolean', group: PITR, help: 'restore the data directory in place (pgbackrest --delta): faster, keeps nothing' },
    'postgres-stop-command': { type: 'string', multiple: true, placeholder: 'CMD', group: PITR, help: 'shell command stopping PostgreSQL (pgBackRest restores only a stopped cluster)' },
    'postgres-start-command': { type: 'string', multiple: true, placeholder: 'CMD', group: PITR, help: 'shell command starting PostgreSQL (it then recovers and promotes)' },
    'database-url': { type: 'string', placeholder: 'URL', group: DEST, help: "production database C2 uses, as a superuser (also E4OPS_DATABASE_URL): postgres://postgres:PW@HOST:5432/e4" },
    'stack-file': { type: 'string', placeholder: 'FILE', group: DEST, help: "Pulumi.<stack>.yaml: C2's database name and role, and the C2 replica containers on their Docker hosts" },
    'c2-role': { type: 'string', placeholder: 'ROLE', group: DEST, help: "role that owns C2's objects (default: the production database's owner, or the stack's postgres.username)" },
    'configs-dir': { type: 'string', placeholder: 'DIR', group: DEST, help: "C2's configs dir to restore (the old one is kept as DIR.before-<stamp>)" },
    'c2-url': { type: 'string', placeholder: 'URL', group: C2, help: "C2's HTTPS API, to check it serves the restored data and to resync (https://HOST:8888)" },
    'c2-ca': { type: 'string', placeholder: 'FILE', group: C2, help: "CA certificate that signed C2's http-cert (PEM)" },
    'c2-stop-command': { type: 'string', multiple: true, placeholder: 'CMD', group: C2, help: 'shell command stopping C2 (repeatable, one per replica), e.g. "systemctl stop e4c2"' },
    'c2-start-command': { type: 'string', multiple: true, placeholder: 'CMD', group: C2, help: 'shell command starting C2 (repeatable)' },
    'c2-timeout': { type: 'duration', min: 1, default: '3m', group: C2, help: 'how long C2 may take to serve the restored counts after its start' },
    'automation-engine-paused': { type: 'boolean', help: 'confirm the automation engine is paused (required: it rotates keys on its own)' },
    'no-resync': { type: 'boolean', help: 'skip the topic-key resync (run e4ops resync yourself, soon)' },
    inventory: { type: 'string', placeholder: 'FILE', help: 'fleet inventory (YAML) for the resync: re-creates clients, topics and links made after the backup' },
    'disaster-time': { type: 'string', placeholder: 'ISO', help: 'when the data was lost, for the RPO (default: the restore\'s start)' },
    'state-dir': { type: 'string', placeholder: 'DIR', default: 'e4ops-restore', help: 'journal, resync journal and report of this restore; re-run with the same DIR to resume' },
    report: { type: 'string', placeholder: 'FILE', help: 'JSON report (FILE.md beside it; default DIR/restore-report.json)' },
    plan: { type: 'boolean', help: 'print every step and what it will touch; change nothing' },
    yes: { type: 'boolean', short: 'y', help: 'go ahead without asking (required without a terminal)' },
    finalize: { type: 'boolean', help: 'after a finished restore: drop the kept <db>_before_<stamp> database and the configs kept aside' },
  },
  exitCodes: ['sourceUnreachable', 'target', 'locked', 'integrity', 'wrongIdentity', 'checkFailed', 'refused', 'topicsFailed', 'timedOut', 'wrongPassphrase', 'pgbackrest', 'c2Unreachable', 'incomplete'],
  handlesSignals: true,
  examples: [
    'e4ops restore --plan --target /mnt/backups --identity ops.age --passphrase-file pass --database-url postgres://postgres:PW@db:5432/e4 --c2-url https://c2:8888 --c2-ca ca.pem --c2-stop-command "systemctl stop e4c2" --c2-start-command "systemctl start e4c2"',
    'e4ops restore --yes --automation-engine-paused (same flags; re-run them to resume)',
    'e4ops restore --finalize --state-dir e4ops-restore --database-url postgres://postgres:PW@db:5432/e4 --yes',
  ],
  async run({ flags, given }, ctx) {
    const log = createLogger({ component: 'restore' });
    const databaseUrl = flags['database-url'] ?? process.env.E4OPS_DATABASE_URL;
    if (!databaseUrl) throw new UsageError('--database-url is required (or E4OPS_DATABASE_URL): the production database, as a superuser');
    const interactive = !!process.stdin.isTTY && !!process.stdout.isTTY;
    const confirm = interactive ? async (text: string) => {
      ctx.stdout(text);
      const rl = readline.createInterface({ input: process.stdin, output: process.stdout });
      const word = flags.finalize ? 'finalize' : 'restore';
      try { return (await rl.question(`Type "${word}" to go ahead: `)).trim() === word; } finally { rl.close(); }
    } : undefined;
    if (flags.finalize) {
      const r = await finalizeRestore({ stateDir: flags['state-dir'], databaseUrl, yes: flags.yes, confirm, logger: log });
      ctx.stdout(`${r.text}dropped: ${r.dropped.length ? r.dropped.join(', ') : 'nothing (already gone)'}\n`);
      return EXIT.ok;
    }
    const opts = restoreOptionsFromFlags(flags, given, databaseUrl, ctx.signal);
    if (flags.plan) { ctx.stdout((await planRestore(opts)).text); return EXIT.ok; }
    try {
      const report = await runRestore({
        ...opts, logger: log, confirm,
        onStep: (e) => { if (e.event !== 'begin') ctx.stderr(`restore: ${e.step} ${e.event}${e.seconds !== undefined ? ` (${e.seconds.toFixed(1)} s)` : ''}\n`); },
      });
      ctx.stdout(renderRestoreMarkdown(report));
      return EXIT.ok;
    } catch (e) {
      const report = (e as OpsError)?.details?.report;
      if (report) ctx.stdout(renderRestoreMarkdown(report as never));
      throw e;
    }
  },
});

type Flags = Parameters<NonNullable<typeof command.run>>[0]['flags'];


/** Flags → library options; the stack file fills in the database owner and C2's containers. */
export function restoreOptionsFromFlags(flags: Flags, given: Set<string>, databaseUrl: string, signal?: AbortSignal): RestoreOptions {
  const pitr = flags['pgbackrest-config'];
  const need = (k: 'target' | 'identity' | 'passphrase-file' | 'c2-url' | 'stanza' | 'pg-data') => {
    const v = flags[k];
    if (!v) throw new UsageError(`--${k} is required to restore (see e4ops restore --help)`);
    return v;
  };
  let lifecycle: C2Lifecycle = { stopCommands: flags['c2-stop-command'], startCommands: flags['c2-start-command'] };
  let c2Role = flags['c2-role'];
  if (flags['stack-file']) {
    let settings;
    try { settings = checkStackFile(flags['stack-file']).settings; } catch (e) {
      throw new UsageError(e instanceof StackSettingsError ? e.message : `--stack-file ${flags['stack-file']}: ${(e as Error).message}`);
    }
    const db = new URL(databaseUrl).pathname.replace(/^\//, '');
    if (db !== settings.postgres.database) throw new UsageError(`--database-url names database ${db}, but ${flags['stack-file']} says C2 uses ${settings.postgres.database}`);
    c2Role ??= settings.postgres.username;
    if (!lifecycle.stopCommands.length) lifecycle = c2LifecycleFromStack(settings);
  }
  if (given.has('c2-stop-command') !== given.has('c2-start-command')) throw new UsageError('--c2-stop-command and --c2-start-command go together: give both (or --stack-file)');
  let disasterAt: Date | undefined;
  if (flags['disaster-time']) {
    disasterAt = new Date(flags['disaster-time']);
    if (Number.isNaN(disasterAt.getTime())) throw new UsageError(`--disaster-time must be an ISO time such as 2026-12-02T03:10:00Z (got "${flags['disaster-time']}")`);
  }
  let inventory;
  if (flags.inventory) { try { inventory = loadInventory(flags.inventory); } catch (e) { throw new UsageError(e instanceof InventoryError ? e.message : String(e)); } }
  let pgbackrest: RestoreOptions['pgbackrest'];
  if (pitr) {
    for (const f of ['target', 'identity'] as const) if (given.has(f)) throw new UsageError(`--${f} names a logical set; --pgbackrest-config restores with pgBackRest: give one source`);
    const tt = flags['target-time'];
    if (tt !== 'latest' && Number.isNaN(Date.parse(tt))) throw new UsageError(`--target-time must be an ISO time such as 2026-12-02T03:05:00Z, or latest (got "${tt}")`);
    if (!flags['postgres-stop-command'].length || !flags['postgres-start-command'].length) throw new UsageError('--pgbackrest-config needs --postgres-stop-command and --postgres-start-command (pgBackRest restores only a stopped cluster)');
    pgbackrest = {
      configFile: pitr, stanza: need('stanza'), configIncludePath: flags['pgbackrest-config-include-path'], targetTime: tt, dataDir: need('pg-data'), delta: flags.delta,
      postgres: { stopCommands: flags['postgres-stop-command'], startCommands: flags['postgres-start-command'] },
    };
  } else {
    for (const f of ['stanza', 'pg-data', 'delta', 'target-time', 'postgres-stop-command', 'postgres-start-command'] as const) if (given.has(f)) throw new UsageError(`--${f} belongs to a pgBackRest restore: add --pgbackrest-config FILE, or drop it`);
  }
  return {
    target: pitr ? '' : need('target'), backup: flags.backup, identityFile: pitr ? '' : need('identity'), rcloneConfig: flags['rclone-config'], pgbackrest,
    databaseUrl, c2Role, passphraseFile: need('passphrase-file'), configsDir: flags['configs-dir'],
    c2: { url: need('c2-url'), ca: readFlagFile('c2-ca', flags['c2-ca']) },
    lifecycle, automationEnginePaused: flags['automation-engine-paused'], resync: !flags['no-resync'], inventory,
    stateDir: flags['state-dir'], disasterAt, reportFile: flags.report, c2TimeoutSeconds: flags['c2-timeout'], yes: flags.yes, signal,
  };
}

await runIfMain(import.meta.url, command);
