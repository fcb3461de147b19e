// The scheduled backup container: a crontab for Debian's cron and the job's JSON settings file.
// The job itself (capture, age-encrypt, store, prune) is the backups capability's; the stack only
// schedules it and tells it what to back up where.

export interface BackupJobSettings {
  schedule: string;
  command: string;
  workingDirectory: string;
  /** Passed through to the job; never holds secrets (those come from the container environment). */
  config: {
    database: { host: string; port: number; name: string; user: string };
    /** Extra files worth keeping (C2 configs, the pubkey-mode C2 key). */
    files: string[];
    targets: Array<{ name: string; type: 'local' | 'rclone'; path?: string; remote?: string }>;
    ageRecipients: string[];
    retention: { keepLast: number; keepDaily: number; keepWeekly: number; keepMonthly: number };
    metricsTextfileDir?: string;
  };
}

/** /etc/cron.d style crontab (with user field); output goes to the container's stdout. Pure. */
export function renderBackupCrontab(s: Pick<BackupJobSettings, 'schedule' | 'command' | 'workingDirectory'>): string {
  const fields = s.schedule.trim().split(/\s+/);
  if (fields.length !== 5) throw new Error(`backup schedule "${s.schedule}": needs 5 cron fields`);
  if (/[\n%]/.test(s.command)) throw new Error('backup command: must not contain newlines or % (cron treats % as a newline)');
  return [
    '# Rendered by e4ops (lib/render/backup-job.ts); edits are overwritten.',
    'SHELL=/bin/sh',
    'PATH=/usr/local/bin:/usr/bin:/bin',
    `${fields.join(' ')} root cd ${s.workingDirectory} && . /etc/e4ops/backup.env && ${s.command} >/proc/1/fd/1 2>/proc/1/fd/2`,
    '',
  ].join('\n');
}

/** JSON settings file the backup job reads. Pure. */
export function renderBackupJobConfig(s: BackupJobSettings['config']): string {
  return JSON.stringify({ $comment: 'Rendered by e4ops (lib/render/backup-job.ts)', ...s }, null, 2) + '\n';
}
