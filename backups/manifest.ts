// The manifest of a backup set: validated with ajv against backups/manifest-schema.json both when
// written and when read, so a set is either fully described or reported as damaged.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileSchemaValidator } from '../lib/json-schema.ts';
import { BackupError } from './exit-codes.ts';
import type { C2CryptoMode, C2Inventory } from '../lib/c2-db/inventory.ts';

export const MANIFEST_FILE = 'manifest.json';
export const DRILL_MARKER_FILE = 'drill-verified.json';
export const MANIFEST_SCHEMA_FILE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'manifest-schema.json');

export type ObjectKind = 'postgres-dump' | 'c2-configs' | 'rendered-configs' | 'pulumi-stack' | 'elasticsearch-snapshot' | 'extra-files';
export interface ManifestObject {
  name: string;
  kind: ObjectKind;
  format: 'pg_dump-custom' | 'tar' | 'json';
  compression: 'none' | 'zstd' | 'pg_dump-zlib';
  encryption: 'age';
  size: number;
  sha256: string;
}

export interface BackupManifest {
  kind: 'e4ops-backup-set';
  schemaVersion: 1;
  setId: string;
  startedAt: string;
  finishedAt: string;
  toolkitVersion: string;
  host: string;
  postgres: { serverVersion: string; serverVersionNum?: number; database: string; host?: string; pgDumpVersion: string; snapshot?: string };
  c2: { cryptoMode: C2CryptoMode; cryptoModeSource: 'config' | 'database' | 'none'; inventory: C2Inventory };
  objects: ManifestObject[];
  recipients: string[];
  passphraseFingerprint: { algorithm: string; value: string } | null;
  elasticsearch?: { repository: string; snapshot: string; state: string; indices?: string[]; startedAt?: string; finishedAt?: string };
}

const manifestSchema = compileSchemaValidator<BackupManifest>(JSON.parse(fs.readFileSync(MANIFEST_SCHEMA_FILE, 'utf8')), { strict: true });

/** Schema errors of a candidate manifest (empty when valid). */
export function manifestErrors(doc: unknown): string {
  return manifestSchema.errors(doc);
}

/** Serialise after validating; a manifest we would not accept on read is never written. */
export function serializeManifest(m: BackupManifest): string {
  const err = manifestErrors(m);
  if (err) throw new BackupError('internal', `refusing to write an invalid manifest for ${m.setId}: ${err}`);
  return JSON.stringify(m, null, 2) + '\n';
}

/** Parse and validate; `where` names the file for the error message. */
export function parseManifest(text: string, where: string): BackupManifest {
  let doc: unknown;
  try { doc = JSON.parse(text); } catch (e) {
    throw new BackupError('integrity', `manifest ${where} is not valid JSON (${(e as Error).message}): the set cannot be trusted; use another set`, { manifest: where });
  }
  const err = manifestErrors(doc);
  if (err) throw new BackupError('integrity', `manifest ${where} does not match backups/manifest-schema.json: ${err}`, { manifest: where });
  return doc as BackupManifest;
}
