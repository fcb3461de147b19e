// Exit codes of scripts/backup.ts, in one place (README "Off-site backups" documents them).
// Cron/systemd and the alert runbooks key on these numbers: never renumber, only add.
export const EXIT = {
  ok: 0,
  /** Unexpected failure (a bug, or a tool that crashed in a way we do not classify). */
  internal: 1,
  /** Bad flags or settings: missing recipient, unreadable file, bad target syntax. Fix the command line. */
  config: 2,
  /** The source could not be read: database unreachable or the dump broke off, configs dir unreadable, ES snapshot failed. */
  sourceUnreachable: 3,
  /** A target could not be written or read: read-only, full, permissions, rclone remote error. */
  target: 4,
  /** Another run holds the lock: nothing was done. */
  locked: 5,
  /** verify: a stored object or manifest is damaged (checksum, size, decrypt/authentication, schema). */
  integrity: 6,
  /** verify: the identity file does not match any recipient of the set. */
  wrongIdentity: 7,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];
export type BackupErrorKind = keyof typeof EXIT;

/** An error that knows which exit code it means. Messages name the file/flag/object and the fix. */
export class BackupError extends Error {
  constructor(public kind: Exclude<BackupErrorKind, 'ok'>, message: string, public details: Record<string, unknown> = {}) {
    super(message);
    this.name = 'BackupError';
  }
  get exitCode(): ExitCode {
    return EXIT[this.kind];
  }
}

export function exitCodeOf(e: unknown): ExitCode {
  return e instanceof BackupError ? e.exitCode : EXIT.internal;
}
