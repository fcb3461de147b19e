// C2's database schema (gorm v1 AutoMigrate output). The real DDL, captured from a live C2, lives in
// lib/c2/db-schema.sql; until that file exists this module falls back to DDL written from c2-facts.md.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const C2_TABLES = {
  clients: 'clients',
  topics: 'topic_keys',
  topicLinks: 'clients_topickeys',
  clientLinks: 'clients_clientkeys',
} as const;

/** Path of the DDL captured from a real C2 (written by the C2 harness work). */
export const CAPTURED_SCHEMA_FILE = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'c2', 'db-schema.sql');

const FALLBACK_DDL = `
CREATE TABLE clients (
  id serial PRIMARY KEY,
  e4_id bytea NOT NULL UNIQUE,
  name varchar(256) NOT NULL UNIQUE,
  key bytea NOT NULL
);
CREATE TABLE topic_keys (
  id serial PRIMARY KEY,
  topic text NOT NULL UNIQUE,
  key bytea NOT NULL
);
CREATE TABLE clients_topickeys (
  client_id integer NOT NULL,
  topic_key_id integer NOT NULL,
  PRIMARY KEY (client_id, topic_key_id)
);
`;

export interface C2SchemaDdl {
  sql: string;
  /** 'captured' = lib/c2/db-schema.sql from a real C2; 'fallback' = DDL written from the facts page. */
  source: 'captured' | 'fallback';
}

/** DDL that creates C2's tables in an empty database. */
export function c2SchemaDdl(): C2SchemaDdl {
  if (fs.existsSync(CAPTURED_SCHEMA_FILE)) return { sql: fs.readFileSync(CAPTURED_SCHEMA_FILE, 'utf8'), source: 'captured' };
  return { sql: FALLBACK_DDL, source: 'fallback' };
}
