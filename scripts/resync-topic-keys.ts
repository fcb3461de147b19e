#!/usr/bin/env -S npx tsx
// `e4ops resync`: topic-key resync after C2's database was restored from a backup: rotates every topic
// key through C2's API (NewTopic), re-creates clients/topics/links the inventory lists but the database
// lacks, and lists devices at risk. Library: backups/resync/resync-topic-keys.ts.
import fs from 'node:fs';
import { createLogger } from '../lib/log.ts';
import { defineCommand, runIfMain } from '../lib/cli/command.ts';
import { EXIT, OpsError } from '../lib/cli/exit-codes.ts';
import { UsageError } from '../lib/cli/flags.ts';
import { createResyncC2 } from '../backups/resync/c2-resync-adapter.ts';
import { createSealedTopicKeyProbe } from '../backups/resync/sealed-topic-key-probe.ts';
import { loadInventory, InventoryError } from '../backups/resync/fleet-inventory.ts';
import { resyncTopicKeys, expectedCountsFromDocument, ResyncRefusedError, type ExpectedCounts } from '../backups/resync/resync-topic-keys.ts';
import { writeResyncReport, renderResyncMarkdown } from '../backups/resync/resync-report.ts';
import { JournalError } from '../backups/resync/resync-journal.ts';

const C2 = 'C2 connection';
export const command = defineCommand({
  name: 'resync',
  summary: 'give every topic a fresh key after C2\'s database was restored, and repair clients and links',
  description: `After restoring C2's database from a backup, give every topic a fresh key through C2's API
(NewTopic on each existing topic: C2 pushes the new key to every linked device), re-create the
clients, topics and links the inventory lists but the restored database lacks, and list devices
a resync alone cannot bring back. Re-run with the same --journal to resume: no topic is rotated twice.`,
  flags: {
    'c2-url': { type: 'string', required: true, placeholder: 'URL', group: C2, help: "C2's HTTPS API (the restored C2, e.g. https://10.0.0.5:8888)" },
    'c2-ca': { type: 'string', placeholder: 'FILE', group: C2, help: "CA certificate that signed C2's http-cert (PEM)" },
    'c2-cert': { type: 'string', placeholder: 'FILE', group: C2, help: 'client certificate, if a proxy in front of C2 wants one' },
    'c2-key': { type: 'string', placeholder: 'FILE', group: C2, help: 'key of --c2-cert' },
    'automation-engine-paused': { type: 'boolean', help: 'confirm the automation engine is paused (required: it rotates keys on its own)' },
    'expected-counts': { type: 'string', placeholder: 'FILE', help: 'backup manifest (manifest.json) or drill report of the restored set: C2 must show its client and topic counts before anything changes' },
    'expect-clients': { type: 'integer', min: 0, placeholder: 'N', help: 'the expected client count, by hand (with --expect-topics)' },
    'expect-topics': { type: 'integer', min: 0, placeholder: 'N', help: 'the expected topic count, by hand (with --expect-clients)' },
    journal: { type: 'string', required: true, placeholder: 'FILE', help: 'journal of this resync; re-run with the same file to resume; a finished journal is refused' },
    inventory: { type: 'string', placeholder: 'FILE', help: 'fleet inventory (YAML, backups/resync/inventory-schema.json)' },
    'database-url': { type: 'string', placeholder: 'URL', help: 'restored database (read-only): settles topics in flight when a run died' },
    concurrency: { type: 'integer', min: 1, placeholder: 'N', help: 'NewTopic requests in flight (default 4: C2 keeps only two idle DB connections)' },
    attempts: { type: 'integer', min: 1, placeholder: 'N', help: 'tries per topic for transient errors, with backoff (default 5)' },
    'dry-run': { type: 'boolean', help: 'list what would happen; change nothing' },
    report: { type: 'string', placeholder: 'FILE', help: 'JSON report (FILE.md gets a Markdown summary)' },
    'metrics-file': { type: 'string', placeholder: 'FILE', help: 'Prometheus textfile-collector output' },
  },
  exitCodes: ['refused', 'topicsFailed'],
  handlesSignals: true,
  async run({ flags }, ctx) {
    const log = createLogger({ component: 'resync' });
    const readFile = (flag: string, f: string) => {
      try { return fs.readFileSync(f); } catch (e) { throw new UsageError(`--${flag} ${f}: ${(e as Error).message}`); }
    };
    try {
      const { c2, api } = createResyncC2({
        baseUrl: flags['c2-url'],
        ca: flags['c2-ca'] ? readFile('c2-ca', flags['c2-ca']) : undefined,
        cert: flags['c2-cert'] ? readFile('c2-cert', flags['c2-cert']) : undefined,
        key: flags['c2-key'] ? readFile('c2-key', flags['c2-key']) : undefined,
        logger: log.child({ component: 'c2-api' }),
      });
      let expected: ExpectedCounts | undefined;
      let backupTakenAt: Date | undefined;
      if (flags['expected-counts']) {
        const file = flags['expected-counts'];
        let doc: unknown;
        try { doc = JSON.parse(fs.readFileSync(file, 'utf8')); } catch (e) { throw new UsageError(`--expected-counts ${file}: ${(e as Error).message}`); }
        ({ expected, backupTakenAt } = expectedCountsFromDocument(doc, file));
      } else if (flags['expect-clients'] !== undefined || flags['expect-topics'] !== undefined) {
        const clients = flags['expect-clients'];
        const topics = flags['expect-topics'];
        if (clients === undefined || topics === undefined) throw new UsageError('--expect-clients and --expect-topics go together: give both');
        expected = { clients, topics, source: '--expect-clients/--expect-topics' };
      }
      ctx.signal.addEventListener('abort', () => log.warn('resync.interrupt', { reason: String(ctx.signal.reason), note: 'finishing requests in flight; the journal lets a re-run resume' }));
      const report = await resyncTopicKeys({
        c2,
        journalFile: flags.journal,
        automationEnginePaused: flags['automation-engine-paused'],
        expected,
        backupTakenAt,
        inventory: flags.inventory ? loadInventory(flags.inventory) : undefined,
        dryRun: flags['dry-run'],
        concurrency: flags.concurrency,
        attempts: flags.attempts,
        probe: flags['database-url'] ? createSealedTopicKeyProbe(flags['database-url']) : undefined,
        signal: ctx.signal,
        logger: log,
      });
      api.close();
      writeResyncReport(report, flags.report, flags['metrics-file']);
      ctx.stdout(renderResyncMarkdown(report));
      if (ctx.signal.aborted) return EXIT.interrupted;
      if (report.topics.failed.length) return EXIT.topicsFailed;
      return report.ok ? EXIT.ok : EXIT.topicsFailed;
    } catch (e) {
      const msg = (e as Error).message;
      if (e instanceof ResyncRefusedError) { log.error('resync.refused', { error: msg }); throw new OpsError('refused', msg); }
      if (e instanceof InventoryError || e instanceof JournalError) { log.error('resync.config', { error: msg }); throw new UsageError(msg); }
      log.error('resync.failed', { error: msg });
      throw e;
    }
  },
});

await runIfMain(import.meta.url, command);
