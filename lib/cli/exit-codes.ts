// The one exit-code table of every e4ops command. Cron, systemd units and alert runbooks key on these
// numbers: once published a code is never renumbered or reused, only added. docs/reference/exit-codes.md
// is generated from this table (a test keeps it current).
export const EXIT_CODES = {
  ok: { code: 0, meaning: 'success' },
  internal: { code: 1, meaning: 'unexpected failure (a bug, or a tool that failed in a way e4ops does not classify); see the log' },
  usage: { code: 2, meaning: 'bad flags, arguments, settings or input files: nothing was changed; the message names the flag or file and the fix' },
  sourceUnreachable: { code: 3, meaning: 'the source could not be read: database unreachable or the dump broke off, configs dir unreadable, Elasticsearch snapshot failed' },
  target: { code: 4, meaning: 'a backup target could not be written or read: missing, not mounted, read-only, full, permissions, rclone remote error' },
  locked: { code: 5, meaning: 'another run holds the lock or the target lease: nothing was done; the message names the owner' },
  integrity: { code: 6, meaning: 'a stored object or manifest is damaged (checksum, size, decryption, schema)' },
  wrongIdentity: { code: 7, meaning: 'the age identity file matches no recipient of the set' },
  checkFailed: { code: 8, meaning: 'a check on restored data failed (drill or restore); the report names it' },
  refused: { code: 9, meaning: 'a safety precondition is not met (automation engine not confirmed paused, wrong C2, finished journal, production refused, no confirmation)' },
  topicsFailed: { code: 10, meaning: 'some topics could not be rotated or re-sent; re-run with the same journal' },
  devicesUnserved: { code: 11, meaning: 'every topic was rotated, but some inventory devices were never served while connected; the report lists them' },
  timedOut: { code: 12, meaning: 'a wait exceeded its timeout (lock wait, overall --timeout, follow window); the log says what it waited for' },
  wrongPassphrase: { code: 13, meaning: 'the C2 database passphrase opens none of the stored keys, or does not match the recorded fingerprint' },
  pgbackrest: { code: 14, meaning: 'pgBackRest failed; its own error code and message are shown' },
  c2Unreachable: { code: 15, meaning: 'the C2 API could not be reached or did not serve the expected data' },
  incomplete: { code: 16, meaning: 'an operation stopped part-way; its journal lets a re-run resume where it stopped' },
  interrupted: { code: 130, meaning: 'interrupted by SIGINT; a re-run resumes where a journal exists' },
  terminated: { code: 143, meaning: 'terminated by SIGTERM; a re-run resumes where a journal exists' },
} as const;

export type ExitKind = keyof typeof EXIT_CODES;
export type ExitCode = (typeof EXIT_CODES)[ExitKind]['code'];

/** kind → number, for `return EXIT.ok` style code. */
export const EXIT = Object.fromEntries(Object.entries(EXIT_CODES).map(([k, v]) => [k, v.code])) as {
  readonly [K in ExitKind]: (typeof EXIT_CODES)[K]['code'];
};

/** Codes every command can exit with, listed in every help page. */
export const COMMON_EXIT_KINDS: readonly ExitKind[] = ['ok', 'internal', 'usage', 'interrupted', 'terminated'];

/** An error that knows which exit code it means. Messages name the file/flag/object and the fix. */
export class OpsError extends Error {
  constructor(public kind: Exclude<ExitKind, 'ok'>, message: string, public details: Record<string, unknown> = {}) {
    super(message);
    this.name = 'OpsError';
  }
  get exitCode(): number {
    return EXIT_CODES[this.kind].code;
  }
}

/** The exit code an error stands for: its own when it carries one, else internal. */
export function exitCodeOf(e: unknown): number {
  if (e instanceof OpsError) return e.exitCode;
  const code = (e as { exitCode?: unknown } | null)?.exitCode;
  return typeof code === 'number' && Number.isInteger(code) ? code : EXIT.internal;
}

export function exitKindOf(code: number): ExitKind | undefined {
  return (Object.keys(EXIT_CODES) as ExitKind[]).find((k) => EXIT_CODES[k].code === code);
}
