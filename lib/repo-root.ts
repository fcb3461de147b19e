// The repository's root folder, resolved once: lib/, stacks/, scripts/ and bench/ find files under it
// from here instead of each counting '..' from where they happen to live.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
