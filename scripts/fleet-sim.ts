#!/usr/bin/env -S npx tsx
// `e4ops fleet-sim`: run a fleet of simulated E4 devices against an MQTT broker (optionally registering
// them with C2). Thin entry point: flags → lib/fleet → JSON status lines on stdout.
import fs from 'node:fs';
import { createLogger } from '../lib/log.ts';
import { defineCommand, runIfMain } from '../lib/cli/command.ts';
import { EXIT } from '../lib/cli/exit-codes.ts';
import { UsageError } from '../lib/cli/flags.ts';
import { createFleet, type Fleet, type FleetSnapshot } from '../lib/fleet/fleet.ts';
import type { DeviceSpec } from '../lib/fleet/simulated-device.ts';
import { createC2Api } from '../lib/c2/c2-api.ts';
import { registerDevicesWithC2 } from '../lib/fleet/register-with-c2.ts';

const C2 = 'Register with C2';
const TRAFFIC = 'Traffic';

function readFlagFile(flag: string, file: string): Buffer {
  try { return fs.readFileSync(file); } catch (e) { throw new UsageError(`--${flag} ${file}: ${(e as Error).message}`); }
}

function devicesFromSnapshot(file: string): { devices: DeviceSpec[]; snapshot: FleetSnapshot } {
  let snapshot: FleetSnapshot;
  try { snapshot = JSON.parse(readFlagFile('keys-in', file).toString('utf8')) as FleetSnapshot; } catch (e) {
    throw e instanceof UsageError ? e : new UsageError(`--keys-in ${file}: not JSON (${(e as Error).message})`);
  }
  if (!Array.isArray(snapshot?.devices)) throw new UsageError(`--keys-in ${file} is not a fleet snapshot (no "devices" array)`);
  return { snapshot, devices: snapshot.devices.map((d) => ({ name: d.name, mode: d.mode, identityKey: Buffer.from(d.identityKey, 'hex') })) };
}

/** Resolves after `seconds` (never when undefined) or when the signal aborts, whichever is first. */
function runFor(seconds: number | undefined, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = seconds === undefined ? undefined : setTimeout(resolve, seconds * 1000);
    signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

function publishCounters(fleet: Fleet, topic: string, everySeconds: number, log: ReturnType<typeof createLogger>): NodeJS.Timeout {
  let counter = 0;
  return setInterval(() => {
    for (const d of fleet.devices()) {
      if (!d.topicKey(topic)) continue;
      fleet.publish(d.name, topic, JSON.stringify({ device: d.name, n: counter })).catch((e) => log.warn('publish_failed', { device: d.name, error: e.message }));
    }
    counter++;
  }, everySeconds * 1000);
}

export const command = defineCommand({
  name: 'fleet-sim',
  summary: 'run simulated E4 devices against an MQTT broker (rehearse resyncs, load-test C2)',
  description: `Starts N simulated devices (names PREFIX0..PREFIX{N-1}), each its own MQTT client subscribed to
its command topic e4/<id>, processing every E4 command C2 sends. Prints one JSON status line per
report, and a "stopped" line at the end. Runs until --duration elapses or SIGINT/SIGTERM (exit 0
either way, after writing --snapshot-out).`,
  flags: {
    broker: { type: 'string', required: true, placeholder: 'URL', help: 'MQTT broker, mqtt://host:port' },
    devices: { type: 'integer', min: 1, default: 100, placeholder: 'N', help: 'number of devices (ignored with --keys-in)' },
    mode: { type: 'string', choices: ['symkey', 'pubkey'], default: 'symkey', placeholder: 'MODE', help: 'E4 key mode of new devices' },
    prefix: { type: 'string', default: 'sim-', placeholder: 'NAME-', help: 'device name prefix' },
    'c2-public-key-file': { type: 'string', placeholder: 'FILE', help: "pubkey mode: C2's raw 32-byte Curve25519 public key" },
    'keys-in': { type: 'string', placeholder: 'SNAPSHOT.json', help: 'start from a snapshot (device names, identity keys, topic keys) instead of new keys' },
    'snapshot-out': { type: 'string', placeholder: 'SNAPSHOT.json', help: "write the devices' key state at exit (SECRET: identity and topic keys; mode 0600)" },
    concurrency: { type: 'integer', min: 1, default: 200, placeholder: 'N', help: 'MQTT connections opened at once' },
    'c2-url': { type: 'string', placeholder: 'URL', group: C2, help: 'register the devices with C2 (NewClient) and link them to every --topic' },
    'c2-ca': { type: 'string', placeholder: 'FILE', group: C2, help: "CA that signed C2's http-cert (with --c2-url)" },
    topic: { type: 'string', multiple: true, placeholder: 'T', group: C2, help: 'topic to create and link every device to' },
    subscribe: { type: 'string', multiple: true, placeholder: 'T', group: TRAFFIC, help: 'data topic every device reads (decrypts) messages on' },
    'publish-every': { type: 'duration', placeholder: 'DURATION', group: TRAFFIC, help: 'each device publishes a protected counter on --publish-topic this often' },
    'publish-topic': { type: 'string', placeholder: 'T', group: TRAFFIC, help: 'topic of --publish-every (default the first --subscribe)' },
    duration: { type: 'duration', placeholder: 'DURATION', help: 'stop after this long (default: run until a signal)' },
    'report-every': { type: 'duration', default: '10s', placeholder: 'DURATION', help: 'status line interval' },
  },
  handlesSignals: true,
  examples: ['e4ops fleet-sim --broker mqtt://127.0.0.1:1883 --devices 1000 --c2-url https://127.0.0.1:8888 --c2-ca ca.pem --topic sensors --duration 10m'],
  async run({ flags }, ctx) {
    const log = createLogger({ component: 'fleet-sim' });
    const c2PublicKey = flags['c2-public-key-file'] ? readFlagFile('c2-public-key-file', flags['c2-public-key-file']) : undefined;
    if (flags.mode === 'pubkey' && !c2PublicKey && !flags['keys-in']) throw new UsageError("pubkey mode needs --c2-public-key-file (C2's Curve25519 public key)");
    if (flags['c2-url'] && !flags['c2-ca']) throw new UsageError("--c2-url needs --c2-ca (the CA that signed C2's http-cert)");
    const publishTopic = flags['publish-topic'] ?? flags.subscribe[0];
    if (flags['publish-every'] !== undefined && !publishTopic) throw new UsageError('--publish-every needs --publish-topic (or a --subscribe topic)');
    const c2Ca = flags['c2-ca'] ? readFlagFile('c2-ca', flags['c2-ca']) : undefined;

    const fromSnapshot = flags['keys-in'] ? devicesFromSnapshot(flags['keys-in']) : undefined;
    const mode = flags.mode as 'symkey' | 'pubkey';
    const devices = fromSnapshot?.devices ?? Array.from({ length: flags.devices }, (_, i) => ({ name: `${flags.prefix}${i}`, mode, c2PublicKey }));

    const fleet = await createFleet({ brokerUrl: flags.broker, devices, connectConcurrency: flags.concurrency, logger: log, restoreFrom: fromSnapshot?.snapshot });
    const timers: NodeJS.Timeout[] = [];
    try {
      if (flags['c2-url']) {
        const api = createC2Api({ baseUrl: flags['c2-url'], ca: c2Ca!, logger: log });
        try { log.info('registered_with_c2', await registerDevicesWithC2(api, fleet.devices(), { topics: flags.topic })); } finally { api.close(); }
      }
      for (const t of flags.subscribe) await fleet.subscribe(fleet.devices().map((d) => d.name), t);
      if (flags['publish-every'] !== undefined) timers.push(publishCounters(fleet, publishTopic!, flags['publish-every'], log));
      const report = () => ctx.stdout(JSON.stringify({ event: 'status', at: new Date().toISOString(), ...fleet.stats() }) + '\n');
      report();
      timers.push(setInterval(report, flags['report-every'] * 1000));
      await runFor(flags.duration, ctx.signal);
    } finally {
      timers.forEach(clearInterval);
      if (flags['snapshot-out']) {
        fs.writeFileSync(flags['snapshot-out'], JSON.stringify(fleet.snapshot(), null, 1), { mode: 0o600 });
        log.info('snapshot_written', { file: flags['snapshot-out'] });
      }
      await fleet.close();
      ctx.stdout(JSON.stringify({ event: 'stopped', ...fleet.stats() }) + '\n');
    }
    return EXIT.ok;
  },
});

await runIfMain(import.meta.url, command);
