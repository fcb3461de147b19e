// Running pgBackRest: as the PostgreSQL data directory's owner (it refuses to touch a cluster as another
// user), over an explicit config file and stanza, with its own error code and name kept. Shared by the
// `e4ops pitr` library, the PITR drill, the throwaway repository of the tests, and the bench.
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { asUser } from '../servers/daemon.ts';

/**
 * pgBackRest's error codes and names (the process exits with the code), read from the error type table of
 * the pgBackRest 2.45 binary Debian 12 ships. Codes not listed are shown by number with pgBackRest's message.
 */
export const PGBACKREST_ERRORS: Record<number, string> = {
  25: 'AssertError', 26: 'ChecksumError', 27: 'ConfigError', 28: 'FileInvalidError', 29: 'FormatError',
  30: 'CommandRequiredError', 31: 'OptionInvalidError', 32: 'OptionInvalidValueError', 37: 'OptionRequiredError',
  38: 'PgRunningError', 39: 'ProtocolError', 40: 'PathNotEmptyError', 41: 'FileOpenError', 42: 'FileReadError',
  43: 'ParamRequiredError', 44: 'ArchiveMismatchError', 45: 'ArchiveDuplicateError', 46: 'VersionNotSupportedError',
  47: 'PathCreateError', 48: 'CommandInvalidError', 49: 'HostConnectError', 50: 'LockAcquireError',
  51: 'BackupMismatchError', 52: 'FileSyncError', 53: 'PathOpenError', 54: 'PathSyncError', 55: 'FileMissingError',
  56: 'DbConnectError', 57: 'DbQueryError', 58: 'DbMismatchError', 60: 'FileRemoveError', 61: 'PathRemoveError',
  62: 'StopError', 63: 'TermError', 64: 'FileWriteError', 67: 'FeatureNotSupportedError',
  68: 'ArchiveCommandInvalidError', 69: 'LinkExpectedError', 70: 'LinkDestinationError', 72: 'HostInvalidError',
  73: 'PathMissingError', 74: 'FileMoveError', 75: 'BackupSetInvalidError', 76: 'TablespaceMapError', 78: 'LinkMapError',
  79: 'FileCloseError', 80: 'DbMissingError', 81: 'DbInvalidError', 82: 'ArchiveTimeoutError', 83: 'FileModeError',
  87: 'ArchiveDisabledError', 88: 'FileOwnerError', 89: 'UserMissingError', 93: 'FileExistsError', 94: 'MemoryError',
  95: 'CryptoError', 96: 'ParamInvalidError', 97: 'PathCloseError', 98: 'FileInfoError', 99: 'JsonFormatError',
  100: 'KernelError', 101: 'ServiceError', 102: 'ExecuteError', 103: 'RepoInvalidError', 104: 'CommandError',
  105: 'AccessError', 106: 'ClockError', 122: 'RuntimeError', 124: 'UnhandledError', 125: 'UnknownError',
};

/** What to run pgBackRest against. */
export interface PgBackRestTarget {
  configFile: string;
  stanza: string;
  /** conf.d folder with the secrets include file; pgBackRest's default when absent. */
  configIncludePath?: string;
  /** OS user to run as (default: postgres when running as root, else the current user). */
  user?: string;
  /** pgbackrest binary (default: pgbackrest on PATH). */
  bin?: string;
}

export interface PgBackRestResult { code: number; stdout: string; stderr: string }

/** A pgBackRest command failed: its code, its error's name, its own message (first ERROR line and what follows). */
export class PgBackRestError extends Error {
  constructor(readonly command: string, readonly code: number, readonly pgbackrestMessage: string) {
    super(`pgbackrest ${command} failed with pgBackRest error ${code} (${pgBackRestErrorName(code)}): ${pgbackrestMessage}`);
    this.name = 'PgBackRestError';
  }
}

export function pgBackRestErrorName(code: number): string {
  return PGBACKREST_ERRORS[code] ?? `pgBackRest error ${code}`;
}

/** The ERROR lines of pgBackRest's output (the code in brackets and the text, continuation lines joined). */
export function pgBackRestErrorMessage(output: string): string {
  const lines = output.split('\n');
  const first = lines.findIndex((l) => /\bERROR: \[\d+\]/.test(l));
  if (first < 0) return output.trim().split('\n').slice(-3).join(' | ');
  const msg = [lines[first].replace(/^.*?ERROR: \[\d+\]:\s*/, '')];
  for (const l of lines.slice(first + 1)) {
    if (!/^\s{2,}\S/.test(l)) break;
    msg.push(l.trim());
  }
  return msg.join(' ');
}

export function defaultPgBackRestUser(): string | undefined {
  if (process.getuid?.() !== 0) return undefined;
  return fs.readFileSync('/etc/passwd', 'utf8').split('\n').some((l) => l.startsWith('postgres:')) ? 'postgres' : undefined;
}

/**
 * The include folder for a target: the one given, else conf.d beside the config file when it exists.
 * pgBackRest reads no include folder at all once --config is given without --config-include-path, so a
 * repository whose cipher passphrase sits in /etc/pgbackrest/conf.d looked "wrongly encrypted" to
 * `e4ops pitr info --pgbackrest-config /etc/pgbackrest/pgbackrest.conf`.
 */
export function configIncludePathOf(t: Pick<PgBackRestTarget, 'configFile' | 'configIncludePath'>): string | undefined {
  if (t.configIncludePath) return t.configIncludePath;
  const beside = path.join(path.dirname(t.configFile), 'conf.d');
  return fs.existsSync(beside) ? beside : undefined;
}

/** pgbackrest's argv for a command on the target. */
export function pgBackRestArgv(t: PgBackRestTarget, command: string, args: string[] = []): string[] {
  const include = configIncludePathOf(t);
  return [`--config=${t.configFile}`, ...(include ? [`--config-include-path=${include}`] : []), `--stanza=${t.stanza}`, command, ...args];
}

/** Run one pgBackRest command; resolves with its exit code and output (never throws for a non-zero exit). */
export function runPgBackRestRaw(t: PgBackRestTarget, command: string, args: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<PgBackRestResult> {
  const user = t.user ?? defaultPgBackRestUser();
  return new Promise((resolve, reject) => {
    const child = spawn(t.bin ?? 'pgbackrest', pgBackRestArgv(t, command, args), {
      cwd: '/', env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], ...(user ? asUser(user) : {}),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    child.on('error', (e) => reject(new Error(`pgbackrest cannot run (${e.message}): apt-get install pgbackrest`)));
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

/** Run one pgBackRest command; a non-zero exit throws PgBackRestError with pgBackRest's code and message. */
export async function runPgBackRest(t: PgBackRestTarget, command: string, args: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<string> {
  const r = await runPgBackRestRaw(t, command, args, env);
  if (r.code !== 0) throw new PgBackRestError(command, r.code, pgBackRestErrorMessage(r.stderr + '\n' + r.stdout));
  return r.stdout;
}
