// One backup (or prune) run at a time per host: an exclusive-create lock file holding the owner's pid.
// A lock left by a dead process (same host, pid gone) is taken over, so a crash never blocks cron forever.
// The file is 0600 and holds pid, host, start time and the command with URL passwords and secret-looking
// flag values redacted: it outlives a crash in a shared /run/lock.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BackupError } from './exit-codes.ts';
import { redactUrl } from '../lib/log.ts';

export interface RunLock { file: string; release(): void }
interface LockOwner { pid: number; host: string; since: string; command: string }

export function defaultLockFile(): string {
  const dir = fs.existsSync('/run/lock') ? '/run/lock' : os.tmpdir();
  return path.join(dir, 'e4ops-backup.lock');
}

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}

const SECRET_FLAG = /pass(word|phrase)?|secret|token|identity|credential/i;

/** argv as it may be written down: URL passwords and the values of secret-looking flags replaced. */
export function redactedCommand(argv: readonly string[]): string {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const eq = /^(--[\w-]+)=(.*)$/.exec(a);
    // File flags (--passphrase-file, --identity F) name a path, not the secret: keep them.
    const secretFlag = (f: string) => SECRET_FLAG.test(f) && !/-file$|^--identity$/.test(f);
    if (eq && secretFlag(eq[1])) out.push(`${eq[1]}=[redacted]`);
    else if (/^--/.test(a) && secretFlag(a) && i + 1 < argv.length && !argv[i + 1].startsWith('--')) { out.push(a, '[redacted]'); i++; }
    else out.push(redactUrl(a));
  }
  return out.join(' ');
}

export function acquireRunLock(file = defaultLockFile(), command = redactedCommand(process.argv.slice(1))): RunLock {
  const me: LockOwner = { pid: process.pid, host: os.hostname(), since: new Date().toISOString(), command: redactedCommand(command.split(' ')).slice(0, 300) };
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.mkdirSync(path.dirname(file), { recursive: true });
      const fd = fs.openSync(file, 'wx', 0o600);
      fs.writeSync(fd, JSON.stringify(me) + '\n');
      fs.closeSync(fd);
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        try {
          const owner = JSON.parse(fs.readFileSync(file, 'utf8')) as LockOwner;
          if (owner.pid === process.pid) fs.rmSync(file, { force: true });
        } catch { /* already gone */ }
      };
      process.once('exit', release);
      return { file, release };
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EEXIST') throw new BackupError('config', `cannot create lock file ${file}: ${(e as Error).message} (set --lock-file to a writable path)`);
      let owner: LockOwner | undefined;
      try { owner = JSON.parse(fs.readFileSync(file, 'utf8')); } catch { /* being written or garbage */ }
      if (owner && owner.host === os.hostname() && !alive(owner.pid) && attempt === 0) {
        fs.rmSync(file, { force: true }); // stale: its process is gone
        continue;
      }
      const who = owner ? `pid ${owner.pid} on ${owner.host} since ${owner.since}` : 'an unknown process';
      throw new BackupError('locked', `another backup run holds the lock ${file} (${who}); not starting a second one. If no backup is running, delete the file.`, { lockFile: file, owner });
    }
  }
  throw new BackupError('locked', `could not take the lock ${file}`);
}
