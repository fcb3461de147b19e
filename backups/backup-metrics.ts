// Prometheus textfile-collector output of a backup run (names from lib/ops-metrics.ts, which the
// alert rules read). A failed run keeps the previous last-success time so "no success for N hours" fires.
import fs from 'node:fs';
import { OPS_METRICS, writeTextfileMetrics, type MetricSample } from '../lib/ops-metrics.ts';

export interface BackupRunMetrics {
  success: boolean;
  finishedAt: Date;
  durationSeconds: number;
  /** Bytes stored for the set (sum of its objects), 0 when the run failed. */
  bytes: number;
  /** Complete sets per target after the run. */
  setsPerTarget: Record<string, number>;
}

/** Last success timestamp recorded in an existing metrics file, if any. */
export function previousLastSuccess(file: string): number | undefined {
  try {
    const line = fs.readFileSync(file, 'utf8').split('\n').find((l) => l.startsWith(OPS_METRICS.backupLastSuccessTimestamp + ' '));
    const v = line ? Number(line.split(' ')[1]) : NaN;
    return Number.isFinite(v) ? v : undefined;
  } catch { return undefined; }
}

export function backupMetricSamples(m: BackupRunMetrics, prevSuccess?: number): MetricSample[] {
  const now = m.finishedAt.getTime() / 1000;
  const samples: MetricSample[] = [
    { name: OPS_METRICS.backupLastRunTimestamp, help: 'Unix time the last backup run ended.', value: now },
    { name: OPS_METRICS.backupLastRunSuccess, help: '1 if the last backup run stored a complete set on every target, else 0.', value: m.success ? 1 : 0 },
    { name: OPS_METRICS.backupDurationSeconds, help: 'Wall time of the last backup run.', value: m.durationSeconds },
    { name: OPS_METRICS.backupBytes, help: 'Bytes stored by the last successful backup set.', value: m.bytes },
  ];
  const last = m.success ? now : prevSuccess;
  if (last !== undefined) samples.push({ name: OPS_METRICS.backupLastSuccessTimestamp, help: 'Unix time of the last successful backup run.', value: last });
  for (const [target, n] of Object.entries(m.setsPerTarget)) {
    samples.push({ name: OPS_METRICS.backupSets, help: 'Complete backup sets on a target.', labels: { target }, value: n });
  }
  return samples;
}

export function writeBackupMetrics(file: string, m: BackupRunMetrics): void {
  writeTextfileMetrics(file, backupMetricSamples(m, previousLastSuccess(file)));
}
