// Merged into lib/c2/db-schema.ts (with the fallback DDL removed: the captured schema is always there).
// This re-export stays only until backups/drill/ and backups/resync/ import lib/c2/db-schema.ts directly;
// those folders are being reworked on other branches. New code imports lib/c2/db-schema.ts.
export { C2_TABLES, c2SchemaDdl, C2_DB_SCHEMA_FILE as CAPTURED_SCHEMA_FILE, type C2SchemaDdl } from '../c2/db-schema.ts';
