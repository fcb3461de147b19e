// The drill report: JSON validated against drill-report-schema.json, a Markdown summary, and the
// Prometheus textfile metrics the alert rules read (drill freshness, success, RTO, RPO).
import fs from 'node:fs';
import path from 'node:path';
import schema from './drill-report-schema.json' with { type: 'json' };
import { compileSchemaValidator } from '../../lib/json-schema.ts';
import { OPS_METRICS, writeTextfileMetrics, type MetricSample } from '../../lib/ops-metrics.ts';
import type { DrillCheck } from './restored-database-checks.ts';

export interface DrillReport {
  kind: 'restore-drill';
  ok: boolean;
  backupId: string | null;
  target: string;
  startedAt: string;
  finishedAt: string;
  backupTakenAt?: string;
  rtoSeconds: number;
  rpoSeconds: number | null;
  counts: { clients: number; topics: number; links: number };
  timings?: Record<string, number>;
  keysPerSecond?: number;
  orphanLinks?: { missingTopic: number; missingClient: number };
  certificates?: { file: string; subject: string; notAfter: string; daysLeft: number }[];
  resync?: {
    ok: boolean; rotated: number; failed: number; topicsCreatedAfterBackup: string[];
    devices: number; devicesReadingAllTopics: number; seconds?: number;
  };
  /** What was verified: a logical backup set (e4ops backup) or a pgBackRest restore (point in time). */
  source?: 'backup-set' | 'pgbackrest';
  pitr?: PitrDrillFacts;
  failedChecks?: string[];
  checks: DrillCheck[];
}

/** What a PITR drill restored: the point asked for and the point reached, against the archive's newest commit. */
export interface PitrDrillFacts {
  stanza: string;
  configFile: string;
  /** ISO time asked for, or "latest" (end of the archive), or "set" (end of --set). */
  target: string;
  /** pgBackRest set the restore started from. */
  set: string | null;
  /** Commit time of the last transaction recovered. */
  restoredPointInTime: string | null;
  /** For a time target: the first commit left out. */
  stoppedBeforeCommitAt?: string | null;
  /** Commit time of the newest transaction in the repository's archive. */
  newestCommitInArchive: string | null;
  /** Seconds of commits in the archive not recovered (0 when restoring latest). */
  rpoToArchiveSeconds: number | null;
  /** Seconds between the last recovered commit and the production database's clock (when it was reachable). */
  rpoToProductionSeconds?: number;
  restoreSeconds: number;
  recoverySeconds: number;
}

const drillReportSchema = compileSchemaValidator<DrillReport>(schema);

export function validateDrillReport(report: unknown): asserts report is DrillReport {
  const errs = drillReportSchema.errors(report);
  if (errs) {
    throw new Error(`drill report does not match backups/drill/drill-report-schema.json: ${errs}`);
  }
}

export function renderDrillMarkdown(r: DrillReport): string {
  const failed = r.checks.filter((c) => !c.ok);
  const lines = [
    `# Restore drill ${r.ok ? 'passed' : 'FAILED'}: ${r.backupId ?? '(no set)'}`,
    '',
    `- source: ${r.source === 'pgbackrest' ? 'pgBackRest (physical, point in time)' : 'logical backup set (e4ops backup)'}`,
    `- target: ${r.target}`,
    `- RTO ${r.rtoSeconds.toFixed(1)} s (drill start to verified restore); RPO ${r.rpoSeconds === null ? 'unknown' : `${(r.rpoSeconds / 3600).toFixed(2)} h`} (data committed since the set's snapshot, lost if production failed now)`,
    `- restored ${r.counts.clients} clients, ${r.counts.topics} topics, ${r.counts.links} links`,
  ];
  if (r.pitr) lines.push(`- point in time: asked ${r.pitr.target}, restored to the commit of ${r.pitr.restoredPointInTime ?? 'unknown'}; newest commit in the archive ${r.pitr.newestCommitInArchive ?? 'unknown'} (${r.pitr.rpoToArchiveSeconds ?? '?'} s not recovered${r.pitr.rpoToProductionSeconds !== undefined ? `; ${r.pitr.rpoToProductionSeconds.toFixed(1)} s behind production now` : ''})`);
  if (r.keysPerSecond && r.counts.clients + r.counts.topics >= 10_000) lines.push(`- keys verified at ${Math.round(r.keysPerSecond)} keys/s`);
  if (r.resync) lines.push(`- resync rehearsal: ${r.resync.rotated} topics rotated, ${r.resync.failed} failed; ${r.resync.devicesReadingAllTopics}/${r.resync.devices} simulated devices read every topic; topics created after the backup: ${r.resync.topicsCreatedAfterBackup.length ? r.resync.topicsCreatedAfterBackup.join(', ') : 'none'}`);
  if (failed.length) lines.push('', `**Failed checks:** ${failed.map((c) => c.name).join(', ')}`);
  lines.push('', '| check | ok | detail |', '|---|---|---|', ...r.checks.map((c) => `| ${c.name} | ${c.ok ? 'yes' : '**no**'} | ${c.detail.replace(/\|/g, '\\|').replace(/\n/g, ' ')} |`));
  return lines.join('\n') + '\n';
}

export function drillMetricSamples(r: DrillReport, previousSuccess?: number): MetricSample[] {
  const at = Date.parse(r.finishedAt) / 1000;
  const samples: MetricSample[] = [
    { name: OPS_METRICS.drillLastRunTimestamp, help: 'Unix time the last restore drill finished.', value: at },
    { name: OPS_METRICS.drillLastRunSuccess, help: '1 if the last restore drill passed every check, else 0.', value: r.ok ? 1 : 0 },
  ];
  const lastSuccess = r.ok ? at : previousSuccess;
  if (lastSuccess !== undefined) samples.push({ name: OPS_METRICS.drillLastSuccessTimestamp, help: 'Unix time of the last restore drill that passed.', value: lastSuccess });
  if (r.ok) {
    samples.push({ name: OPS_METRICS.drillRtoSeconds, help: 'Recovery time measured by the last passing drill (start to verified restore).', value: r.rtoSeconds });
    if (r.rpoSeconds !== null) samples.push({ name: OPS_METRICS.drillRpoSeconds, help: 'Seconds between the snapshot of the set the last passing drill restored and the drill (data a restore of it would lose).', value: r.rpoSeconds });
  }
  return samples;
}

/** Keep the last success time across failing runs: read it back from the previous metrics file. */
function previousSuccessFrom(file: string): number | undefined {
  try {
    const m = new RegExp(`^${OPS_METRICS.drillLastSuccessTimestamp}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(fs.readFileSync(file, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch { return undefined; }
}

export function writeDrillReport(r: DrillReport, file?: string, metricsFile?: string): void {
  validateDrillReport(r);
  if (file) {
    fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    fs.writeFileSync(file, JSON.stringify(r, null, 2) + '\n');
    fs.writeFileSync(file.replace(/\.json$/i, '') + '.md', renderDrillMarkdown(r));
  }
  if (metricsFile) writeTextfileMetrics(metricsFile, drillMetricSamples(r, previousSuccessFrom(metricsFile)));
}
