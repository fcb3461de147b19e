#!/usr/bin/env -S npx tsx
// Run a fleet of simulated E4 devices against an MQTT broker (optionally registering them with C2).
// Thin entry point: flags → lib/fleet → JSON status lines on stdout.
import fs from 'node:fs';
import { minimist } from 'zx';
import { createLogger } from '../lib/log.ts';
import { createFleet, type FleetSnapshot } from '../lib/fleet/fleet.ts';
import type { DeviceSpec } from '../lib/fleet/simulated-device.ts';
import { createC2Api } from '../lib/c2/c2-api.ts';
import { registerDevicesWithC2 } from '../lib/fleet/register-with-c2.ts';

const HELP = `Usage:
  fleet-sim.ts --broker mqtt://127.0.0.1:PORT [--devices N] [--mode symkey|pubkey] [--prefix NAME-]
               [--c2-public-key-file F] [--keys-in SNAPSHOT.json] [--snapshot-out SNAPSHOT.json]
               [--c2-url https://HOST:8888 --c2-ca CA.pem [--topic T ...]]
               [--subscribe T ...] [--publish-every SECONDS --publish-topic T]
               [--duration SECONDS] [--report-every SECONDS] [--concurrency N]

Starts N simulated devices (names PREFIX0..PREFIX{N-1}), each its own MQTT client subscribed to its
command topic e4/<id>, processing every E4 command C2 sends. Prints one JSON status line per report.
  --keys-in        start from a snapshot (device names, identity keys, topic keys) instead of new keys
  --snapshot-out   write the devices' key state at exit (SECRET: identity and topic keys; mode 0600)
  --c2-url/--c2-ca register the devices with C2 (NewClient) and link them to every --topic
  --subscribe      data topics every device reads (decrypts) messages on
  --publish-every  each device publishes a protected counter on --publish-topic every SECONDS
  --c2-public-key-file  pubkey mode: C2's raw 32-byte Curve25519 public key
Runs until --duration elapses or SIGINT/SIGTERM. Exit codes: 0 ok, 1 error, 2 usage.`;

const argv = minimist(process.argv.slice(2), {
  string: ['broker', 'devices', 'mode', 'prefix', 'c2-public-key-file', 'keys-in', 'snapshot-out', 'c2-url', 'c2-ca', 'topic', 'subscribe',
    'publish-every', 'publish-topic', 'duration', 'report-every', 'concurrency'],
  boolean: ['help'],
  alias: { h: 'help' },
});
const log = createLogger({ component: 'fleet-sim' });
const list = (v: unknown): string[] => (v === undefined ? [] : Array.isArray(v) ? v.map(String) : [String(v)]);
function usage(msg: string): never {
  console.error(`fleet-sim: ${msg}\n\n${HELP}`);
  process.exit(2);
}

async function main() {
  if (argv.help) { console.log(HELP); return; }
  if (!argv.broker) usage('--broker is required (mqtt://host:port)');
  const mode = (argv.mode ?? 'symkey') as 'symkey' | 'pubkey';
  if (mode !== 'symkey' && mode !== 'pubkey') usage(`--mode must be symkey or pubkey, not "${argv.mode}"`);
  const n = Number(argv.devices ?? 100);
  if (!Number.isInteger(n) || n < 1) usage(`--devices must be a positive integer, not "${argv.devices}"`);
  const c2PublicKey = argv['c2-public-key-file'] ? fs.readFileSync(argv['c2-public-key-file']) : undefined;
  if (mode === 'pubkey' && !c2PublicKey && !argv['keys-in']) usage('pubkey mode needs --c2-public-key-file (C2\'s Curve25519 public key)');

  let devices: DeviceSpec[];
  let snapshot: FleetSnapshot | undefined;
  if (argv['keys-in']) {
    snapshot = JSON.parse(fs.readFileSync(argv['keys-in'], 'utf8')) as FleetSnapshot;
    if (!Array.isArray(snapshot.devices)) usage(`${argv['keys-in']} is not a fleet snapshot (no "devices" array)`);
    devices = snapshot.devices.map((d) => ({ name: d.name, mode: d.mode, identityKey: Buffer.from(d.identityKey, 'hex') }));
  } else {
    const prefix = argv.prefix ?? 'sim-';
    devices = Array.from({ length: n }, (_, i) => ({ name: `${prefix}${i}`, mode, c2PublicKey }));
  }

  const fleet = await createFleet({ brokerUrl: argv.broker, devices, connectConcurrency: Number(argv.concurrency ?? 200), logger: log });
  if (snapshot) fleet.restore(snapshot);
  let stopping = false;
  const finish = async (code: number) => {
    if (stopping) return;
    stopping = true;
    if (argv['snapshot-out']) {
      fs.writeFileSync(argv['snapshot-out'], JSON.stringify(fleet.snapshot(), null, 1), { mode: 0o600 });
      log.info('snapshot_written', { file: argv['snapshot-out'] });
    }
    await fleet.close();
    console.log(JSON.stringify({ event: 'stopped', ...fleet.stats() }));
    process.exit(code);
  };
  process.once('SIGINT', () => void finish(0));
  process.once('SIGTERM', () => void finish(0));

  if (argv['c2-url']) {
    if (!argv['c2-ca']) usage('--c2-url needs --c2-ca (the CA that signed C2\'s http-cert)');
    const api = createC2Api({ baseUrl: argv['c2-url'], ca: fs.readFileSync(argv['c2-ca']), logger: log });
    const r = await registerDevicesWithC2(api, fleet.devices(), { topics: list(argv.topic) });
    api.close();
    log.info('registered_with_c2', r);
  }
  const subscribe = list(argv.subscribe);
  for (const t of subscribe) await fleet.subscribe(fleet.devices().map((d) => d.name), t);

  const timers: NodeJS.Timeout[] = [];
  if (argv['publish-every']) {
    const topic = argv['publish-topic'] ?? subscribe[0];
    if (!topic) usage('--publish-every needs --publish-topic (or a --subscribe topic)');
    let counter = 0;
    timers.push(setInterval(() => {
      for (const d of fleet.devices()) {
        if (!d.topicKey(topic)) continue;
        fleet.publish(d.name, topic, JSON.stringify({ device: d.name, n: counter })).catch((e) => log.warn('publish_failed', { device: d.name, error: e.message }));
      }
      counter++;
    }, Number(argv['publish-every']) * 1000));
  }
  const report = () => console.log(JSON.stringify({ event: 'status', at: new Date().toISOString(), ...fleet.stats() }));
  report();
  timers.push(setInterval(report, Number(argv['report-every'] ?? 10) * 1000));
  if (argv.duration) setTimeout(() => { timers.forEach(clearInterval); void finish(0); }, Number(argv.duration) * 1000);
}

main().catch((err) => {
  log.error('fleet_sim_failed', { error: (err as Error).message });
  process.exit(1);
});
