// The resync report: JSON validated against resync-report-schema.json, a Markdown summary for
// humans, and Prometheus textfile metrics for the alert rules.
import fs from 'node:fs';
import path from 'node:path';
import schema from './resync-report-schema.json' with { type: 'json' };
import { compileSchemaValidator } from '../../lib/json-schema.ts';
import { OPS_METRICS, writeTextfileMetrics, type MetricSample } from '../../lib/ops-metrics.ts';

export interface ReportCheck { name: string; ok: boolean; detail: string }

export interface ResyncReport {
  kind: 'topic-key-resync';
  ok: boolean;
  resyncId: string;
  dryRun: boolean;
  resumed?: boolean;
  journal?: string;
  startedAt: string;
  finishedAt: string;
  durationSeconds: number;
  c2: string;
  counts: { clients: number; topics: number; links?: number };
  topics: {
    total: number;
    rotated: number;
    alreadyRotated: number;
    created: string[];
    failed: { topic: string; error: string }[];
    inDoubtRotatedAgain: string[];
    wouldRotate?: string[];
  };
  clientsCreated: string[];
  linksCreated: number;
  atRisk: { name: string; reason: string; action: string }[];
  checks: ReportCheck[];
}

const resyncReportSchema = compileSchemaValidator<ResyncReport>(schema);

export function validateResyncReport(report: unknown): asserts report is ResyncReport {
  const errs = resyncReportSchema.errors(report);
  if (errs) {
    throw new Error(`resync report does not match backups/resync/resync-report-schema.json: ${errs}`);
  }
}

const cap = <T>(xs: T[], n = 20) => (xs.length > n ? [...xs.slice(0, n), `... and ${xs.length - n} more`] : xs);

export function renderResyncMarkdown(r: ResyncReport): string {
  const lines = [
    `# Topic-key resync ${r.ok ? 'succeeded' : 'FAILED'}${r.dryRun ? ' (dry run)' : ''}`,
    '',
    `- resync: \`${r.resyncId}\`${r.resumed ? ' (resumed from its journal)' : ''}`,
    `- C2: ${r.c2}`,
    `- ${r.counts.clients} clients, ${r.counts.topics} topics in the restored database`,
    r.dryRun
      ? `- would rotate ${r.topics.wouldRotate?.length ?? 0} topics`
      : `- rotated ${r.topics.rotated} topics in this run, ${r.topics.alreadyRotated} earlier; ${r.topics.failed.length} failed`,
    `- created after the backup and re-created now: ${r.topics.created.length} topics, ${r.clientsCreated.length} clients, ${r.linksCreated} links`,
    `- took ${r.durationSeconds.toFixed(1)} s`,
    '',
    '| check | ok | detail |',
    '|---|---|---|',
    ...r.checks.map((c) => `| ${c.name} | ${c.ok ? 'yes' : '**no**'} | ${c.detail.replace(/\|/g, '\\|')} |`),
  ];
  if (r.topics.created.length) lines.push('', '## Topics created after the backup', '', ...cap(r.topics.created).map((t) => `- ${t}`));
  if (r.topics.failed.length) lines.push('', '## Failed topics', '', ...cap(r.topics.failed.map((f) => `${f.topic}: ${f.error}`)).map((t) => `- ${t}`));
  if (r.atRisk.length) {
    lines.push('', '## Devices at risk', '', '| device | why | what to do |', '|---|---|---|',
      ...r.atRisk.slice(0, 200).map((d) => `| ${d.name} | ${d.reason} | ${d.action} |`));
    if (r.atRisk.length > 200) lines.push(`| ... | ${r.atRisk.length - 200} more in the JSON report | |`);
  }
  return lines.join('\n') + '\n';
}

export function resyncMetricSamples(r: ResyncReport): MetricSample[] {
  const at = Date.parse(r.finishedAt) / 1000;
  return [
    { name: OPS_METRICS.resyncLastRunTimestamp, help: 'Unix time the last topic-key resync finished.', value: at },
    { name: OPS_METRICS.resyncTopicsRotated, help: 'Topics the last topic-key resync rotated (this run plus resumed ones).', value: r.topics.rotated + r.topics.alreadyRotated },
    { name: OPS_METRICS.resyncTopicsFailed, help: 'Topics the last topic-key resync failed to rotate.', value: r.topics.failed.length },
  ];
}

/** Write report JSON (validated), FILE.md next to it, and optionally textfile metrics. */
export function writeResyncReport(r: ResyncReport, file?: string, metricsFile?: string): void {
  validateResyncReport(r);
  if (file) {
    fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    fs.writeFileSync(file, JSON.stringify(r, null, 2) + '\n');
    fs.writeFileSync(file.replace(/\.json$/i, '') + '.md', renderResyncMarkdown(r));
  }
  if (metricsFile && !r.dryRun) writeTextfileMetrics(metricsFile, resyncMetricSamples(r));
}
