// The restore's one report: JSON validated against restore-report-schema.json, and a Markdown page
// an operator reads (what was restored, RTO/RPO, the rollback line, devices at risk, what next).
import fs from 'node:fs';
import path from 'node:path';
import schema from './restore-report-schema.json' with { type: 'json' };
import { compileSchemaValidator } from '../../lib/json-schema.ts';
import type { DrillCheck } from '../drill/restored-database-checks.ts';
import type { ConfigsRestoreResult } from './restore-configs.ts';

export interface RestoreReport {
  kind: 'e4ops-restore';
  ok: boolean;
  restoreId: string;
  source: { kind: 'logical' | 'pgbackrest'; target: string; setId: string; backupTakenAt?: string; backupFinishedAt?: string; targetTime?: string };
  dataDirectory?: { path: string; keptAside: string | null; delta: boolean };
  database: { name: string; restoreName: string; keptName: string | null; c2Role: string; swapped: boolean; swapBackSql: string };
  configs?: ConfigsRestoreResult;
  startedAt: string;
  finishedAt: string;
  runs: number;
  rto: { c2ServingSeconds: number | null; resyncDoneSeconds: number | null };
  rpo: { restoredPointAt: string; disasterAt: string; seconds: number };
  counts: { clients: number; topics: number; links: number };
  steps: { step: string; status: 'done' | 'skipped' | 'failed' | 'not-reached'; runs: number; seconds?: number; detail?: string }[];
  checks: DrillCheck[];
  resync?: { journal: string; rotated: number; failed: number; clientsCreated?: number; linksCreated?: number; topicsCreated?: number; atRisk: { name: string; reason: string; action: string }[] };
  error?: string;
  next?: string[];
  journal: string;
}

const validator = compileSchemaValidator<RestoreReport>(schema);

export function validateRestoreReport(r: unknown): asserts r is RestoreReport {
  const errs = validator.errors(r);
  if (errs) throw new Error(`restore report does not match backups/restore/restore-report-schema.json: ${errs}`);
}

const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
const secs = (s: number | null) => (s === null ? 'n/a' : `${s.toFixed(1)} s`);

export function renderRestoreMarkdown(r: RestoreReport): string {
  const lines = [
    `# Restore ${r.ok ? 'finished' : 'STOPPED'}: ${r.database.name} from set ${r.source.setId}`,
    '',
    `- restore \`${r.restoreId}\`, ${r.runs} run(s), journal \`${r.journal}\``,
    `- source: ${r.source.kind} set ${r.source.setId} on ${r.source.target}${r.source.backupFinishedAt ? `, taken ${r.source.backupFinishedAt}` : ''}`,
    `- database: ${r.database.swapped ? `${r.database.restoreName} is now ${r.database.name}` : `restored into ${r.database.restoreName}, NOT swapped in`}; owner ${r.database.c2Role}`,
    ...(r.source.kind === 'logical' ? [
      `- kept: ${r.database.keptName ? `${r.database.keptName} (dropped by \`e4ops restore --finalize\`)` : 'none (no production database existed)'}`,
      `- rollback (C2 stopped): \`${r.database.swapBackSql}\``,
    ] : [`- recovered to ${r.source.targetTime}`]),
    `- ${r.counts.clients} clients, ${r.counts.topics} topics, ${r.counts.links} links restored`,
    `- RTO: ${secs(r.rto.c2ServingSeconds)} to C2 serving, ${secs(r.rto.resyncDoneSeconds)} to resync done`,
    `- RPO: ${r.rpo.seconds.toFixed(0)} s (restored point ${r.rpo.restoredPointAt}, disaster ${r.rpo.disasterAt})`,
  ];
  if (r.dataDirectory) lines.push(`- data directory: ${r.dataDirectory.path}${r.dataDirectory.keptAside ? `, the old one kept as ${r.dataDirectory.keptAside}` : r.dataDirectory.delta ? ' (restored in place, --delta)' : ''}`);
  if (r.configs?.configsDir) lines.push(`- configs: ${r.configs.restoredFiles} files in ${r.configs.configsDir}${r.configs.keptAside ? `, old ones in ${r.configs.keptAside}` : ''}`);
  if (r.error) lines.push('', `**Stopped:** ${cell(r.error)}`);
  lines.push('', '| step | status | runs | seconds | detail |', '|---|---|---|---|---|',
    ...r.steps.map((s) => `| ${s.step} | ${s.status} | ${s.runs} | ${s.seconds?.toFixed(1) ?? ''} | ${cell(s.detail ?? '')} |`));
  lines.push('', '| check | ok | detail |', '|---|---|---|', ...r.checks.map((c) => `| ${c.name} | ${c.ok ? 'yes' : '**no**'} | ${cell(c.detail)} |`));
  if (r.resync) {
    lines.push('', `## Resync`, '', `${r.resync.rotated} topics rotated, ${r.resync.failed} failed; journal \`${r.resync.journal}\``);
    if (r.resync.atRisk.length) {
      lines.push('', '### Devices at risk', '', '| device | why | what to do |', '|---|---|---|',
        ...r.resync.atRisk.slice(0, 200).map((d) => `| ${d.name} | ${cell(d.reason)} | ${cell(d.action)} |`));
    }
  }
  if (r.next?.length) lines.push('', '## Next', '', ...r.next.map((n) => `- ${n}`));
  return lines.join('\n') + '\n';
}

/** Write FILE (JSON, validated) and FILE.md beside it. */
export function writeRestoreReport(r: RestoreReport, file: string): void {
  validateRestoreReport(r);
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(r, null, 2) + '\n');
  fs.writeFileSync(file.replace(/\.json$/i, '') + '.md', renderRestoreMarkdown(r));
}
