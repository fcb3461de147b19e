#!/usr/bin/env -S npx tsx
// Topic-key resync after C2's database was restored from a backup: rotates every topic key through
// C2's API (NewTopic), re-creates clients/topics/links the inventory lists but the database lacks,
// and lists devices at risk. Library: backups/resync/resync-topic-keys.ts.
import fs from 'node:fs';
import { parseArgv } from 'zx';
import { createLogger } from '../lib/log.ts';
import { createResyncC2 } from '../backups/resync/c2-resync-adapter.ts';
import { createSealedTopicKeyProbe } from '../backups/resync/sealed-topic-key-probe.ts';
import { loadInventory, InventoryError } from '../backups/resync/fleet-inventory.ts';
import { resyncTopicKeys, expectedCountsFromDocument, ResyncRefusedError, type ExpectedCounts } from '../backups/resync/resync-topic-keys.ts';
import { writeResyncReport, renderResyncMarkdown } from '../backups/resync/resync-report.ts';
import { JournalError } from '../backups/resync/resync-journal.ts';

export const RESYNC_EXIT = { ok: 0, internal: 1, config: 2, refused: 3, topicsFailed: 4, interrupted: 5 } as const;

const HELP = `Usage: npx tsx scripts/resync-topic-keys.ts --c2-url https://HOST:8888 --c2-ca CA.pem --journal FILE
         --automation-engine-paused (--expected-counts MANIFEST_OR_DRILL_REPORT.json | --expect-clients N --expect-topics N)
         [--inventory inventory.yaml] [--database-url URL] [--dry-run] [--report FILE.json] [--metrics-file FILE.prom]

After restoring C2's database from a backup, give every topic a fresh key through C2's API
(NewTopic on each existing topic: C2 pushes the new key to every linked device), re-create the
clients, topics and links the inventory lists but the restored database lacks, and list devices
a resync alone cannot bring back.

  --c2-url URL                C2's HTTPS API (the restored C2, e.g. https://10.0.0.5:8888)
  --c2-ca FILE                CA certificate that signed C2's http-cert (PEM)
  --c2-cert FILE --c2-key F   client certificate, if a proxy in front of C2 wants one
  --automation-engine-paused  confirm the automation engine is paused (required: it rotates keys on its own)
  --expected-counts FILE      backup manifest (manifest.json) or restore-drill report of the restored set:
                              C2 must show its client and topic counts before anything changes
  --expect-clients N --expect-topics N   the same, by hand
  --journal FILE              journal of this resync; re-run with the same file to resume after an
                              interruption (no topic is rotated twice); a finished journal is refused
  --inventory FILE            fleet inventory (YAML, backups/resync/inventory-schema.json)
  --database-url URL          restored database (read-only): settles topics in flight when a run died
  --concurrency N             NewTopic requests in flight (default 4: C2 keeps only two idle DB connections)
  --attempts N                tries per topic for transient errors, with backoff (default 5)
  --dry-run                   list what would happen; change nothing
  --report FILE               JSON report (FILE.md gets a Markdown summary)
  --metrics-file FILE         Prometheus textfile-collector output
Exit codes: 0 ok, 1 internal, 2 bad flags/files, 3 refused (not paused, wrong C2, finished journal),
4 some topics failed (re-run with the same --journal), 5 interrupted (re-run with the same --journal).`;

async function main(): Promise<number> {
  const argv = parseArgv(process.argv.slice(2), {
    boolean: ['help', 'automation-engine-paused', 'dry-run'],
    string: ['c2-url', 'c2-ca', 'c2-cert', 'c2-key', 'expected-counts', 'journal', 'inventory', 'database-url', 'report', 'metrics-file'],
  });
  if (argv.help) { process.stdout.write(HELP + '\n'); return RESYNC_EXIT.ok; }
  const log = createLogger({ component: 'resync' });
  const need = (flag: string) => {
    const v = argv[flag];
    if (v === undefined || v === '') throw new InventoryError(`--${flag} is required (see --help)`);
    return String(v);
  };
  // A whole number flag, or the default when absent; anything else is refused naming the flag.
  const wholeNumber = (flag: string, min: number): number | undefined => {
    const v = argv[flag];
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new InventoryError(`--${flag} must be a whole number >= ${min}, not "${v}"`);
    return n;
  };
  const readFile = (flag: string) => {
    const f = need(flag);
    try { return fs.readFileSync(f); } catch (e) { throw new InventoryError(`--${flag} ${f}: ${(e as Error).message}`); }
  };
  try {
    const baseUrl = need('c2-url');
    const { c2, api } = createResyncC2({
      baseUrl,
      ca: argv['c2-ca'] ? readFile('c2-ca') : undefined,
      cert: argv['c2-cert'] ? readFile('c2-cert') : undefined,
      key: argv['c2-key'] ? readFile('c2-key') : undefined,
      logger: log.child({ component: 'c2-api' }),
    });
    let expected: ExpectedCounts | undefined;
    let backupTakenAt: Date | undefined;
    if (argv['expected-counts']) {
      const file = String(argv['expected-counts']);
      let doc: unknown;
      try { doc = JSON.parse(fs.readFileSync(file, 'utf8')); } catch (e) { throw new InventoryError(`--expected-counts ${file}: ${(e as Error).message}`); }
      ({ expected, backupTakenAt } = expectedCountsFromDocument(doc, file));
    } else if (argv['expect-clients'] !== undefined || argv['expect-topics'] !== undefined) {
      const clients = wholeNumber('expect-clients', 0);
      const topics = wholeNumber('expect-topics', 0);
      if (clients === undefined || topics === undefined) throw new InventoryError('--expect-clients and --expect-topics go together: give both');
      expected = { clients, topics, source: '--expect-clients/--expect-topics' };
    }
    const ac = new AbortController();
    let signals = 0;
    const onSignal = (sig: NodeJS.Signals) => {
      if (++signals > 1) process.exit(RESYNC_EXIT.interrupted);
      log.warn('resync.interrupt', { signal: sig, note: 'finishing requests in flight; the journal lets a re-run resume' });
      ac.abort(new Error(`interrupted by ${sig}`));
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    const report = await resyncTopicKeys({
      c2,
      journalFile: need('journal'),
      automationEnginePaused: !!argv['automation-engine-paused'],
      expected,
      backupTakenAt,
      inventory: argv.inventory ? loadInventory(String(argv.inventory)) : undefined,
      dryRun: !!argv['dry-run'],
      concurrency: wholeNumber('concurrency', 1),
      attempts: wholeNumber('attempts', 1),
      probe: argv['database-url'] ? createSealedTopicKeyProbe(String(argv['database-url'])) : undefined,
      signal: ac.signal,
      logger: log,
    });
    api.close();
    writeResyncReport(report, argv.report ? String(argv.report) : undefined, argv['metrics-file'] ? String(argv['metrics-file']) : undefined);
    process.stdout.write(renderResyncMarkdown(report));
    if (ac.signal.aborted) return RESYNC_EXIT.interrupted;
    if (report.topics.failed.length) return RESYNC_EXIT.topicsFailed;
    return report.ok ? RESYNC_EXIT.ok : RESYNC_EXIT.topicsFailed;
  } catch (e) {
    const msg = (e as Error).message;
    if (e instanceof ResyncRefusedError) { log.error('resync.refused', { error: msg }); process.stderr.write(`resync: ${msg}\n`); return RESYNC_EXIT.refused; }
    if (e instanceof InventoryError || e instanceof JournalError) { log.error('resync.config', { error: msg }); process.stderr.write(`resync: ${msg}\n`); return RESYNC_EXIT.config; }
    log.error('resync.failed', { error: msg });
    process.stderr.write(`resync failed: ${msg}\n`);
    return RESYNC_EXIT.internal;
  }
}

process.exitCode = await main();
