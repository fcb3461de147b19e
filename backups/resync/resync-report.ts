// The resync report: JSON validated against resync-report-schema.json, a Markdown summary for
// humans, and Prometheus textfile metrics for the alert rules.
import fs from 'node:fs';
import path from 'node:path';
import schema from './resync-report-schema.json' with { type: 'json' };
import { compileSchemaValidator } from '../../lib/json-schema.ts';
import { OPS_METRICS, writeTextfileMetrics, type MetricSample } from '../../lib/ops-metrics.ts';
import type { ResyncRun } from './resync-run.ts';
import { listDevicesAtRisk } from './devices-at-risk.ts';

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
  /** Presence-aware delivery: present when the resync watched the broker for inventory devices. */
  devices?: DeviceDeliveryReport;
}

export interface DeviceDeliveryReport {
  /** Inventory devices watched. */
  total: number;
  /** Served while connected (every current topic key). */
  served: number;
  notServed: { name: string; clientId: string; status: 'unserved' | 'unknown'; reason: string; lastSeen?: string }[];
  /** Clients re-registered with the inventory's identity key; keyChanged says whether C2 held another one. */
  identityReRegistered: { name: string; keyChanged: boolean | 'unknown' }[];
  follow?: { durationSeconds: number; reconnectsServed: number; commandsPerReconnect: number; msPerReconnectMedian: number };
}

/** The report of a run (any step may be the last: dry run, interrupted, finished, followed). */
export function buildResyncReport(run: ResyncRun): ResyncReport {
  const finished = run.now();
  const checks = [...run.checks];
  const { rotation } = run;
  if (!run.dryRun && !rotation.interrupted && !checks.some((c) => c.name === 'follow-up')) {
    checks.push({ name: 'all-topics-rotated', ok: rotation.failed.length === 0,
      detail: rotation.failed.length ? `${rotation.failed.length} topic(s) failed after retries: ${rotation.failed.slice(0, 20).map((f) => f.topic).join(', ')}; re-run with the same --journal to retry only those` : `${rotation.rotated + rotation.alreadyRotated} of ${run.existingTopics.length} topics rotated (${rotation.rotated} by this run)` });
  }
  const devices = deviceDeliveryReport(run);
  if (devices) {
    checks.push({ name: 'devices-served', ok: devices.notServed.length === 0,
      detail: devices.notServed.length ? `${devices.notServed.length} of ${devices.total} inventory device(s) not served while connected: ${devices.notServed.slice(0, 20).map((d) => d.name).join(', ')}; serve them with e4ops resync --follow-up ${run.opts.journalFile} --follow 24h` : `all ${devices.total} inventory devices got their current topic keys while connected` });
  }
  const atRisk = listDevicesAtRisk(run.opts.inventory, {
    backupTakenAt: run.opts.backupTakenAt, now: finished, recreated: run.recreatedClients,
    reRegistered: new Set(run.identityReRegistered.keys()), presenceWatched: !!run.delivery, reprovisionHint: run.opts.reprovisionHint,
  });
  for (const d of devices?.notServed ?? []) {
    if (!atRisk.some((a) => a.name === d.name)) atRisk.push({ name: d.name, reason: d.reason, action: `keep e4ops resync --follow-up ${run.opts.journalFile} --follow 24h running (it serves the device when it connects), or re-send its topic keys by hand once it is online` });
  }
  // facts for the operator, not failures of the resync (devices-served has its own exit code, 11)
  const soft = new Set(['inventory-topics-present', 'inventory-clients-present', 'devices-served', 'device-presence-watched']);
  const report: ResyncReport = {
    kind: 'topic-key-resync', ok: checks.every((c) => c.ok || soft.has(c.name)),
    resyncId: run.resyncId, dryRun: run.dryRun, resumed: run.resumed, journal: run.opts.journalFile,
    startedAt: run.started.toISOString(), finishedAt: finished.toISOString(),
    durationSeconds: (finished.getTime() - run.started.getTime()) / 1000,
    c2: run.c2.endpoint, counts: run.counts,
    topics: { total: run.existingTopics.length, rotated: rotation.rotated, alreadyRotated: rotation.alreadyRotated, created: run.createdTopics, failed: rotation.failed, inDoubtRotatedAgain: rotation.inDoubtRotatedAgain },
    clientsCreated: run.clientsCreated, linksCreated: run.linksCreated, atRisk, checks,
    ...(devices ? { devices } : {}),
  };
  if (rotation.wouldRotate) report.topics.wouldRotate = rotation.wouldRotate;
  return report;
}

function deviceDeliveryReport(run: ResyncRun): DeviceDeliveryReport | undefined {
  const d = run.delivery;
  if (!d) return undefined;
  const names = d.ledger.names();
  const notServed = d.ledger.notServed().map((name) => {
    const seen = d.ledger.lastSeen(name);
    return {
      name, clientId: d.ledger.spec(name)!.clientId, status: d.ledger.status(name) as 'unserved' | 'unknown', reason: d.ledger.reason(name),
      ...(seen !== undefined ? { lastSeen: new Date(seen).toISOString() } : {}),
    };
  });
  const f = d.follow;
  const ms = (f?.perReconnect ?? []).map((r) => r.ms).sort((a, b) => a - b);
  return {
    total: names.length, served: names.length - notServed.length, notServed,
    identityReRegistered: [...run.identityReRegistered].map(([name, keyChanged]) => ({ name, keyChanged })),
    ...(f ? { follow: {
      durationSeconds: +f.durationSeconds.toFixed(3), reconnectsServed: f.reconnectsServed,
      commandsPerReconnect: f.perReconnect.length ? +(f.perReconnect.reduce((a, r) => a + r.pushes, 0) / f.perReconnect.length).toFixed(1) : 0,
      msPerReconnectMedian: ms.length ? ms[Math.floor(ms.length / 2)] : 0,
    } } : {}),
  };
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
  if (r.devices) {
    const d = r.devices;
    lines.push('', '## Devices', '', `- ${d.served} of ${d.total} inventory devices served while connected; ${d.notServed.length} not`,
      `- ${d.identityReRegistered.length} re-registered with the inventory's identity key (${d.identityReRegistered.filter((x) => x.keyChanged === true).length} had changed after the backup)`);
    if (d.follow) lines.push(`- follow: ${d.follow.reconnectsServed} device(s) served as they connected, ${d.follow.commandsPerReconnect} commands each, median ${d.follow.msPerReconnectMedian} ms from connect to served`);
    if (d.notServed.length) {
      lines.push('', '| device | client id | status | last seen | why |', '|---|---|---|---|---|',
        ...d.notServed.slice(0, 200).map((x) => `| ${x.name} | ${x.clientId} | ${x.status} | ${x.lastSeen ?? 'not since the watch began'} | ${x.reason} |`));
    }
  }
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
