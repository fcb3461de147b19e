// The backup job's JSON settings file, as the stacks render it for the scheduled container
// (lib/render/backup-job.ts renderBackupJobConfig, which also holds its one type): `scripts/backup.ts run --config FILE`.
// It never holds secrets: the DB password comes from PGPASSWORD / ~/.pgpass in the job's environment.
import fs from 'node:fs';
import path from 'node:path';
import { compileSchemaValidator } from '../lib/json-schema.ts';
import { BackupError } from './exit-codes.ts';
import type { BackupOptions } from './create-backup.ts';
import type { BackupJobConfig } from '../lib/render/backup-job.ts';

export type { BackupJobConfig };

const SCHEMA = {
  type: 'object',
  required: ['database', 'targets', 'ageRecipients'],
  properties: {
    $comment: { type: 'string' },
    database: {
      type: 'object', additionalProperties: false, required: ['host', 'name', 'user'],
      properties: { host: { type: 'string', minLength: 1 }, port: { type: 'integer', minimum: 1, maximum: 65535 }, name: { type: 'string', minLength: 1 }, user: { type: 'string', minLength: 1 } },
    },
    files: { type: 'array', items: { type: 'string', pattern: '^/' } },
    targets: {
      type: 'array', minItems: 1,
      items: {
        type: 'object', additionalProperties: false, required: ['name', 'type'],
        properties: { name: { type: 'string' }, type: { enum: ['local', 'rclone'] }, path: { type: 'string', minLength: 1 }, remote: { type: 'string', minLength: 1 } },
      },
    },
    ageRecipients: { type: 'array', items: { type: 'string' } },
    retention: {
      type: 'object', additionalProperties: false,
      properties: { keepLast: { type: 'integer', minimum: 0 }, keepDaily: { type: 'integer', minimum: 0 }, keepWeekly: { type: 'integer', minimum: 0 }, keepMonthly: { type: 'integer', minimum: 0 } },
    },
    metricsTextfileDir: { type: 'string', minLength: 1 },
    configsDir: { type: 'string', minLength: 1 },
    passphraseFile: { type: 'string', minLength: 1 },
    createTarget: { type: 'boolean' },
  },
  additionalProperties: false,
} as const;

const jobConfigSchema = compileSchemaValidator<BackupJobConfig>(SCHEMA);

/** Read and check the job file; errors name the file and the field. */
export function readBackupJobConfig(file: string): BackupJobConfig {
  let doc: unknown;
  try { doc = JSON.parse(fs.readFileSync(file, 'utf8')); } catch (e) {
    throw new BackupError('config', `--config ${file}: ${(e as Error).message}`);
  }
  if (!jobConfigSchema.is(doc)) {
    throw new BackupError('config', `--config ${file} is not a backup job file: ${jobConfigSchema.errors(doc)}`);
  }
  for (const [i, t] of doc.targets.entries()) {
    if (t.type === 'local' && !t.path) throw new BackupError('config', `--config ${file}: targets[${i}] (${t.name}) is local but has no path`);
    if (t.type === 'rclone' && !t.remote) throw new BackupError('config', `--config ${file}: targets[${i}] (${t.name}) is rclone but has no remote`);
  }
  return doc;
}

/** BackupOptions from the job file (command-line flags are merged over these by the CLI). */
export function backupOptionsFromJobConfig(c: BackupJobConfig): Omit<BackupOptions, 'log'> {
  const d = c.database;
  const url = `postgres://${encodeURIComponent(d.user)}@${d.host.includes(':') ? `[${d.host}]` : d.host}:${d.port ?? 5432}/${encodeURIComponent(d.name)}`;
  return {
    databaseUrl: url,
    targets: c.targets.map((t) => (t.type === 'local' ? t.path! : t.remote!)),
    recipients: c.ageRecipients,
    ...(c.files?.length ? { extraFiles: c.files } : {}),
    ...(c.configsDir ? { configsDir: c.configsDir } : {}),
    ...(c.passphraseFile ? { passphraseFile: c.passphraseFile } : {}),
    ...(c.createTarget ? { createTarget: true } : {}),
    ...(c.retention ? { retention: c.retention } : {}),
    ...(c.metricsTextfileDir ? { metricsFile: path.join(c.metricsTextfileDir, 'e4ops_backup.prom') } : {}),
  };
}
