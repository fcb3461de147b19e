// A set taken without --passphrase-file records no passphrase fingerprint. Such a set still passes the
// drill when every stored key opens with the drill's passphrase (that proves the passphrase better than a
// fingerprint could); the report carries a warning so the operator adds --passphrase-file to the backup job.
import type { BackupManifest } from '../manifest.ts';
import type { DrillCheck } from './restored-database-checks.ts';

export function missingFingerprintWarning(manifest: BackupManifest): DrillCheck | undefined {
  if (manifest.passphraseFingerprint) return undefined;
  return {
    name: 'passphrase-fingerprint', ok: true,
    detail: 'WARNING: the manifest records no passphrase fingerprint (the backup ran without --passphrase-file); '
      + 'the passphrase is proven by every key opening instead. Add --passphrase-file to the backup job so drills can tell a wrong escrowed passphrase at once',
  };
}
