// age recipients: public keys only. The backup host never holds a secret key, so it cannot read
// what it wrote; a secret key given by mistake is refused with the fix (checks in lib/age.ts).
import fs from 'node:fs';
import { BackupError } from './exit-codes.ts';
import { checkAgeRecipient } from '../lib/age.ts';

function check(r: string, where: string): string {
  try { return checkAgeRecipient(r, where); } catch (e) {
    throw new BackupError('config', (e as Error).message);
  }
}

export interface Recipients {
  /** Public keys recorded in the manifest. */
  keys: string[];
  /** Arguments for `age --encrypt`. */
  ageArgs: string[];
}

export function loadRecipients(recipients: string[] = [], recipientsFile?: string): Recipients {
  const keys: string[] = recipients.map((r, i) => check(r, `--recipient #${i + 1}`));
  const ageArgs = keys.flatMap((k) => ['-r', k]);
  if (recipientsFile) {
    let text: string;
    try { text = fs.readFileSync(recipientsFile, 'utf8'); } catch (e) {
      throw new BackupError('config', `--recipients-file ${recipientsFile} cannot be read: ${(e as Error).message}`);
    }
    const lines = text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    if (!lines.length) throw new BackupError('config', `--recipients-file ${recipientsFile} holds no recipients (one age1... public key per line)`);
    lines.forEach((l, i) => keys.push(check(l, `${recipientsFile} line ${i + 1}`)));
    ageArgs.push('-R', recipientsFile);
  }
  if (!keys.length) throw new BackupError('config', 'no recipients: give --recipient age1... (repeatable) or --recipients-file FILE; create a key pair OFF this host with age-keygen');
  return { keys: [...new Set(keys)], ageArgs };
}
