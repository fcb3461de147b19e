#!/usr/bin/env -S npx tsx
// `e4ops dashboards`: install Elasticsearch templates/ILM and Kibana saved objects (idempotent,
// --dry-run), and render the Prometheus rules / Kibana NDJSON / template bodies.
// Library: dashboards/install.ts, dashboards/prometheus/alert-rules.ts, dashboards/kibana/saved-objects.ts.
import fs from 'node:fs';
import { Client } from '@elastic/elasticsearch';
import { createLogger, redactUrl } from '../lib/log.ts';
import { defineCommand, runIfMain, type CommandContext } from '../lib/cli/command.ts';
import { EXIT } from '../lib/cli/exit-codes.ts';
import { UsageError, type FlagSpecs } from '../lib/cli/flags.ts';
import { installDashboards } from '../dashboards/install.ts';
import { buildElasticsearchAssets, type ElasticsearchAssetOptions } from '../dashboards/elasticsearch/index-templates.ts';
import { buildSavedObjects, parseSavedObjectsNdjson, renderSavedObjectsNdjson } from '../dashboards/kibana/saved-objects.ts';
import { renderPrometheusRules, type RuleOptions } from '../dashboards/prometheus/alert-rules.ts';

const INDICES = 'Indices and retention';
const INDEX_FLAGS = {
  'message-index': { type: 'string', placeholder: 'NAME', group: INDICES, help: "C2's es-message-logging-index (default messages)" },
  'c2-logs-index-prefix': { type: 'string', placeholder: 'PREFIX', group: INDICES, help: 'prefix of the C2 log indices' },
  'ops-logs-alias': { type: 'string', placeholder: 'ALIAS', group: INDICES, help: 'rollover alias of the e4ops operation logs' },
  'messages-retention-days': { type: 'integer', min: 1, placeholder: 'N', group: INDICES, help: 'ILM: delete message indices after N days (>= 3)' },
  'logs-retention-days': { type: 'integer', min: 1, placeholder: 'N', group: INDICES, help: 'ILM: delete C2 log indices after N days (>= 3)' },
  'ops-logs-retention-days': { type: 'integer', min: 1, placeholder: 'N', group: INDICES, help: 'ILM: delete operation-log indices after N days (>= 3)' },
  'rollover-max-size': { type: 'string', placeholder: 'SIZE', group: INDICES, help: 'ILM rollover size, e.g. 10gb' },
  'rollover-max-age': { type: 'string', placeholder: 'AGE', group: INDICES, help: 'ILM rollover age, e.g. 30d' },
} as const satisfies FlagSpecs;
const OUT_FLAG = { out: { type: 'string', placeholder: 'FILE', help: 'write to FILE instead of stdout' } } as const satisfies FlagSpecs;

type IndexFlags = { [K in keyof typeof INDEX_FLAGS]?: string | number };

const defined = <T extends object>(o: T): T => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
const env = (name: string) => process.env[name] || undefined;

/** The library checks index names and retention; its complaints are about the flags given, so exit 2. */
function withFlagErrorsAsUsage<T>(build: () => T): T {
  try { return build(); } catch (e) {
    if (/^elasticsearch \w+:|line \d+: not a saved object/.test((e as Error).message)) throw new UsageError((e as Error).message);
    throw e;
  }
}

function assetOptions(f: IndexFlags): ElasticsearchAssetOptions {
  const o = defined({
    messageIndex: f['message-index'], c2LogsIndexPrefix: f['c2-logs-index-prefix'], opsLogsAlias: f['ops-logs-alias'],
    messagesRetentionDays: f['messages-retention-days'], logsRetentionDays: f['logs-retention-days'], opsLogsRetentionDays: f['ops-logs-retention-days'],
    rolloverMaxSize: f['rollover-max-size'], rolloverMaxAge: f['rollover-max-age'],
  }) as ElasticsearchAssetOptions;
  withFlagErrorsAsUsage(() => buildElasticsearchAssets(o));
  return o;
}

function output(out: string | undefined, text: string, ctx: CommandContext): number {
  if (out) fs.writeFileSync(out, text);
  else ctx.stdout(text);
  return EXIT.ok;
}

const install = defineCommand({
  name: 'dashboards install',
  summary: 'put index templates + ILM policies into Elasticsearch and import the Kibana saved objects',
  description: 'Reads first and writes only what differs: a re-run changes nothing. Credentials may be in the URLs\n(they never reach the log); for an https Kibana with a private CA set NODE_EXTRA_CA_CERTS=FILE.',
  flags: {
    'es-url': { type: 'string', placeholder: 'URL', help: 'Elasticsearch 7.17 (env E4OPS_ES_URL); credentials may be in the URL' },
    'es-ca': { type: 'string', placeholder: 'FILE', help: 'CA certificate (PEM) for an https Elasticsearch' },
    'kibana-url': { type: 'string', placeholder: 'URL', help: 'Kibana 7.17 (env E4OPS_KIBANA_URL); credentials in the URL go into a Basic header' },
    'kibana-space': { type: 'string', placeholder: 'ID', help: 'Kibana space (the default space when absent)' },
    'saved-objects': { type: 'string', placeholder: 'FILE', help: 'import this NDJSON instead of the built-in objects' },
    'dry-run': { type: 'boolean', help: 'report what would change; write nothing' },
    ...INDEX_FLAGS,
  },
  examples: ['e4ops dashboards install --kibana-url http://127.0.0.1:5601 --dry-run'],
  async run({ flags }, ctx) {
    const esUrl = flags['es-url'] ?? env('E4OPS_ES_URL');
    const kibanaUrl = flags['kibana-url'] ?? env('E4OPS_KIBANA_URL');
    if (!esUrl && !kibanaUrl) throw new UsageError('install: give --es-url and/or --kibana-url (or E4OPS_ES_URL / E4OPS_KIBANA_URL)');
    const options = assetOptions(flags);
    let savedObjects = buildSavedObjects(options);
    const soFile = flags['saved-objects'];
    if (soFile) {
      let text: string;
      try { text = fs.readFileSync(soFile, 'utf8'); } catch (e) { throw new UsageError(`--saved-objects ${soFile}: ${(e as Error).message}`); }
      savedObjects = withFlagErrorsAsUsage(() => parseSavedObjectsNdjson(text, soFile));
    }
    const esCa = flags['es-ca'];
    let ca: Buffer | undefined;
    if (esCa) try { ca = fs.readFileSync(esCa); } catch (e) { throw new UsageError(`--es-ca ${esCa}: ${(e as Error).message}`); }
    const es = esUrl ? new Client({ node: esUrl, ...(ca ? { ssl: { ca } } : {}) }) : undefined;
    const log = createLogger({ component: 'dashboards' });
    log.info('install_start', { es: esUrl ? redactUrl(esUrl) : undefined, kibana: kibanaUrl ? redactUrl(kibanaUrl) : undefined, dryRun: flags['dry-run'] });
    try {
      const report = await installDashboards({ es, kibanaUrl, kibanaSpace: flags['kibana-space'], savedObjects, assetOptions: options, dryRun: flags['dry-run'], logger: log });
      const changed = report.changes.filter((c) => c.action !== 'unchanged').length;
      ctx.stdout(JSON.stringify({ ...report, changed, unchanged: report.changes.length - changed }) + '\n');
    } finally {
      await es?.close();
    }
    return EXIT.ok;
  },
});

const renderRules = defineCommand({
  name: 'dashboards render-rules',
  summary: 'print the Prometheus rules file (what dashboards/prometheus/e4-rules.yml holds)',
  flags: {
    'runbook-base-url': { type: 'string', placeholder: 'URL', help: 'base of each alert\'s runbook_url (env E4OPS_RUNBOOK_BASE_URL; default dashboards/runbooks)' },
    'backup-max-age-hours': { type: 'integer', min: 1, placeholder: 'N', help: 'E4BackupTooOld fires when the last successful backup is older (default 26)' },
    'drill-max-age-days': { type: 'integer', min: 1, placeholder: 'N', help: 'E4RestoreDrillTooOld fires when the last successful drill is older (default 8)' },
    'cert-expiry-days': { type: 'integer', min: 1, placeholder: 'N', help: 'alert when a certificate expires within N days (default 21)' },
    ...OUT_FLAG,
  },
  run({ flags }, ctx) {
    const o: RuleOptions = defined({
      runbookBaseUrl: flags['runbook-base-url'] ?? env('E4OPS_RUNBOOK_BASE_URL'),
      backupMaxAgeHours: flags['backup-max-age-hours'], drillMaxAgeDays: flags['drill-max-age-days'], certExpiryDays: flags['cert-expiry-days'],
    });
    return output(flags.out, renderPrometheusRules(o), ctx);
  },
});

const renderSavedObjects = defineCommand({
  name: 'dashboards render-saved-objects',
  summary: 'print the Kibana saved objects (NDJSON, what install imports)',
  flags: { ...INDEX_FLAGS, ...OUT_FLAG },
  run: ({ flags }, ctx) => output(flags.out, renderSavedObjectsNdjson(assetOptions(flags)), ctx),
});

const renderTemplates = defineCommand({
  name: 'dashboards render-templates',
  summary: 'print the Elasticsearch request bodies (index templates, ILM policies) as JSON',
  flags: { ...INDEX_FLAGS, ...OUT_FLAG },
  run: ({ flags }, ctx) => output(flags.out, JSON.stringify(buildElasticsearchAssets(assetOptions(flags)), null, 2) + '\n', ctx),
});

export const command = defineCommand({
  name: 'dashboards',
  summary: 'install Elasticsearch templates/ILM and Kibana dashboards; render the Prometheus alert rules',
  flags: {},
  subcommands: [install, renderRules, renderSavedObjects, renderTemplates],
  examples: [
    'e4ops dashboards install --kibana-url http://127.0.0.1:5601 --dry-run',
    'e4ops dashboards render-rules --runbook-base-url https://wiki.example/e4 --out /etc/prometheus/rules/e4.yml',
  ],
});

await runIfMain(import.meta.url, command);
