// Where e4ops keeps what is slow to make and safe to reuse (the C2 build, the drill's initdb template,
// Debian base tarballs): $E4OPS_CACHE, else ~/.cache/e4ops. scripts/build-c2.sh reads the same variable.
import os from 'node:os';
import path from 'node:path';

export function e4opsCacheDir(...parts: string[]): string {
  return path.join(process.env.E4OPS_CACHE ?? path.join(os.homedir(), '.cache', 'e4ops'), ...parts);
}
