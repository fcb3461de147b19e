// bench:fleet — how many simulated E4 devices one Node process runs on one Mosquitto.
// Each phase runs in its own child process (same process tree) so peak memory is measured cleanly:
//   ours:     N simulated devices (createFleet) connect, subscribe to e4/<id>, and each receives one
//             SetTopicKey sealed with its identity key (published retained at QoS 2 as C2 does), opens it
//             and stores the key. Timed until every device holds its key.
//   baseline: N plain mqtt.js clients doing the same connect/subscribe/receive of the same sealed bytes
//             with no E4 work: the MQTT floor the simulator sits on.
// Target (issue 3): 10,000 devices, each receiving one SetTopicKey, in under 60 s on 2 cores.
//   c2 (only with --via-c2 M): M devices registered with the REAL C2 (scripts/build-c2.sh), then linked to one
//             topic through the API; C2 seals and publishes each SetTopicKey. Timed from the first link call until
//             every device holds the key C2 stores: the rate at which C2 can push keys (e.g. for a resync).
// Usage: npm run bench:fleet -- [--devices 10000] [--concurrency 200] [--via-c2 1000]
// Last stdout line: one JSON object.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import crypto from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';
import { startThrowawayMosquitto } from '../lib/servers/mosquitto.ts';
import { createFleet } from '../lib/fleet/fleet.ts';
import { createCommandPublisher, type CommandPublisher } from '../lib/fleet/command-publisher.ts';
import { topicHash, clientIdFromName, commandTopicForClient } from '../lib/e4/ids.ts';
import { createLogger } from '../lib/log.ts';

const TARGET_DEVICES = 10_000;
const TARGET_SECONDS = 60;
const TOPIC = 'bench/fleet/topic';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}
function argStr(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function memorySampler() {
  let peak = process.memoryUsage.rss();
  const iv = setInterval(() => { peak = Math.max(peak, process.memoryUsage.rss()); }, 100);
  return { stop: () => { clearInterval(iv); return Math.max(peak, process.memoryUsage.rss()); } };
}

async function sendAll(pub: CommandPublisher, items: { send: () => Promise<void> }[], concurrency = 500) {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < items.length) await items[next++].send();
  }));
}

interface PhaseResult { phase: string; devices: number; connectSeconds: number; deliverSeconds: number; totalSeconds: number; peakRssMiB: number; received: number; errors: number }

async function runOurs(broker: string, n: number, concurrency: number): Promise<PhaseResult> {
  const mem = memorySampler();
  const names = Array.from({ length: n }, (_, i) => `bench-dev-${i}`);
  const t0 = performance.now();
  const fleet = await createFleet({
    brokerUrl: broker, devices: names.map((name) => ({ name, mode: 'symkey' as const })), connectConcurrency: concurrency,
    logger: createLogger({ component: 'fleet', level: 'warn' }),
  });
  const t1 = performance.now();
  const pub = await createCommandPublisher({ brokerUrl: broker });
  const hash = topicHash(TOPIC);
  const key = crypto.randomBytes(32);
  const done = fleet.waitFor((f) => f.commandsProcessed + f.commandErrors >= n, { timeoutMs: 600_000, what: 'SetTopicKey on every device' });
  await sendAll(pub, fleet.devices().map((d) => ({ send: () => pub.send(d, { type: 'SetTopicKey', key, topicHash: hash }) })));
  await done;
  const t2 = performance.now();
  const ok = fleet.devices().filter((d) => d.topicKey(TOPIC)?.equals(key)).length;
  const errors = fleet.stats().commandErrors;
  await pub.close();
  await fleet.close();
  return { phase: 'ours', devices: n, connectSeconds: (t1 - t0) / 1000, deliverSeconds: (t2 - t1) / 1000, totalSeconds: (t2 - t0) / 1000, peakRssMiB: mem.stop() / 2 ** 20, received: ok, errors };
}

async function runBaseline(broker: string, n: number, concurrency: number): Promise<PhaseResult> {
  const mem = memorySampler();
  const topics = Array.from({ length: n }, (_, i) => commandTopicForClient(clientIdFromName(`bench-dev-${i}`)));
  const t0 = performance.now();
  const clients: MqttClient[] = [];
  let received = 0;
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < topics.length) {
      const i = next++;
      const c = await mqtt.connectAsync(broker, { clientId: `e4raw-${i}`, keepalive: 300, reconnectPeriod: 0, clean: true });
      c.on('message', () => { received++; });
      await c.subscribeAsync(topics[i], { qos: 1 });
      clients.push(c);
    }
  }));
  const t1 = performance.now();
  // Same bytes on the wire as ours: one sealed 49-byte command per device.
  const pub = await mqtt.connectAsync(broker, { clientId: 'e4raw-publisher', reconnectPeriod: 0 });
  const payload = crypto.randomBytes(8 + 16 + 49);
  let sent = 0;
  // At most 16 QoS 2 publishes in flight: Mosquitto drops a v3.1.1 client's QoS 1/2 messages beyond
  // max_inflight_messages (20) instead of queueing them (the command publisher does the same).
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (sent < topics.length) await pub.publishAsync(topics[sent++], payload, { qos: 2, retain: true });
  }));
  while (received < n) await new Promise((r) => setTimeout(r, 20));
  const t2 = performance.now();
  await pub.endAsync();
  await Promise.all(clients.map((c) => c.endAsync(true)));
  return { phase: 'baseline', devices: n, connectSeconds: (t1 - t0) / 1000, deliverSeconds: (t2 - t1) / 1000, totalSeconds: (t2 - t0) / 1000, peakRssMiB: mem.stop() / 2 ** 20, received, errors: 0 };
}

async function runViaC2(m: number): Promise<PhaseResult & { linksPerSecond: number }> {
  const { startC2TestStack } = await import('../lib/servers/c2.ts');
  const { createC2Api } = await import('../lib/c2/c2-api.ts');
  const { registerDevicesWithC2 } = await import('../lib/fleet/register-with-c2.ts');
  const mem = memorySampler();
  const stack = await startC2TestStack();
  const api = createC2Api({ baseUrl: stack.c2.baseUrl, ca: stack.c2.ca.certPem, logger: createLogger({ component: 'c2-api', level: 'warn' }) });
  try {
    const t0 = performance.now();
    const fleet = await createFleet({
      brokerUrl: stack.mosquitto.url, devices: Array.from({ length: m }, (_, i) => ({ name: `c2-dev-${i}` })),
      logger: createLogger({ component: 'fleet', level: 'warn' }),
    });
    await registerDevicesWithC2(api, fleet.devices());
    await api.newTopic(TOPIC);
    const t1 = performance.now();
    const done = fleet.waitFor((f) => f.commandsProcessed + f.commandErrors >= m, { timeoutMs: 600_000, what: 'SetTopicKey from C2' });
    let next = 0;
    await Promise.all(Array.from({ length: 8 }, async () => {
      while (next < m) await api.linkClientTopic(`c2-dev-${next++}`, TOPIC);
    }));
    await done;
    const t2 = performance.now();
    const received = fleet.devices().filter((d) => d.topicKey(TOPIC)).length;
    const errors = fleet.stats().commandErrors;
    await fleet.close();
    return {
      phase: 'c2', devices: m, connectSeconds: (t1 - t0) / 1000, deliverSeconds: (t2 - t1) / 1000, totalSeconds: (t2 - t0) / 1000,
      peakRssMiB: mem.stop() / 2 ** 20, received, errors, linksPerSecond: m / ((t2 - t1) / 1000),
    };
  } finally {
    api.close();
    await stack.stop();
  }
}

function runChild(phase: string, broker: string, n: number, concurrency: number, extra: string[] = []): Promise<PhaseResult> {
  return new Promise((resolve, reject) => {
    const self = fileURLToPath(import.meta.url);
    const child = spawn(process.execPath, [...process.execArgv, self, '--phase', phase, '--broker', broker, '--devices', String(n), '--concurrency', String(concurrency), ...extra], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (c) => (out += c));
    child.on('exit', (code) => {
      const last = out.trim().split('\n').pop() ?? '';
      if (code !== 0) return reject(new Error(`${phase} phase exited ${code}: ${out.slice(-2000)}`));
      try { resolve(JSON.parse(last)); } catch { reject(new Error(`${phase} phase printed no JSON: ${out.slice(-2000)}`)); }
    });
  });
}

async function main() {
  const n = arg('devices', Number(process.env.E4OPS_BENCH_DEVICES ?? TARGET_DEVICES));
  const concurrency = arg('concurrency', 200);
  const phase = argStr('phase');
  if (phase) {
    const broker = argStr('broker')!;
    const r = phase === 'ours' ? await runOurs(broker, n, concurrency)
      : phase === 'c2' ? await runViaC2(arg('via-c2', 1000))
        : await runBaseline(broker, n, concurrency);
    console.log(JSON.stringify(r));
    process.exit(0);
  }
  const results: Record<string, PhaseResult> = {};
  for (const p of ['baseline', 'ours']) {
    // A fresh broker per phase: retained commands of one phase must not reach the other.
    const mq = await startThrowawayMosquitto();
    try {
      results[p] = await runChild(p, mq.url, n, concurrency);
      console.error(`${p}: ${JSON.stringify(results[p])}`);
    } finally {
      await mq.stop();
    }
  }
  const viaC2 = arg('via-c2', 0);
  let c2: (PhaseResult & { linksPerSecond?: number }) | undefined;
  if (viaC2 > 0) {
    c2 = await runChild('c2', 'unused', viaC2, concurrency, ['--via-c2', String(viaC2)]);
    console.error(`c2: ${JSON.stringify(c2)}`);
  }
  const ours = results.ours;
  const base = results.baseline;
  const summary = {
    bench: 'fleet',
    devices: n,
    oursSeconds: +ours.totalSeconds.toFixed(2),
    baselineSeconds: +base.totalSeconds.toFixed(2),
    ratio: +(ours.totalSeconds / base.totalSeconds).toFixed(2),
    oursConnectSeconds: +ours.connectSeconds.toFixed(2),
    oursDeliverSeconds: +ours.deliverSeconds.toFixed(2),
    oursPeakRssMiB: Math.round(ours.peakRssMiB),
    baselinePeakRssMiB: Math.round(base.peakRssMiB),
    devicesHoldingKey: ours.received,
    commandErrors: ours.errors,
    target: { devices: TARGET_DEVICES, seconds: TARGET_SECONDS },
    targetMet: n >= TARGET_DEVICES && ours.received === n && ours.totalSeconds < TARGET_SECONDS,
    ...(c2 ? { viaC2: { devices: c2.devices, linkSeconds: +c2.deliverSeconds.toFixed(2), keysPerSecond: Math.round(c2.linksPerSecond ?? 0), devicesHoldingKey: c2.received, commandErrors: c2.errors } } : {}),
  };
  console.log(JSON.stringify(summary));
}

main().catch((err) => { console.error(err); process.exit(1); });
