#!/usr/bin/env -S npx tsx
// Dashboards and alerting: install Elasticsearch templates/ILM and Kibana saved objects
// (idempotent, --dry-run), and render the Prometheus rules / Kibana NDJSON / template bodies.
// Library: dashboards/install.ts, dashboards/prometheus/alert-rules.ts, dashboards/kibana/saved-objects.ts.
import fs from 'node:fs';
import { parseArgv } from 'zx';
import { Client } from '@elastic/elasticsearch';
import { createLogger, redactUrl } from '../lib/log.ts';
import { installDashboards } from '../dashboards/install.ts';
import { buildElasticsearchAssets, type ElasticsearchAssetOptions } from '../dashboards/elasticsearch/index-templates.ts';
import { buildSavedObjects, parseSavedObjectsNdjson, renderSavedObjectsNdjson } from '../dashboards/kibana/saved-objects.ts';
import { renderPrometheusRules, type RuleOptions } from '../dashboards/prometheus/alert-rules.ts';

const HELP = `Usage: npx tsx scripts/dashboards.ts COMMAND [flags]

Commands
  install                 put index templates + ILM policies into Elasticsearch and import the Kibana
                          saved objects; reads first and writes only what differs (a re-run changes nothing)
    --es-url URL          Elasticsearch 7.17 (env E4OPS_ES_URL); credentials may be in the URL
    --es-ca FILE          CA certificate (PEM) for an https Elasticsearch
    --kibana-url URL      Kibana 7.17 (env E4OPS_KIBANA_URL); credentials in the URL go into a Basic header
                          (for https with a private CA set NODE_EXTRA_CA_CERTS=FILE)
    --kibana-space ID     Kibana space (default space when absent)
    --saved-objects FILE  import this NDJSON instead of the built-in objects
    --dry-run             report what would change; write nothing
  render-rules            print the Prometheus rules file (what dashboards/prometheus/e4-rules.yml holds)
    --runbook-base-url U  base of runbook_url (env E4OPS_RUNBOOK_BASE_URL; default dashboards/runbooks)
    --backup-max-age-hours N  --drill-max-age-days N  --cert-expiry-days N
  render-saved-objects    print the Kibana NDJSON
  render-templates        print the Elasticsearch request bodies (JSON)

Index/retention flags (install, render-saved-objects, render-templates):
  --message-index NAME (C2's es-message-logging-index, default messages)  --c2-logs-index-prefix P
  --ops-logs-alias A  --messages-retention-days N  --logs-retention-days N  --ops-logs-retention-days N
  --rollover-max-size 10gb  --rollover-max-age 30d
  --out FILE              (render-*) write to FILE instead of stdout

Exit codes: 0 ok, 1 failure (Elasticsearch/Kibana error), 2 bad command or flags.`;

class UsageError extends Error {}

function num(argv: Record<string, unknown>, flag: string): number | undefined {
  const v = argv[flag];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`--${flag} ${String(v)}: not a positive number`);
  return n;
}

function str(argv: Record<string, unknown>, flag: string, env?: string): string | undefined {
  const v = argv[flag] ?? (env ? process.env[env] : undefined);
  return v === undefined || v === '' ? undefined : String(v);
}

function assetOptions(argv: Record<string, unknown>): ElasticsearchAssetOptions {
  const o: ElasticsearchAssetOptions = {
    messageIndex: str(argv, 'message-index'),
    c2LogsIndexPrefix: str(argv, 'c2-logs-index-prefix'),
    opsLogsAlias: str(argv, 'ops-logs-alias'),
    messagesRetentionDays: num(argv, 'messages-retention-days'),
    logsRetentionDays: num(argv, 'logs-retention-days'),
    opsLogsRetentionDays: num(argv, 'ops-logs-retention-days'),
    rolloverMaxSize: str(argv, 'rollover-max-size'),
    rolloverMaxAge: str(argv, 'rollover-max-age'),
  };
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
}

function output(argv: Record<string, unknown>, text: string): void {
  const out = str(argv, 'out');
  if (out) fs.writeFileSync(out, text);
  else process.stdout.write(text);
}

async function main(): Promise<number> {
  const argv = parseArgv(process.argv.slice(2), {
    boolean: ['help', 'dry-run'],
    string: ['es-url', 'es-ca', 'kibana-url', 'kibana-space', 'saved-objects', 'out', 'runbook-base-url', 'message-index',
      'c2-logs-index-prefix', 'ops-logs-alias', 'rollover-max-size', 'rollover-max-age'],
  });
  const command = argv._[0];
  if (argv.help || !command) { process.stdout.write(HELP + '\n'); return argv.help ? 0 : 2; }
  const log = createLogger({ component: 'dashboards' });

  switch (command) {
    case 'render-rules': {
      const o: RuleOptions = {
        runbookBaseUrl: str(argv, 'runbook-base-url', 'E4OPS_RUNBOOK_BASE_URL'),
        backupMaxAgeHours: num(argv, 'backup-max-age-hours'),
        drillMaxAgeDays: num(argv, 'drill-max-age-days'),
        certExpiryDays: num(argv, 'cert-expiry-days'),
      };
      output(argv, renderPrometheusRules(Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined))));
      return 0;
    }
    case 'render-saved-objects':
      output(argv, renderSavedObjectsNdjson(assetOptions(argv)));
      return 0;
    case 'render-templates':
      output(argv, JSON.stringify(buildElasticsearchAssets(assetOptions(argv)), null, 2) + '\n');
      return 0;
    case 'install': {
      const esUrl = str(argv, 'es-url', 'E4OPS_ES_URL');
      const kibanaUrl = str(argv, 'kibana-url', 'E4OPS_KIBANA_URL');
      if (!esUrl && !kibanaUrl) throw new UsageError('install: give --es-url and/or --kibana-url (or E4OPS_ES_URL / E4OPS_KIBANA_URL)');
      const options = assetOptions(argv);
      let savedObjects = buildSavedObjects(options);
      const soFile = str(argv, 'saved-objects');
      if (soFile) {
        let text: string;
        try { text = fs.readFileSync(soFile, 'utf8'); } catch (e) { throw new UsageError(`--saved-objects ${soFile}: ${(e as Error).message}`); }
        savedObjects = parseSavedObjectsNdjson(text, soFile);
      }
      const esCa = str(argv, 'es-ca');
      const es = esUrl ? new Client({ node: esUrl, ...(esCa ? { ssl: { ca: fs.readFileSync(esCa) } } : {}) }) : undefined;
      log.info('install_start', { es: esUrl ? redactUrl(esUrl) : undefined, kibana: kibanaUrl ? redactUrl(kibanaUrl) : undefined, dryRun: !!argv['dry-run'] });
      try {
        const report = await installDashboards({ es, kibanaUrl, kibanaSpace: str(argv, 'kibana-space'), savedObjects, assetOptions: options, dryRun: !!argv['dry-run'], logger: log });
        const changed = report.changes.filter((c) => c.action !== 'unchanged').length;
        process.stdout.write(JSON.stringify({ ...report, changed, unchanged: report.changes.length - changed }) + '\n');
      } finally {
        await es?.close();
      }
      return 0;
    }
    default:
      throw new UsageError(`unknown command "${command}"; one of install, render-rules, render-saved-objects, render-templates (see --help)`);
  }
}

main().then((code) => { process.exitCode = code; }, (e: Error) => {
  const usage = e instanceof UsageError || /^elasticsearch \w+:|line \d+: not a saved object/.test(e.message);
  process.stderr.write(`dashboards: ${redactUrl(e.message)}\n`);
  process.exitCode = usage ? 2 : 1;
});
