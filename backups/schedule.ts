// Scheduling the backup job: a systemd service + timer pair, or an /etc/cron.d line. Both run the same
// command line the operator tested by hand, from the toolkit's checkout.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderSystemdUnit } from '../lib/render/systemd-units.ts';

export interface ScheduleOptions {
  /** Arguments for scripts/backup.ts (the backup flags, without the --print-* flag). */
  args: string[];
  /** Toolkit checkout (default: this one). */
  repoDir?: string;
  /** systemd OnCalendar (default daily at 02:30 UTC-local). */
  onCalendar?: string;
  /** cron schedule (default "30 2 * * *"). */
  cron?: string;
  /** Unit / job name (default e4ops-backup). */
  name?: string;
  user?: string;
  /** Node binary (default: the one running now). The job runs `node --import tsx scripts/backup.ts`: one
   * Node process, not tsx's wrapper plus a child, which keeps the job's memory down. */
  nodeBin?: string;
}

/**
 * A small young generation: the ciphertext crosses Node in 64 KiB buffers and a big nursery lets many dead
 * ones pile up between scavenges (measured on 300k clients: Node's peak RSS 124 → 101 MiB). V8 reads
 * this flag only at start-up, hence on the command line. --expose-gc lets the job drop Argon2i's 64 MiB
 * right after fingerprinting the passphrase (backups/passphrase-fingerprint.ts).
 */
export const NODE_FLAGS = ['--max-semi-space-size=1', '--expose-gc'];

function commandLine(o: ScheduleOptions, repo: string): string[] {
  return [o.nodeBin ?? process.execPath, ...NODE_FLAGS, '--import', 'tsx', path.join(repo, 'scripts/backup.ts'), ...o.args];
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
  const name = o.name ?? 'e4ops-backup';
  const service = `# /etc/systemd/system/${name}.service (printed by scripts/backup.ts --print-systemd-timer)
# Exit codes: 2 config, 3 source unreachable, 4 target, 5 another run holds the lock (README, Off-site backups).
` + renderSystemdUnit({
    Unit: {
      Description: 'e4ops off-site backup of the C2 key server',
      Wants: 'network-online.target',
      After: 'network-online.target postgresql.service',
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
    Timer: { OnCalendar: o.onCalendar ?? '*-*-* 02:30:00', RandomizedDelaySec: '15m', Persistent: 'true' },
    Install: { WantedBy: 'timers.target' },
  }, 'backups/schedule.ts');
  return { service, timer, name };
}

export function renderCrontabLine(o: ScheduleOptions): string {
  const repo = o.repoDir ?? defaultRepoDir();
  const cmd = commandLine(o, repo).map(shellQuote).join(' ');
  return `# /etc/cron.d/${o.name ?? 'e4ops-backup'} (JSON log lines go to syslog via logger; exit codes in README)\n` +
    `${o.cron ?? '30 2 * * *'} ${o.user ?? 'root'} cd ${shellQuote(repo)} && ${cmd} 2>&1 | logger -t ${o.name ?? 'e4ops-backup'}\n`;
}
