// Reads digests of the sealed topic keys straight from the restored database. A resync killed while
// a NewTopic request was in flight cannot tell from its journal whether C2 rotated that topic; the
// digest recorded before the request, compared with the one stored now, settles it without rotating
// the topic a second time. Read-only; the sealed values are hashed, never decrypted or logged.
import type pg from 'pg';
import { C2_TABLES } from '../../lib/c2/db-schema.ts';
import type { SealedTopicKeyProbe } from './resync-topic-keys.ts';
import { withPgClient } from '../../lib/pg/pg-client.ts';

export function createSealedTopicKeyProbe(databaseUrl: string): SealedTopicKeyProbe {
  const withClient = <T>(fn: (c: pg.Client) => Promise<T>): Promise<T> => withPgClient(databaseUrl, async (client) => {
    await client.query('SET default_transaction_read_only = on');
    return fn(client);
  });
  return {
    clientsByTopic: (topics) => withClient(async (client) => {
      const out = new Map<string, string[]>();
      const r = await client.query<{ topic: string; name: string }>(
        `SELECT t.topic, c.name FROM ${C2_TABLES.topicLinks} l JOIN ${C2_TABLES.topics} t ON t.id = l.topic_key_id JOIN ${C2_TABLES.clients} c ON c.id = l.client_id
          WHERE t.topic = ANY($1::text[])`, [topics]);
      for (const row of r.rows) {
        const list = out.get(row.topic);
        if (list) list.push(row.name); else out.set(row.topic, [row.name]);
      }
      return out;
    }),
    // Sealing is deterministic (AES-SIV, no per-row salt): the same identity key gives the same digest,
    // so digests before and after a NewClient tell whether the key changed, without the passphrase.
    clientKeyDigests: (names) => withClient(async (client) => {
      const r = await client.query<{ name: string; digest: string }>(
        `SELECT name, encode(sha256(key), 'hex') AS digest FROM ${C2_TABLES.clients} WHERE name = ANY($1::text[])`, [names]);
      return new Map(r.rows.map((row) => [row.name, row.digest]));
    }),
    digests: (topics) => withClient(async (client) => {
      const out = new Map<string, string>();
      for (let i = 0; i < topics.length; i += 10_000) {
        const r = await client.query<{ topic: string; digest: string }>(
          `SELECT topic, encode(sha256(key), 'hex') AS digest FROM ${C2_TABLES.topics} WHERE topic = ANY($1::text[])`, [topics.slice(i, i + 10_000)]);
        for (const row of r.rows) out.set(row.topic, row.digest);
      }
      return out;
    }),
  };
}
