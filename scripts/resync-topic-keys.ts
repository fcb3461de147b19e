#!/usr/bin/env -S npx tsx
// `e4ops resync`: topic-key resync after C2's database was restored from a backup: rotates every topic
// key through C2's API (NewTopic), re-creates clients/topics/links the inventory lists but the database
// lacks, and lists devices at risk. Library: backups/resync/resync-topic-keys.ts.
import fs from 'node:fs';
import { createLogger } from '../lib/log.ts';
import { defineCommand, runIfMain } from '../lib/cli/command.ts';
import { EXIT, OpsError } from '../lib/cli/exit-codes.ts';
import { UsageError } from '../lib/cli/flags.ts';
import { C2_CONNECTION_FLAGS, readFlagFile } from '../lib/cli/shared-flags.ts';
import { REPO_ROOT } from '../lib/repo-root.ts';
import { createResyncC2 } from '../backups/resync/c2-resync-adapter.ts';
import { createSealedTopicKeyProbe } from '../backups/resync/sealed-topic-key-probe.ts';
import { loadInventory, InventoryError } from '../lib/fleet-inventory/fleet-inventory.ts';
import { resyncTopicKeys, followUpResync, expectedCountsFromDocument, ResyncRefusedError, type ExpectedCounts, type ResyncOptions } from '../backups/resync/resync-topic-keys.ts';
import { renderFollowUpUnit } from '../backups/resync/follow-up-unit.ts';
import type { WatchBrokerPresenceOptions } from '../lib/broker-presence/broker-presence.ts';
import path from 'node:path';
import { writeResyncReport, renderResyncMarkdown } from '../backups/resync/resync-report.ts';
import { JournalError } from '../backups/resync/resync-journal.ts';

const C2 = 'C2 connection';
const BROKER = 'Device delivery (broker presence)';
export const command = defineCommand({
  name: 'resync',
  summary: 'give every topic a fresh key after C2\'s database was restored, and repair clients and links',
  description: `After restoring C2's database from a backup, give every topic a fresh key through C2's API
(NewTopic on each existing topic: C2 pushes the new key to every linked device), re-create the
clients, topics and links the inventory lists but the restored database lacks, and list devices
a resync alone cannot bring back. Re-run with the same --journal to resume: no topic is rotated twice.

With --broker-url and --inventory it watches the broker's connect/disconnect notices and knows which
devices got their keys while connected (C2 sends each key as a RETAINED command on the device's one
command topic: a device offline during the resync sees only the last one). --follow DURATION then
serves the others as they connect; --follow-up JOURNAL --follow 24h does that later, rotating nothing
(--print-follow-up-unit prints a systemd unit for it). Exit 11 when devices remain unserved.`,
  flags: {
    ...C2_CONNECTION_FLAGS,
    'automation-engine-paused': { type: 'boolean', help: 'confirm the automation engine is paused (required: it rotates keys on its own)' },
    'expected-counts': { type: 'string', placeholder: 'FILE', help: 'backup manifest (manifest.json) or drill report of the restored set: C2 must show its client and topic counts before anything changes' },
    'expect-clients': { type: 'integer', min: 0, placeholder: 'N', help: 'the expected client count, by hand (with --expect-topics)' },
    'expect-topics': { type: 'integer', min: 0, placeholder: 'N', help: 'the expected topic count, by hand (with --expect-clients)' },
    journal: { type: 'string', placeholder: 'FILE', help: 'journal of this resync (required unless --follow-up); re-run with the same file to resume; a finished journal is refused' },
    'broker-url': { type: 'string', placeholder: 'URL', group: BROKER, help: 'the devices\' broker, mqtt://host:port (no credentials in the URL): watch who is connected' },
    'broker-flavor': { type: 'string', choices: ['mosquitto', 'emqx'], default: 'mosquitto', group: BROKER, help: 'mosquitto: $SYS/broker/log notices (log_dest topic); emqx: $SYS/brokers/+/clients/+ events' },
    'broker-username': { type: 'string', placeholder: 'NAME', group: BROKER, help: 'broker user allowed to read $SYS topics' },
    'broker-password-file': { type: 'string', placeholder: 'FILE', group: BROKER, help: 'file holding that user\'s password' },
    follow: { type: 'duration', min: 1, placeholder: 'DURATION', group: BROKER, help: 'after the main pass, re-send keys to each device as it connects, until all are served or DURATION ends (e.g. 30m)' },
    'follow-up': { type: 'string', placeholder: 'JOURNAL', group: BROKER, help: 'serve the devices a finished resync left unserved (with --follow); rotates nothing' },
    'print-follow-up-unit': { type: 'boolean', group: BROKER, help: 'print a systemd unit running --follow-up for this journal (with --journal or --follow-up, and --follow); change nothing' },
    inventory: { type: 'string', placeholder: 'FILE', help: 'fleet inventory (YAML, lib/fleet-inventory/inventory-schema.json)' },
    'database-url': { type: 'string', placeholder: 'URL', help: 'restored database (read-only): settles topics in flight when a run died' },
    concurrency: { type: 'integer', min: 1, placeholder: 'N', help: 'NewTopic requests in flight (default 4: C2 keeps only two idle DB connections)' },
    attempts: { type: 'integer', min: 1, placeholder: 'N', help: 'tries per topic for transient errors, with backoff (default 5)' },
    'dry-run': { type: 'boolean', help: 'list what would happen; change nothing' },
    report: { type: 'string', placeholder: 'FILE', help: 'JSON report (FILE.md gets a Markdown summary)' },
    'metrics-file': { type: 'string', placeholder: 'FILE', help: 'Prometheus textfile-collector output' },
  },
  exitCodes: ['refused', 'topicsFailed', 'devicesUnserved'],
  handlesSignals: true,
  async run({ flags }, ctx) {
    const log = createLogger({ component: 'resync' });
    try {
      const { c2, api } = createResyncC2({
        baseUrl: flags['c2-url'],
        ca: readFlagFile('c2-ca', flags['c2-ca']),
        cert: readFlagFile('c2-cert', flags['c2-cert']),
        key: readFlagFile('c2-key', flags['c2-key']),
        logger: log.child({ component: 'c2-api' }),
      });
      const { expected, backupTakenAt } = expectedFromFlags(flags);
      const broker = brokerOptions(flags);
      const journal = journalFromFlags(flags, !!broker);
      if (flags['print-follow-up-unit']) {
        if (!flags.follow) throw new UsageError('--print-follow-up-unit needs --follow DURATION for the unit (e.g. --follow 24h)');
        ctx.stdout(followUpUnit(flags, path.resolve(journal)));
        return EXIT.ok;
      }
      ctx.signal.addEventListener('abort', () => log.warn('resync.interrupt', { reason: String(ctx.signal.reason), note: 'finishing requests in flight; the journal lets a re-run resume' }));
      const common: Omit<ResyncOptions, 'journalFile'> = {
        c2, automationEnginePaused: flags['automation-engine-paused'] || !!flags['follow-up'], backupTakenAt,
        inventory: flags.inventory ? loadInventory(flags.inventory) : undefined,
        concurrency: flags.concurrency, attempts: flags.attempts,
        probe: flags['database-url'] ? createSealedTopicKeyProbe(flags['database-url']) : undefined,
        signal: ctx.signal, logger: log, broker,
        reprovisionHint: provisioningCommandExists() ? 're-provision it: e4ops provision (see e4ops provision --help)' : undefined,
      };
      const report = flags['follow-up']
        ? await followUpResync({ ...common, journalFile: journal, followMs: flags.follow! * 1000 })
        : await resyncTopicKeys({ ...common, journalFile: journal, expected, dryRun: flags['dry-run'], followMs: flags.follow ? flags.follow * 1000 : undefined });
      api.close();
      writeResyncReport(report, flags.report, flags['metrics-file']);
      ctx.stdout(renderResyncMarkdown(report));
      if (ctx.signal.aborted) return EXIT.interrupted;
      if (report.topics.failed.length) return EXIT.topicsFailed;
      if (!report.ok) return EXIT.topicsFailed;
      return report.devices?.notServed.length ? EXIT.devicesUnserved : EXIT.ok;
    } catch (e) {
      const msg = (e as Error).message;
      if (e instanceof ResyncRefusedError) { log.error('resync.refused', { error: msg }); throw new OpsError('refused', msg); }
      if (e instanceof InventoryError || e instanceof JournalError) { log.error('resync.config', { error: msg }); throw new UsageError(msg); }
      if (e instanceof UsageError) throw e;
      log.error('resync.failed', { error: msg });
      throw e;
    }
  },
});

type Flags = Parameters<NonNullable<typeof command.run>>[0]['flags'];

/**
 * Whether the dispatcher registers a `provision` command (read from its source: importing it here
 * would be an import cycle with its top-level await).
 */
function provisioningCommandExists(): boolean {
  try {
    return /^\s*['"]?provision['"]?\s*:/m.test(fs.readFileSync(new URL('./e4ops.ts', import.meta.url), 'utf8'));
  } catch {
    return false;
  }
}

function expectedFromFlags(flags: Flags): { expected?: ExpectedCounts; backupTakenAt?: Date } {
  if (flags['expected-counts']) {
    const file = flags['expected-counts'];
    let doc: unknown;
    try { doc = JSON.parse(fs.readFileSync(file, 'utf8')); } catch (e) { throw new UsageError(`--expected-counts ${file}: ${(e as Error).message}`); }
    return expectedCountsFromDocument(doc, file);
  }
  if (flags['expect-clients'] === undefined && flags['expect-topics'] === undefined) return {};
  const clients = flags['expect-clients'];
  const topics = flags['expect-topics'];
  if (clients === undefined || topics === undefined) throw new UsageError('--expect-clients and --expect-topics go together: give both');
  return { expected: { clients, topics, source: '--expect-clients/--expect-topics' } };
}

/** The journal to work on, once the main-pass / follow-up flags make sense together. */
function journalFromFlags(flags: Flags, hasBroker: boolean): string {
  const journal = flags['follow-up'] ?? flags.journal;
  if (!journal) throw new UsageError('--journal FILE is required (or --follow-up JOURNAL to serve a finished resync\'s stragglers)');
  if (flags['follow-up'] && flags.journal) throw new UsageError('--follow-up JOURNAL names the journal: leave out --journal');
  if ((flags.follow || flags['follow-up']) && !(hasBroker && flags.inventory)) throw new UsageError(`--${flags['follow-up'] ? 'follow-up' : 'follow'} needs --broker-url and --inventory: it waits for the inventory's devices to connect`);
  if (flags['follow-up'] && !flags.follow) throw new UsageError('--follow-up needs --follow DURATION (how long to wait for the devices, e.g. 24h)');
  return journal;
}

function brokerOptions(flags: Flags): WatchBrokerPresenceOptions | undefined {
  const url = flags['broker-url'];
  if (!url) {
    for (const f of ['broker-username', 'broker-password-file'] as const) if (flags[f]) throw new UsageError(`--${f} needs --broker-url`);
    return undefined;
  }
  let u: URL;
  try { u = new URL(url); } catch { throw new UsageError(`--broker-url ${url}: not a URL; give mqtt://host:port`); }
  if (u.protocol !== 'mqtt:' && u.protocol !== 'tcp:') throw new UsageError(`--broker-url ${url}: give mqtt://host:port (the presence watch speaks plain MQTT)`);
  if (u.username || u.password) throw new UsageError('--broker-url must not hold credentials (they would show in ps and in printed units): use --broker-username and --broker-password-file');
  const password = flags['broker-password-file'] ? readFlagFile('broker-password-file', flags['broker-password-file']).toString('utf8').trim() : undefined;
  return { url: `mqtt://${u.host}`, flavor: flags['broker-flavor'] as 'mosquitto' | 'emqx', username: flags['broker-username'], password };
}

/** The follow-up unit's command line: this invocation's connection flags, as absolute paths. */
function followUpUnit(flags: Flags, journal: string): string {
  const abs = (f: string | undefined) => (f ? path.resolve(f) : undefined);
  const pairs: [string, string | undefined][] = [
    ['--c2-url', flags['c2-url']], ['--c2-ca', abs(flags['c2-ca'])], ['--c2-cert', abs(flags['c2-cert'])], ['--c2-key', abs(flags['c2-key'])],
    ['--inventory', abs(flags.inventory)], ['--broker-url', flags['broker-url']], ['--broker-flavor', flags['broker-flavor']],
    ['--broker-username', flags['broker-username']], ['--broker-password-file', abs(flags['broker-password-file'])],
    ['--report', abs(flags.report)], ['--metrics-file', abs(flags['metrics-file'])],
  ];
  const args = pairs.filter((p): p is [string, string] => !!p[1]).flat();
  const e4ops = path.join(REPO_ROOT, 'bin', 'e4ops');
  return renderFollowUpUnit({ e4ops, args, journal, follow: `${flags.follow}s` });
}

await runIfMain(import.meta.url, command);
