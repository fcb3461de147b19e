// Scheduling the backup job (daily) and the restore drill (weekly): a systemd service + timer pair, or an
// /etc/cron.d file (lib/render/backup-job.ts renderCronFile, the one crontab renderer). Both run the
// command line the operator tested by hand, from the toolkit's checkout, with secrets kept out of the
// printed text: a URL with a password is refused, the unit/cron line reads an environment file instead.
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { renderSystemdUnit } from '../lib/render/systemd-units.ts';
import { renderCronFile, cronScheduleProblem } from '../lib/render/backup-job.ts';
import { UsageError, parseDuration } from '../lib/cli/flags.ts';

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
  /** Default environment file (PGPASSWORD, ...), 0600, read by the unit / cron line when present (default /etc/e4ops/<name>.env). */
  environmentFile?: string;
  /** The job's own overall timeout (seconds, default 4 h); when the job takes `--timeout`, it is passed unless given. */
  timeoutSeconds?: number;
  /** The job's script accepts `--timeout DURATION` (and exits 12 when it expires). */
  takesTimeoutFlag?: boolean;
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
  exitCodes: '2 usage, 3 source unreachable, 4 target, 5 lock or target lease held, 12 timed out, 13 wrong passphrase (docs/operate/backup.md).',
  onCalendar: '*-*-* 02:30:00', cron: '30 2 * * *', nodeFlags: NODE_FLAGS,
  environmentFile: '/etc/e4ops/backup.env', timeoutSeconds: 4 * 3600, takesTimeoutFlag: true,
};

/** Weekly, after the night's backup; E4RestoreDrillTooOld fires after 8 days without a passing drill. */
export const DRILL_JOB: ScheduledJob = {
  name: 'e4ops-restore-drill', script: 'scripts/restore-drill.ts', description: 'e4ops restore drill of the latest C2 backup (RTO/RPO)',
  after: 'network-online.target',
  exitCodes: '2 bad flags or files, 8 a check failed, named in the journal and the report (docs/operate/drill-and-resync.md).',
  onCalendar: 'Sun *-*-* 04:00:00', cron: '0 4 * * 0', nodeFlags: [],
  environmentFile: '/etc/e4ops/drill.env', timeoutSeconds: 4 * 3600, takesTimeoutFlag: false,
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
  /** Environment file the unit / cron line reads (default: the job's). */
  environmentFile?: string;
  /** Node binary (default: the one running now). The job runs `node --import tsx scripts/<job>.ts`: one
   * Node process, not tsx's wrapper plus a child, which keeps the job's memory down. */
  nodeBin?: string;
}

const DEFAULT_JOB_TIMEOUT_SECONDS = 4 * 3600;
const envFileOf = (job: ScheduledJob) => job.environmentFile ?? `/etc/e4ops/${job.name}.env`;

export const defaultRepoDir = () => path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The job's arguments plus `--timeout` when the job takes one and none was given; and that timeout. */
function jobArgs(o: ScheduleOptions): { args: string[]; timeoutSeconds: number } {
  const job = o.job ?? BACKUP_JOB;
  const i = o.args.findIndex((a) => a === '--timeout' || a.startsWith('--timeout='));
  const timeout = job.timeoutSeconds ?? DEFAULT_JOB_TIMEOUT_SECONDS;
  if (!job.takesTimeoutFlag) return { args: o.args, timeoutSeconds: timeout };
  if (i < 0) return { args: [...o.args, '--timeout', `${timeout}s`], timeoutSeconds: timeout };
  const raw = o.args[i].includes('=') ? o.args[i].split('=')[1] : o.args[i + 1];
  return { args: o.args, timeoutSeconds: parseDuration(raw ?? '') ?? timeout };
}

function commandLine(o: ScheduleOptions, repo: string, args: string[]): string[] {
  const job = o.job ?? BACKUP_JOB;
  return [o.nodeBin ?? process.execPath, ...job.nodeFlags, '--import', 'tsx', path.join(repo, job.script), ...args];
}

/** Quote one argument for a systemd ExecStart= line (and escape % specifiers). */
export function systemdQuote(a: string): string {
  const v = a.replace(/%/g, '%%');
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(v) ? v : `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\$/g, '$$$$')}"`;
}

/** A password in a URL would end up in a world-readable unit or crontab: refuse, and say where it goes. */
export function refuseSecretsInScheduledArgs(args: string[], environmentFile: string): void {
  for (let i = 0; i < args.length; i++) {
    const m = /^[a-z][a-z0-9+.-]*:\/\/[^:/@\s]+:[^@\s]+@/i.exec(args[i].replace(/^--[\w-]+=/, ''));
    if (!m) continue;
    const flag = args[i].startsWith('--') ? args[i].split('=')[0] : args[i - 1]?.startsWith('--') ? args[i - 1] : 'an argument';
    throw new UsageError(`${flag} holds a password; a printed unit or cron line would carry it in clear. Drop the password from the URL and put it in `
      + `PGPASSFILE / ~/.pgpass (mode 0600), or as PGPASSWORD=... in ${environmentFile} (mode 0600), which the printed unit and cron line read`);
  }
}

/** systemd's own parser where present (systemd-analyze calendar); else the spec is passed through. */
export function onCalendarProblem(spec: string): string | undefined {
  const r = spawnSync('systemd-analyze', ['calendar', spec], { encoding: 'utf8' });
  if (r.error || r.status === null) return undefined; // no systemd tools on this machine
  return r.status === 0 ? undefined : (r.stderr || r.stdout).trim().split('\n').pop();
}

/** Check the schedule flags; errors name the flag. */
export function validateSchedule(o: { onCalendar?: string; cron?: string }): void {
  if (o.cron !== undefined) {
    const p = cronScheduleProblem(o.cron);
    if (p) throw new UsageError(`--cron ${p}; e.g. --cron "30 2 * * *"`);
  }
  if (o.onCalendar !== undefined) {
    const p = onCalendarProblem(o.onCalendar);
    if (p) throw new UsageError(`--on-calendar "${o.onCalendar}" is not a systemd calendar spec: ${p}; e.g. --on-calendar "*-*-* 02:30:00" (man systemd.time)`);
  }
}

export function renderSystemdUnits(o: ScheduleOptions): { service: string; timer: string; name: string } {
  const repo = o.repoDir ?? defaultRepoDir();
  const job = o.job ?? BACKUP_JOB;
  const name = o.name ?? job.name;
  const envFile = o.environmentFile ?? envFileOf(job);
  const { args, timeoutSeconds } = jobArgs(o);
  const service = `# /etc/systemd/system/${name}.service (printed by ${job.script} --print-systemd-timer)
# Exit codes: ${job.exitCodes}
# Secrets (PGPASSWORD=..., RCLONE_CONFIG_PASS=...) go in ${envFile}, mode 0600, never on ExecStart.
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
      EnvironmentFile: `-${envFile}`,
      ExecStart: commandLine(o, repo, args).map(systemdQuote).join(' '),
      // The job stops itself at its --timeout; systemd is the backstop, so one stuck run never blocks the next firing.
      TimeoutStartSec: `${Math.ceil(timeoutSeconds) + 600}s`,
      Nice: 10,
      IOSchedulingClass: 'best-effort',
      IOSchedulingPriority: 7,
      PrivateTmp: 'true',
      UMask: '0077',
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
  const envFile = o.environmentFile ?? envFileOf(job);
  return renderCronFile({
    schedule: o.cron ?? job.cron, user: o.user, workingDirectory: repo,
    command: commandLine(o, repo, jobArgs(o).args), environmentFile: envFile, output: { kind: 'syslog', tag: name },
    comment: [`/etc/cron.d/${name}: JSON log lines go to syslog (tag ${name}); exit codes: ${job.exitCodes}`,
      `Secrets (PGPASSWORD=...) go in ${envFile}, mode 0600, never on this line.`],
  });
}

/** The flags that only shape the schedule; everything else on the command line is the job's own. */
export const SCHEDULE_FLAGS = ['print-systemd-timer', 'print-crontab', 'on-calendar', 'cron', 'user', 'environment-file'];
const SCHEDULE_VALUE_FLAGS = new Set(['on-calendar', 'cron', 'user', 'environment-file']);

/** What to print for one job, schedule values checked and secrets refused. */
export function renderSchedule(job: ScheduledJob, args: string[], v: { systemd: boolean; crontab: boolean; onCalendar?: string; cron?: string; user?: string; environmentFile?: string }): string {
  validateSchedule(v);
  const o: ScheduleOptions = { job, args, onCalendar: v.onCalendar, cron: v.cron, user: v.user, environmentFile: v.environmentFile };
  refuseSecretsInScheduledArgs(args, v.environmentFile ?? envFileOf(job));
  let out = '';
  if (v.systemd) {
    const u = renderSystemdUnits(o);
    out += `${u.service}\n${u.timer}`;
  }
  if (v.crontab) out += renderCrontabLine(o);
  return out;
}

/**
 * `--print-systemd-timer` / `--print-crontab` for an entry point that parses its own argv: the text to
 * print, from the raw command line (schedule flags removed, the rest kept verbatim), or undefined when
 * neither flag is there.
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
    if (v === undefined) throw new UsageError(`--${m[1]} needs a value (see --help)`);
    value[m[1]] = v;
  }
  if (!wanted.size) return undefined;
  return renderSchedule(job, args, {
    systemd: wanted.has('print-systemd-timer'), crontab: wanted.has('print-crontab'),
    onCalendar: value['on-calendar'], cron: value.cron, user: value.user, environmentFile: value['environment-file'],
  });
}
