import { describe, it, expect, afterAll } from 'vitest';
import mqtt from 'mqtt';
import fs from 'node:fs';
import { startThrowawayPostgres, type ThrowawayPostgres } from '../../lib/servers/postgres.ts';
import { startThrowawayMosquitto, type ThrowawayMosquitto } from '../../lib/servers/mosquitto.ts';
import { createPgClient } from '../../lib/pg/pg-client.ts';

describe('throwaway servers harness', () => {
  const stops: Array<() => Promise<void>> = [];
  afterAll(async () => { for (const s of stops) await s(); });

  it('starts PostgreSQL on a random loopback port, serves SQL, and removes its directory on stop', async () => {
    const pgs: ThrowawayPostgres = await startThrowawayPostgres();
    stops.push(pgs.stop);
    expect(pgs.host).toBe('127.0.0.1');
    const client = createPgClient({ connectionString: await pgs.createDatabase('c2') });
    await client.connect();
    const r = await client.query('select 40 + 2 as n');
    expect(r.rows[0].n).toBe(42);
    await client.end();
    await pgs.stop();
    expect(fs.existsSync(pgs.dataDir)).toBe(false);
  });

  it('starts Mosquitto and round-trips a retained QoS 2 message', async () => {
    const broker: ThrowawayMosquitto = await startThrowawayMosquitto();
    stops.push(broker.stop);
    const pub = await mqtt.connectAsync(broker.url, { clientId: 'pub' });
    await pub.publishAsync('e4/abc', Buffer.from('hello'), { qos: 2, retain: true });
    await pub.endAsync();
    const sub = await mqtt.connectAsync(broker.url, { clientId: 'sub' });
    const got = new Promise<string>((resolve) => sub.on('message', (_t, m) => resolve(m.toString())));
    await sub.subscribeAsync('e4/abc', { qos: 2 });
    expect(await got).toBe('hello');
    await sub.endAsync();
  });
});
