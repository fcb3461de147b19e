// A scratch C2 for a drill: the real C2 binary on the restored database, talking to its own scratch
// Mosquitto (never the production broker), and the check that it serves what the database holds.
import { startC2, type RunningC2 } from '../../lib/servers/c2.ts';
import { startThrowawayMosquitto, type ThrowawayMosquitto } from '../../lib/servers/mosquitto.ts';
import { createC2Api, type C2Api } from '../../lib/c2/c2-api.ts';
import { C2_TABLES } from '../../lib/c2/db-schema.ts';
import { removeDirSync, type ScratchResources } from './scratch-resources.ts';
import { killTreeSync } from '../../lib/process-tree.ts';
import type { DrillCheck } from './restored-database-checks.ts';
import { createPgClient } from '../../lib/pg/pg-client.ts';

export interface ScratchC2 {
  c2: RunningC2;
  broker: ThrowawayMosquitto;
  api: C2Api;
}

export async function startScratchC2(opts: { dbUrl: string; dbHost: string; passphrase: string; binary?: string; image?: string; dockerHost?: string; scratch: ScratchResources; workDir: string }): Promise<ScratchC2> {
  const u = new URL(opts.dbUrl);
  const broker = await startThrowawayMosquitto();
  opts.scratch.add(`scratch Mosquitto ${broker.url}`, () => broker.stop(), () => { killTreeSync(broker.daemon.child.pid); removeDirSync(broker.dir); });
  const c2 = await startC2({
    binary: opts.binary,
    image: opts.image,
    dockerHost: opts.dockerHost,
    db: {
      host: opts.dbHost,
      database: decodeURIComponent(u.pathname.replace(/^\//, '')),
      username: decodeURIComponent(u.username) || 'postgres',
      ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    },
    passphrase: opts.passphrase,
    mqttBroker: broker.url,
    mqttClientId: `e4ops-drill-${process.pid}`,
    logLevel: 'info',
  });
  opts.scratch.add(`scratch C2 ${c2.baseUrl}${c2.container ? ` (container ${c2.container})` : ''}`, () => c2.stop(), () => { killTreeSync(c2.daemon.child.pid); c2.killSync(); removeDirSync(c2.dir); });
  const api = createC2Api({ baseUrl: c2.baseUrl, ca: c2.ca.certPem });
  opts.scratch.add('C2 API client', async () => api.close());
  return { c2, broker, api };
}

/**
 * Through C2's API: the same client and topic counts as the database, every topic (all of them up to
 * 20,000, else a sample), and for a sample of clients the same number of linked topics.
 */
export async function checkC2ServesRestoredData(s: ScratchC2, dbUrl: string, sample = 50): Promise<DrillCheck> {
  const db = createPgClient(dbUrl);
  await db.connect();
  try {
    const problems: string[] = [];
    const [apiClients, apiTopics] = await Promise.all([s.api.countClients(), s.api.countTopics()]);
    const dbCounts = (await db.query<{ clients: number; topics: number }>(
      `SELECT (SELECT count(*) FROM ${C2_TABLES.clients})::int AS clients, (SELECT count(*) FROM ${C2_TABLES.topics})::int AS topics`)).rows[0];
    if (apiClients !== dbCounts.clients) problems.push(`C2 counts ${apiClients} clients, the database ${dbCounts.clients}`);
    if (apiTopics !== dbCounts.topics) problems.push(`C2 counts ${apiTopics} topics, the database ${dbCounts.topics}`);
    let topicNote: string;
    if (dbCounts.topics <= 20_000) {
      const served = new Set(await s.api.allTopics());
      const missing = (await db.query<{ topic: string }>(`SELECT topic FROM ${C2_TABLES.topics}`)).rows.map((r) => r.topic).filter((t) => !served.has(t));
      if (missing.length) problems.push(`${missing.length} topic(s) in the database are not listed by C2: ${missing.slice(0, 5).join(', ')}`);
      topicNote = `all ${served.size} topics listed`;
    } else {
      const rows = (await db.query<{ topic: string }>(`SELECT topic FROM ${C2_TABLES.topics} ORDER BY random() LIMIT $1`, [sample])).rows;
      for (const r of rows) {
        const n = await s.api.countClientsForTopic(r.topic).catch((e) => { problems.push(`topic ${r.topic}: ${(e as Error).message}`); return -1; });
        if (n < 0) continue;
      }
      topicNote = `${rows.length} sampled topics answered`;
    }
    const clients = (await db.query<{ name: string; links: number }>(
      `SELECT c.name, (SELECT count(*) FROM ${C2_TABLES.topicLinks} l JOIN ${C2_TABLES.topics} t ON t.id = l.topic_key_id WHERE l.client_id = c.id)::int AS links
         FROM (SELECT id, name FROM ${C2_TABLES.clients} ORDER BY random() LIMIT $1) c`, [sample])).rows;
    for (const c of clients) {
      const n = await s.api.countTopicsForClient(c.name).catch((e) => { problems.push(`client ${c.name}: ${(e as Error).message}`); return -1; });
      if (n >= 0 && n !== c.links) problems.push(`client ${c.name}: C2 lists ${n} topics, the database links ${c.links}`);
    }
    return problems.length
      ? { name: 'c2-serves-restored-data', ok: false, detail: `scratch C2 ${s.c2.baseUrl} differs from the restored database: ${problems.slice(0, 10).join('; ')}` }
      : { name: 'c2-serves-restored-data', ok: true, detail: `scratch C2 (${s.c2.version}) on the restored database serves ${apiClients} clients and ${apiTopics} topics; ${topicNote}; ${clients.length} sampled clients have their links` };
  } finally {
    await db.end();
  }
}
