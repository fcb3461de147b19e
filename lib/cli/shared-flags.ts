// Flags that several commands take, declared once so their names, placeholders and help agree
// everywhere (pgBackRest's rule: every option declared once). Commands spread them into their own
// declarations; a command-specific meaning gets a flag of its own instead.
import fs from 'node:fs';
import { UsageError, type FlagSpecs } from './flags.ts';

/** How a command reaches C2's HTTPS API (resync, provision). */
export const C2_CONNECTION_FLAGS = {
  'c2-url': { type: 'string', required: true, placeholder: 'URL', group: 'C2 connection', help: "C2's HTTPS API, e.g. https://10.0.0.5:8888" },
  'c2-ca': { type: 'string', placeholder: 'FILE', group: 'C2 connection', help: "CA certificate that signed C2's http-cert (PEM)" },
  'c2-cert': { type: 'string', placeholder: 'FILE', group: 'C2 connection', help: 'client certificate, if a proxy in front of C2 wants one' },
  'c2-key': { type: 'string', placeholder: 'FILE', group: 'C2 connection', help: 'key of --c2-cert' },
} as const satisfies FlagSpecs;

/** Which logical backup set to read (drill, restore). Required-ness depends on the source, so it is checked by the command. */
export const BACKUP_SET_FLAGS = {
  target: { type: 'string', placeholder: 'T', group: 'Source', help: 'directory or rclone remote (remote:path) holding the sets' },
  backup: { type: 'string', placeholder: 'latest|ID', default: 'latest', group: 'Source', help: 'set to restore' },
  identity: { type: 'string', placeholder: 'FILE', group: 'Source', help: 'age identity (secret key) file that decrypts the set' },
  'rclone-config': { type: 'string', placeholder: 'FILE', group: 'Source', help: 'rclone config for remote targets' },
} as const satisfies FlagSpecs;

/** The contents of a file named by a flag; an unreadable file is a usage error naming the flag. */
export function readFlagFile(flag: string, file: string): Buffer;
export function readFlagFile(flag: string, file: string | undefined): Buffer | undefined;
export function readFlagFile(flag: string, file: string | undefined): Buffer | undefined {
  if (!file) return undefined;
  try { return fs.readFileSync(file); } catch (e) { throw new UsageError(`--${flag} ${file}: ${(e as Error).message}`); }
}
