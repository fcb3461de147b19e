// C2's db-encryption-passphrase as operators keep it: a file (0600, escrowed apart from the backups).
// One reader for backup and drill, so a short or unreadable file is the same usage error (exit 2) in both.
import fs from 'node:fs';
import { UsageError } from '../cli/flags.ts';
import { PASSWORD_MIN_BYTES } from './keystore.ts';

/** The passphrase in `file`; one trailing newline is how editors save files, not part of it. */
export function readPassphraseFile(file: string, flag = '--passphrase-file'): string {
  let raw: string;
  try { raw = fs.readFileSync(file, 'utf8'); } catch (e) {
    throw new UsageError(`${flag} ${file} cannot be read: ${(e as Error).message}`);
  }
  const text = raw.replace(/\r?\n$/, '');
  const n = Buffer.byteLength(text);
  if (n < PASSWORD_MIN_BYTES) {
    throw new UsageError(`${flag} ${file}: the passphrase is ${n} bytes; C2 requires at least ${PASSWORD_MIN_BYTES}, so this cannot be C2's db-encryption-passphrase (wrong file?)`);
  }
  return text;
}
