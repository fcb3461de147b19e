// The backups capability's errors, on the one exit-code table (lib/cli/exit-codes.ts). BackupError is
// an OpsError: `new BackupError('config', ...)` is the historical name of a usage error (exit 2); every
// other kind is the table's own, so the numbers cron and alert runbooks key on never change.
import { EXIT, EXIT_CODES, OpsError, exitCodeOf, type ExitKind } from '../lib/cli/exit-codes.ts';

export { EXIT, EXIT_CODES, OpsError, exitCodeOf };
export type { ExitKind };

/** A kind of the table, or 'config' (= usage, exit 2). */
export type BackupErrorKind = Exclude<ExitKind, 'ok'> | 'config';

export class BackupError extends OpsError {
  constructor(kind: BackupErrorKind, message: string, details: Record<string, unknown> = {}) {
    super(kind === 'config' ? 'usage' : kind, message, details);
    this.name = 'BackupError';
  }
}
