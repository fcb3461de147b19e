// bench:resync: what `--follow` costs per reconnecting device, against the real (2019) C2, Mosquitto
// on the rendered mosquitto.conf and simulated devices (lib/fleet). Runs, in one process tree:
//   (1) a resync with presence watched, every device online (the main pass alone);
//   (2) a resync with --follow while BENCH_FOLLOW_AWAY devices are offline during the main pass and
//       all reconnect at once after it: time from the reconnects to the last device served, the
//       commands each got, and the median connect-to-served time from the report;
//   (3) the hand repair it replaces (baseline): the same re-sends, one link call per topic per device,
//       through the API client at the same concurrency, with no presence or pacing.
// Sizes: BENCH_FOLLOW_DEVICES (default 200), BENCH_FOLLOW_TOPICS_PER_DEVICE (10), BENCH_FOLLOW_AWAY (100).
// Last stdout line: one JSON object.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { startThrowawayPostgres } from '../lib/servers/postgres.ts';
import { startThrowawayMosquitto } from '../lib/servers/mosquitto.ts';
import { chownTo } from '../lib/servers/daemon.ts';
import { startC2, c2BinaryAvailable, c2BinaryDir, pickLoopbackHostFor5432 } from '../lib/servers/c2.ts';
import { renderMosquittoConf } from '../lib/render/mosquitto-conf.ts';
import { createC2Api } from '../lib/c2/c2-api.ts';
import { createLogger, createMemoryLogger } from '../lib/log.ts';
import { createFleet } from '../lib/fleet/fleet.ts';
import { watchBrokerPresence } from '../lib/broker-presence/broker-presence.ts';
import { forEachBounded } from '../lib/retry-with-backoff.ts';
import { createResyncC2 } from '../backups/resync/c2-resync-adapter.ts';
import { resyncTopicKeys, DEFAULT_RESYNC_CONCURRENCY } from '../backups/resync/resync-topic-keys.ts';
import { createSealedTopicKeyProbe } from '../backups/resync/sealed-topic-key-probe.ts';
import { parseInventory, renderInventory } from '../lib/fleet-inventory/fleet-inventory.ts';

const DEVICES = Number(process.env.BENCH_FOLLOW_DEVICES ?? 200);
const PER = Number(process.env.BENCH_FOLLOW_TOPICS_PER_DEVICE ?? 10);
const AWAY = Math.min(DEVICES, Number(process.env.BENCH_FOLLOW_AWAY ?? 100));
const TOPICS = Math.max(PER, Math.ceil((DEVICES * PER) / 4)); // each topic shared by about 4 devices
const PASSPHRASE = 'bench passphrase for the c2 database';
const say = (s: string) => process.stderr.write(s + '\n');
const seconds = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e9;

async function main(): Promise<void> {
  if (!c2BinaryAvailable()) throw new Error(`the C2 binary is not built (${c2BinaryDir()}): run bash scripts/build-c2.sh`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-bench-resync-'));
  fs.mkdirSync(path.join(dir, 'mqtt'));
  chownTo(path.join(dir, 'mqtt'), 'mosquitto');
  const pgs = await startThrowawayPostgres({ host: await pickLoopbackHostFor5432(), port: 5432 });
  const broker = await startThrowawayMosquitto({ confText: renderMosquittoConf({ listeners: [{ port: '{{PORT}}', address: '{{HOST}}' }], persistenceDir: path.join(dir, 'mqtt'), allowAnonymous: true }) });
  const presence = await watchBrokerPresence({ url: broker.url, flavor: 'mosquitto' });
  await pgs.createDatabase('c2');
  const c2 = await startC2({ db: { host: pgs.host, database: 'c2', username: 'postgres' }, passphrase: PASSPHRASE, mqttBroker: broker.url, logLevel: 'warn' });
  const api = createC2Api({ baseUrl: c2.baseUrl, ca: c2.ca.certPem });
  const names = Array.from({ length: DEVICES }, (_, i) => `bench-device-${String(i).padStart(5, '0')}`);
  const keys = names.map(() => crypto.randomBytes(32));
  const topics = Array.from({ length: TOPICS }, (_, j) => `bench/topic-${String(j).padStart(6, '0')}`);
  const linksOf = (i: number) => Array.from({ length: PER }, (_, k) => topics[(i * PER + k) % TOPICS]).filter((t, k, a) => a.indexOf(t) === k);
  let fleet: Awaited<ReturnType<typeof createFleet>> | undefined;
  try {
    say(`bench:resync: ${DEVICES} devices x ${PER} topics (${TOPICS} topics), ${AWAY} away during the main pass; seeding C2 ...`);
    await forEachBounded(names, 4, async (n, i) => { await api.newClient(n, keys[i]); });
    await forEachBounded(topics, 4, async (t) => { await api.newTopic(t); });
    fleet = await createFleet({ brokerUrl: broker.url, devices: names.map((name, i) => ({ name, identityKey: keys[i] })), logger: createMemoryLogger('fleet') });
    await forEachBounded(names, 4, async (n, i) => { for (const t of linksOf(i)) await api.linkClientTopic(n, t); });
    const inventory = parseInventory(renderInventory({ version: 1, cryptoMode: 'symkey', clients: names.map((name, i) => ({ name, mqttClientId: fleet!.clientIdOf(name), topics: linksOf(i) })) }), 'inv.yaml', dir);
    const links = names.reduce((a, _, i) => a + linksOf(i).length, 0);
    const probe = createSealedTopicKeyProbe(pgs.url('c2'));
    const resync = (journal: string, followMs?: number) => {
      const { c2: rc, api: a } = createResyncC2({ baseUrl: c2.baseUrl, ca: c2.ca.certPem });
      return resyncTopicKeys({
        c2: rc, journalFile: path.join(dir, journal), automationEnginePaused: true, inventory, presence, probe, followMs,
        expected: { clients: DEVICES, topics: TOPICS, source: 'bench' }, logger: createLogger({ component: 'resync', level: 'warn' }),
      }).finally(() => a.close());
    };

    // (1) main pass with presence, everyone online
    let t0 = process.hrtime.bigint();
    const plain = await resync('all-online.jsonl');
    const mainPassSeconds = seconds(t0);
    if (plain.devices!.notServed.length) throw new Error(`all-online run left ${plain.devices!.notServed.length} devices unserved`);
    say(`  main pass, all online: ${TOPICS} topics, ${links} pushes in ${mainPassSeconds.toFixed(2)} s`);

    // (2) --follow with AWAY devices offline during the main pass, all back at once after it
    const away = names.slice(0, AWAY);
    for (const n of away) await fleet.offline(n);
    await new Promise((r) => setTimeout(r, 1000)); // let the disconnect notices arrive
    const journal = path.join(dir, 'follow.jsonl');
    t0 = process.hrtime.bigint();
    const running = resync('follow.jsonl', 600_000);
    while (!(fs.existsSync(journal) && fs.readFileSync(journal, 'utf8').includes('"type":"finish"'))) await new Promise((r) => setTimeout(r, 50));
    const mainPassWithAway = seconds(t0);
    const back = process.hrtime.bigint();
    await forEachBounded(away, 20, async (n) => { await fleet!.online(n); });
    const followed = await running;
    const followSeconds = seconds(back);
    if (followed.devices!.notServed.length) throw new Error(`follow left ${followed.devices!.notServed.length} devices unserved`);
    const f = followed.devices!.follow!;
    say(`  follow: ${f.reconnectsServed} reconnecting devices served in ${followSeconds.toFixed(2)} s after they came back (${f.commandsPerReconnect} commands each, median ${f.msPerReconnectMedian} ms from connect to served)`);

    // (3) baseline: the same re-sends by hand (one link call per topic per device, same concurrency)
    t0 = process.hrtime.bigint();
    await forEachBounded(away, DEFAULT_RESYNC_CONCURRENCY, async (n) => { for (const t of linksOf(names.indexOf(n))) await api.linkClientTopic(n, t); });
    const handSeconds = seconds(t0);
    say(`  hand re-send of the same keys: ${handSeconds.toFixed(2)} s`);
    const perDeviceMs = (followSeconds * 1000) / AWAY;
    const handPerDeviceMs = (handSeconds * 1000) / AWAY;
    say(`  --follow per reconnecting device: ${perDeviceMs.toFixed(1)} ms vs ${handPerDeviceMs.toFixed(1)} ms by hand (ratio ${(perDeviceMs / handPerDeviceMs).toFixed(2)}); the follow time counts from the first reconnect to the last device confirmed, so it includes the reconnects themselves and one 1.5 s grace window`);
    process.stdout.write(JSON.stringify({
      bench: 'resync', devices: DEVICES, topics: TOPICS, topicsPerDevice: PER, links, reconnecting: AWAY,
      mainPassSeconds: +mainPassSeconds.toFixed(3), mainPassWithAwaySeconds: +mainPassWithAway.toFixed(3),
      followServeSeconds: +followSeconds.toFixed(3), followMsPerReconnectingDevice: +perDeviceMs.toFixed(1),
      commandsPerReconnect: f.commandsPerReconnect, msPerReconnectMedian: f.msPerReconnectMedian,
      handResendSeconds: +handSeconds.toFixed(3), handMsPerDevice: +handPerDeviceMs.toFixed(1),
      ratioFollowVsHand: +(perDeviceMs / handPerDeviceMs).toFixed(2), concurrency: DEFAULT_RESYNC_CONCURRENCY,
      loadAverage: os.loadavg().map((x) => +x.toFixed(2)), c2Version: c2.version,
    }) + '\n');
  } finally {
    await fleet?.close();
    api.close();
    await presence.close();
    await c2.stop();
    await broker.stop();
    await pgs.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

await main();
