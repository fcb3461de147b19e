// The Prometheus textfile-collector metrics that e4ops jobs write and that the alert rules in
// dashboards/prometheus read. Names live here only; rules, scripts and tests import them.
import fs from 'node:fs';
import path from 'node:path';

export const OPS_METRICS = {
  backupLastSuccessTimestamp: 'e4ops_backup_last_success_timestamp_seconds',
  backupLastRunTimestamp: 'e4ops_backup_last_run_timestamp_seconds',
  backupLastRunSuccess: 'e4ops_backup_last_run_success',
  backupDurationSeconds: 'e4ops_backup_duration_seconds',
  backupBytes: 'e4ops_backup_bytes',
  backupSets: 'e4ops_backup_sets',
  drillLastRunTimestamp: 'e4ops_restore_drill_last_run_timestamp_seconds',
  drillLastSuccessTimestamp: 'e4ops_restore_drill_last_success_timestamp_seconds',
  drillLastRunSuccess: 'e4ops_restore_drill_last_run_success',
  drillRtoSeconds: 'e4ops_restore_drill_rto_seconds',
  drillRpoSeconds: 'e4ops_restore_drill_rpo_seconds',
  resyncLastRunTimestamp: 'e4ops_resync_last_run_timestamp_seconds',
  resyncTopicsRotated: 'e4ops_resync_topics_rotated',
  resyncTopicsFailed: 'e4ops_resync_topics_failed',
  pitrLastArchivedWalTimestamp: 'e4ops_pitr_last_archived_wal_timestamp_seconds',
  pitrLastFullBackupTimestamp: 'e4ops_pitr_last_full_backup_timestamp_seconds',
  pitrLastDiffBackupTimestamp: 'e4ops_pitr_last_diff_backup_timestamp_seconds',
  pitrBackupSets: 'e4ops_pitr_backup_sets',
  pitrArchiveFailedCount: 'e4ops_pitr_archive_failed_count',
  pitrArchiveReadySegments: 'e4ops_pitr_archive_ready_segments',
  pitrRepositoryCheckSuccess: 'e4ops_pitr_repository_check_success',
  pitrRepositoryCheckTimestamp: 'e4ops_pitr_repository_check_timestamp_seconds',
} as const;

export type OpsMetricName = (typeof OPS_METRICS)[keyof typeof OPS_METRICS];

export interface MetricSample {
  name: OpsMetricName;
  help: string;
  type?: 'gauge' | 'counter';
  labels?: Record<string, string>;
  value: number;
}

const esc = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');

/** Render samples in the Prometheus text exposition format (HELP/TYPE once per name). */
export function renderTextfileMetrics(samples: MetricSample[]): string {
  const lines: string[] = [];
  const seen = new Set<string>();
  for (const s of samples) {
    if (!seen.has(s.name)) {
      seen.add(s.name);
      lines.push(`# HELP ${s.name} ${s.help}`, `# TYPE ${s.name} ${s.type ?? 'gauge'}`);
    }
    const labels = s.labels && Object.keys(s.labels).length
      ? `{${Object.entries(s.labels).map(([k, v]) => `${k}="${esc(v)}"`).join(',')}}`
      : '';
    lines.push(`${s.name}${labels} ${Number.isFinite(s.value) ? s.value : 'NaN'}`);
  }
  return lines.join('\n') + '\n';
}

/** Write atomically (temp file + rename) so node_exporter never reads half a file. */
export function writeTextfileMetrics(file: string, samples: MetricSample[]): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, renderTextfileMetrics(samples));
  fs.renameSync(tmp, file);
}
