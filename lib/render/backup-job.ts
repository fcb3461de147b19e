// The backup job, as scheduled by cron: the ONE crontab renderer (the stack's backup container and
// `e4ops backup --print-crontab` / `e4ops drill --print-crontab` on a host) and the ONE job-file type
// (`e4ops backup run --config FILE`, read by backups/job-config.ts). Pure: settings in, text out.
// Neither the crontab nor the job file ever holds a secret: the DB password comes from PGPASSFILE /
// ~/.pgpass or an environment file (0600) the cron line sources.
import { CronExpressionParser } from 'cron-parser';

export interface BackupJobTarget { name: string; type: 'local' | 'rclone'; path?: string; remote?: string }

/** The job file (`/etc/e4ops/backup.json`); schema in backups/job-config.ts. */
export interface BackupJobConfig {
  database: { host: string; port?: number; name: string; user: string };
  /** Extra files worth keeping (C2 configs, the pubkey-mode C2 key), absolute paths. */
  files?: string[];
  targets: BackupJobTarget[];
  ageRecipients: string[];
  retention?: { keepLast?: number; keepDaily?: number; keepWeekly?: number; keepMonthly?: number };
  metricsTextfileDir?: string;
  configsDir?: string;
  passphraseFile?: string;
  /** Create (and mark) local target directories that do not exist yet, e.g. a fresh container volume. */
  createTarget?: boolean;
}

/** Where a cron job's output goes. */
export type CronOutput =
  /** A host: syslog through logger, the exit status kept (pipefail) and mailed on failure. */
  | { kind: 'syslog'; tag: string }
  /** A container whose PID 1 is cron: the job writes to PID 1's stdout/stderr (`docker logs`). */
  | { kind: 'container' };

export interface CronJobSettings {
  /** Five cron fields (checked by cron-parser). */
  schedule: string;
  user?: string;
  workingDirectory: string;
  /** argv (quoted here) or one shell command line as the settings give it. */
  command: string[] | string;
  /** Sourced (exported) before the command when readable: PGPASSWORD and friends live there, 0600. */
  environmentFile?: string;
  output: CronOutput;
  /** Header comment lines (without '#'). */
  comment?: string[];
}

/** Why a cron schedule is not one, or undefined when it is (five fields, each in range). */
export function cronScheduleProblem(spec: string): string | undefined {
  const fields = spec.trim().split(/\s+/);
  if (fields.length !== 5) return `"${spec}" needs 5 cron fields (minute hour day-of-month month day-of-week), got ${fields.length}`;
  try {
    CronExpressionParser.parse(fields.join(' '));
    return undefined;
  } catch (e) {
    return `"${spec}" is not a cron schedule: ${(e as Error).message}`;
  }
}

/** Quote one argument for /bin/sh (cron's % is escaped separately). */
export function shellQuote(a: string): string {
  return /^[A-Za-z0-9_@+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`;
}

/** cron turns a bare % into a newline: escape it. */
const cronEscape = (text: string) => text.replace(/%/g, '\\%');

/** One /etc/cron.d file (user field) running one job. Throws on a bad schedule or command. */
export function renderCronFile(s: CronJobSettings): string {
  const problem = cronScheduleProblem(s.schedule);
  if (problem) throw new Error(`schedule ${problem}`);
  if (typeof s.command === 'string' && /[\n%]/.test(s.command)) throw new Error('command: must not contain newlines or % (cron treats % as a newline)');
  const cmd = typeof s.command === 'string' ? s.command : s.command.map((a) => cronEscape(shellQuote(a))).join(' ');
  const env = s.environmentFile
    ? `{ if [ -r ${shellQuote(s.environmentFile)} ]; then set -a; . ${shellQuote(s.environmentFile)}; set +a; fi; } && `
    : '';
  const cd = `cd ${shellQuote(s.workingDirectory)} && `;
  const fields = s.schedule.trim().split(/\s+/).join(' ');
  const user = s.user ?? 'root';
  let line: string;
  if (s.output.kind === 'container') {
    line = `${fields} ${user} ${cd}${env}${cmd} >/proc/1/fd/1 2>/proc/1/fd/2`;
  } else {
    // pipefail keeps the job's exit status through logger; a failure is also written to stderr, which cron mails.
    const tag = shellQuote(s.output.tag);
    line = `${fields} ${user} ${cd}${env}set -o pipefail && ${cmd} 2>&1 | logger -t ${tag} || echo "${s.output.tag} failed with exit status $? (see syslog, tag ${s.output.tag})" >&2`;
  }
  return [
    '# Rendered by e4ops (lib/render/backup-job.ts); edits are overwritten.',
    ...(s.comment ?? []).map((c) => `# ${c}`),
    // pipefail needs bash; the container image and Debian hosts have it.
    `SHELL=${s.output.kind === 'syslog' ? '/bin/bash' : '/bin/sh'}`,
    'PATH=/usr/local/bin:/usr/bin:/bin',
    line,
    '',
  ].join('\n');
}

/** The stack's backup container: cron as PID 1, the container's environment saved to /etc/e4ops/backup.env. */
export function renderBackupCrontab(s: { schedule: string; command: string; workingDirectory: string }): string {
  return renderCronFile({ ...s, environmentFile: '/etc/e4ops/backup.env', output: { kind: 'container' } });
}

/** JSON job file the backup job reads. Pure. */
export function renderBackupJobConfig(c: BackupJobConfig): string {
  return JSON.stringify({ $comment: 'Rendered by e4ops (lib/render/backup-job.ts)', ...c }, null, 2) + '\n';
}
