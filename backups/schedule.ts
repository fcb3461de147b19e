// Scheduling the backup job (daily) and the restore drill (weekly): a systemd service + timer pair, or an
// /etc/cron.d line. Both run the same command line the operator tested by hand, from the toolkit's checkout.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderSystemdUnit } from '../lib/render/systemd-units.ts';
import { BackupError } from './exit-codes.ts';

/** What differs between the scheduled jobs. */
export interface ScheduledJob {
  /** Unit / cron.d name. */
  name: string;
  script: string;
  description: string;
  /** Units to start after (systemd After=). */
  after: string;
  /** One line on the exit codes, for the unit's header comment. */
  exitCodes: string;
  onCalendar: string;
  cron: string;
  nodeFlags: string[];
}

/**
 * A small young generation: the ciphertext crosses Node in 64 KiB buffers and a big nursery lets many dead
 * ones pile up between scavenges (measured on 300k clients: Node's peak RSS 124 → 101 MiB). V8 reads
 * this flag only at start-up, hence on the command line. --expose-gc lets the job drop Argon2i's 64 MiB
 * right after fingerprinting the passphrase (backups/passphrase-fingerprint.ts).
 */
export const NODE_FLAGS = ['--max-semi-space-size=1', '--expose-gc'];

export const BACKUP_JOB: ScheduledJob = {
  name: 'e4ops-backup', script: 'scripts/backup.ts', description: 'e4ops off-site backup of the C2 key server',
  after: 'network-online.target postgresql.service',
  exitCodes: '2 config, 3 source unreachable, 4 target, 5 another run holds the lock (README, Off-site backups).',
  onCalendar: '*-*-* 02:30:00', cron: '30 2 * * *', nodeFlags: NODE_FLAGS,
};

/** Weekly, after the night's backup; E4RestoreDrillTooOld fires after 8 days without a passing drill. */
export const DRILL_JOB: ScheduledJob = {
  name: 'e4ops-restore-drill', script: 'scripts/restore-drill.ts', description: 'e4ops restore drill of the latest C2 backup (RTO/RPO)',
  after: 'network-online.target',
  exitCodes: '2 bad flags or files, 8 a check failed, named in the journal and the report (README, Restore drills).',
  onCalendar: 'Sun *-*-* 04:00:00', cron: '0 4 * * 0', nodeFlags: [],
};

export interface ScheduleOptions {
  /** Which job (default the backup). */
  job?: ScheduledJob;
  /** Arguments for the job's script (its flags, without the --print-* flag). */
  args: string[];
  /** Toolkit checkout (default: this one). */
  repoDir?: string;
  /** systemd OnCalendar (default: the job's). */
  onCalendar?: string;
  /** cron schedule (default: the job's). */
  cron?: string;
  /** Unit / job name (default: the job's). */
  name?: string;
  user?: string;
  /** Node binary (default: the one running now). The job runs `node --import tsx scripts/<job>.ts`: one
   * Node process, not tsx's wrapper plus a child, which keeps the job's memory down. */
  nodeBin?: string;
}

function commandLine(o: ScheduleOptions, repo: string): string[] {
  const job = o.job ?? BACKUP_JOB;
  return [o.nodeBin ?? process.execPath, ...job.nodeFlags, '--import', 'tsx', path.join(repo, job.script), ...o.args];
}

export const defaultRepoDir = () => path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Quote one argument for a systemd ExecStart= line (and escape % specifiers). */
export function systemdQuote(a: string): string {
  const v = a.replace(/%/g, '%%');
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(v) ? v : `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\$/g, '$$$$')}"`;
}

/** Quote one argument for /bin/sh in a crontab (and escape cron's % newline marker). */
export function shellQuote(a: string): string {
  const v = /^[A-Za-z0-9_@+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`;
  return v.replace(/%/g, '\\%');
}

export function renderSystemdUnits(o: ScheduleOptions): { service: string; timer: string; name: string } {
  const repo = o.repoDir ?? defaultRepoDir();
  const job = o.job ?? BACKUP_JOB;
  const name = o.name ?? job.name;
  const service = `# /etc/systemd/system/${name}.service (printed by ${job.script} --print-systemd-timer)
# Exit codes: ${job.exitCodes}
` + renderSystemdUnit({
    Unit: {
      Description: job.description,
      Wants: 'network-online.target',
      After: job.after,
    },
    Service: {
      Type: 'oneshot',
      User: o.user ?? 'root',
      WorkingDirectory: repo,
      ExecStart: commandLine(o, repo).map(systemdQuote).join(' '),
      Nice: 10,
      IOSchedulingClass: 'best-effort',
      IOSchedulingPriority: 7,
      PrivateTmp: 'true',
    },
  }, 'backups/schedule.ts');
  const timer = `# /etc/systemd/system/${name}.timer  →  systemctl daemon-reload && systemctl enable --now ${name}.timer
` + renderSystemdUnit({
    Unit: { Description: `Schedule for ${name}.service` },
    Timer: { OnCalendar: o.onCalendar ?? job.onCalendar, RandomizedDelaySec: '15m', Persistent: 'true' },
    Install: { WantedBy: 'timers.target' },
  }, 'backups/schedule.ts');
  return { service, timer, name };
}

export function renderCrontabLine(o: ScheduleOptions): string {
  const repo = o.repoDir ?? defaultRepoDir();
  const job = o.job ?? BACKUP_JOB;
  const name = o.name ?? job.name;
  const cmd = commandLine(o, repo).map(shellQuote).join(' ');
  return `# /etc/cron.d/${name} (JSON log lines go to syslog via logger; exit codes in README)\n` +
    `${o.cron ?? job.cron} ${o.user ?? 'root'} cd ${shellQuote(repo)} && ${cmd} 2>&1 | logger -t ${name}\n`;
}

/** The flags that only shape the schedule; everything else on the command line is the job's own. */
const SCHEDULE_FLAGS = ['print-systemd-timer', 'print-crontab', 'on-calendar', 'cron', 'user'];
const SCHEDULE_VALUE_FLAGS = new Set(['on-calendar', 'cron', 'user']);

/**
 * `--print-systemd-timer` / `--print-crontab` for a job's entry point: the text to print, from the raw
 * command line (schedule flags removed, the rest kept verbatim), or undefined when neither flag is there.
 */
export function printedSchedule(job: ScheduledJob, raw: string[]): string | undefined {
  const args: string[] = [];
  const value: Record<string, string> = {};
  const wanted = new Set<string>();
  for (let i = 0; i < raw.length; i++) {
    const m = /^--([\w-]+)(?:=(.*))?$/.exec(raw[i]);
    if (!m || !SCHEDULE_FLAGS.includes(m[1])) { args.push(raw[i]); continue; }
    if (!SCHEDULE_VALUE_FLAGS.has(m[1])) { wanted.add(m[1]); continue; }
    const v = m[2] ?? raw[++i];
    if (v === undefined) throw new BackupError('config', `--${m[1]} needs a value (see --help)`);
    value[m[1]] = v;
  }
  if (!wanted.size) return undefined;
  const o: ScheduleOptions = { job, args, onCalendar: value['on-calendar'], cron: value.cron, user: value.user };
  let out = '';
  if (wanted.has('print-systemd-timer')) {
    const u = renderSystemdUnits(o);
    out += `${u.service}\n${u.timer}`;
  }
  if (wanted.has('print-crontab')) out += renderCrontabLine(o);
  return out;
}
