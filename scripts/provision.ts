#!/usr/bin/env -S npx tsx
// `e4ops provision`: bring devices into the fleet with their first keys: pre-keyed here (new), factory-set
// (import), trust on first use (new --tofu); rotate factory/TOFU keys and deliver every topic key when a
// device first connects (first-use); show the inventory's devices (list). Library: provisioning/.
import fs from 'node:fs';
import { createLogger } from '../lib/log.ts';
import { defineCommand, runIfMain } from '../lib/cli/command.ts';
import { EXIT, OpsError } from '../lib/cli/exit-codes.ts';
import { UsageError, type FlagSpecs } from '../lib/cli/flags.ts';
// The libraries load when a subcommand runs, not when flags are checked: --help and usage errors stay quick.
const load = async () => ({
  ...(await import('../lib/age.ts')),
  ...(await import('../provisioning/provisioning-c2.ts')),
  ...(await import('../provisioning/provisioning-input.ts')),
  ...(await import('../provisioning/provision-new.ts')),
  ...(await import('../provisioning/first-use.ts')),
  ...(await import('../provisioning/broker-watch.ts')),
  ...(await import('../provisioning/provision-list.ts')),
  ...(await import('../lib/progress-line.ts')),
});
type Lib = Awaited<ReturnType<typeof load>>;
type ProvisionReport = import('../provisioning/provision-new.ts').ProvisionReport;
type ProvisionC2 = import('../provisioning/provisioning-c2.ts').ProvisioningC2;

const C2 = 'C2 connection';
const c2Flags = {
  'c2-url': { type: 'string', required: true, placeholder: 'URL', group: C2, help: "C2's HTTPS API, e.g. https://10.0.0.5:8888" },
  'c2-ca': { type: 'string', placeholder: 'FILE', group: C2, help: "CA certificate that signed C2's http-cert (PEM)" },
  'c2-cert': { type: 'string', placeholder: 'FILE', group: C2, help: 'client certificate, if a proxy in front of C2 wants one' },
  'c2-key': { type: 'string', placeholder: 'FILE', group: C2, help: 'key of --c2-cert' },
} as const satisfies FlagSpecs;
const inventoryFlag = {
  inventory: { type: 'string', required: true, placeholder: 'FILE', help: 'fleet inventory (YAML) to write: the one the resync reads; created if missing' },
} as const satisfies FlagSpecs;
const registerFlags = {
  ...c2Flags,
  ...inventoryFlag,
  topics: { type: 'string', required: true, placeholder: 'T1,T2', help: 'topics every device is linked to (must exist in C2 unless --create-topics)' },
  'escrow-recipient': { type: 'string', multiple: true, placeholder: 'AGE_PUBKEY', help: 'age public key escrowed identity keys are encrypted to (repeatable; recorded in the inventory, needed the first time)' },
  'create-topics': { type: 'boolean', help: 'create topics C2 does not have yet' },
  force: { type: 'boolean', help: 're-key devices already provisioned or registered in C2 (refused for devices already rotated)' },
  concurrency: { type: 'integer', min: 1, default: 4, placeholder: 'N', help: 'devices in flight (C2 keeps only two idle DB connections)' },
  'dry-run': { type: 'boolean', help: 'check everything and show what would be registered; change nothing' },
  json: { type: 'boolean', help: 'print the result as JSON' },
} as const satisfies FlagSpecs;

function readFlagFile(flag: string, f: string | undefined): Buffer | undefined {
  if (!f) return undefined;
  try { return fs.readFileSync(f); } catch (e) { throw new UsageError(`--${flag} ${f}: ${(e as Error).message}`); }
}

function connectC2(lib: Lib, flags: { 'c2-url': string; 'c2-ca'?: string; 'c2-cert'?: string; 'c2-key'?: string }) {
  try {
    return lib.createProvisioningC2({
      baseUrl: flags['c2-url'], ca: readFlagFile('c2-ca', flags['c2-ca']), cert: readFlagFile('c2-cert', flags['c2-cert']),
      key: readFlagFile('c2-key', flags['c2-key']), logger: createLogger({ component: 'c2-api' }),
    });
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`--c2-url ${flags['c2-url']}: ${(e as Error).message}`);
  }
}

/** Library errors → the one exit-code table. */
async function classified<T>(f: (lib: Lib) => Promise<T>): Promise<T> {
  const lib = await load();
  try { return await f(lib); } catch (e) {
    if (e instanceof lib.ProvisionInputError || e instanceof lib.AgeError) throw new UsageError((e as Error).message);
    if (e instanceof lib.ProvisionRefusedError) throw new OpsError('refused', e.message);
    if (e instanceof lib.C2UnreachableError) throw new OpsError('c2Unreachable', e.message);
    throw e;
  }
}

function printReport(r: ProvisionReport, json: boolean, out: (t: string) => void): void {
  if (json) { out(JSON.stringify(r) + '\n'); return; }
  const verb = r.dryRun ? 'would provision' : 'provisioned';
  out(`${verb} ${r.provisioned.length} device(s)${r.replaced.length ? `, re-keyed ${r.replaced.length} (--force)` : ''}; ${r.unchanged.length} already provisioned, left as they are${r.createdTopics.length ? `; topics created: ${r.createdTopics.join(', ')}` : ''}\n`);
  if (r.bundleDir) out(`bundles and labels: ${r.bundleDir}\n`);
  out(`inventory: ${r.inventoryFile}\n`);
  if (!r.dryRun && r.provisioned.length + r.replaced.length) out('next: keep `e4ops provision first-use --follow 24h` running while the devices are switched on: it delivers every topic key once each device is online\n');
}

const newCommand = defineCommand({
  name: 'provision new',
  summary: 'pre-key devices here: generate identity keys, register them with C2, write bundles and QR labels',
  description: `Generates each device's identity key (symkey: 32 random bytes), registers it with C2 (NewClient),
links its topics and writes, per device, DIR/<name>.json (0600: name, id, idKey, commandTopic, topics,
broker) or DIR/<name>.json.age with --bundle-recipient, and a label DIR/<name>.label.png/.svg: a QR code
of the name and id, never the key. The key is escrowed (age, to --escrow-recipient) next to the inventory.
--tofu: the key is not escrowed; it is rotated when the device first connects (provision first-use), and
only the rotated key is escrowed. Re-running with the same names changes nothing without --force.`,
  flags: {
    count: { type: 'integer', min: 1, placeholder: 'N', help: 'number of devices (with --name-prefix)' },
    'name-prefix': { type: 'string', placeholder: 'P', help: 'devices are named P0001, P0002, ...' },
    'names-file': { type: 'string', placeholder: 'FILE', help: 'one device name per line (instead of --count/--name-prefix)' },
    out: { type: 'string', required: true, placeholder: 'DIR', help: 'folder for bundles and labels (created 0700)' },
    'bundle-recipient': { type: 'string', multiple: true, placeholder: 'AGE_PUBKEY', help: 'age-encrypt each bundle to this public key (repeatable), e.g. the provisioning station\'s' },
    broker: { type: 'string', required: true, placeholder: 'URL', help: 'MQTT broker the devices connect to (written into each bundle), e.g. tcp://broker.example:1883' },
    tofu: { type: 'boolean', help: 'trust on first use: rotate the key when the device first connects; escrow only the rotated key (least safe)' },
    'crypto-mode': { type: 'string', choices: ['symkey', 'pubkey'], default: 'symkey', help: 'identity keys: symkey (32 random bytes) or pubkey (Ed25519; refused on a C2 without pubkey mode)' },
    ...registerFlags,
  },
  exitCodes: ['refused', 'c2Unreachable'],
  handlesSignals: true,
  examples: ['e4ops provision new --count 100 --name-prefix sensor- --topics plant/t,plant/alarms --broker tcp://mqtt.plant:1883 --out ./bundles --inventory fleet.yaml --c2-url https://c2:8888 --c2-ca ca.pem --escrow-recipient age1...'],
  async run({ flags }, ctx) {
    const byCount = flags.count !== undefined || flags['name-prefix'] !== undefined;
    if (byCount === !!flags['names-file']) throw new UsageError('give either --count N with --name-prefix P, or --names-file FILE');
    if (byCount && (flags.count === undefined || flags['name-prefix'] === undefined)) throw new UsageError('--count and --name-prefix go together: give both');
    return classified(async (lib) => {
      const names = flags['names-file'] ? lib.namesFromFile(flags['names-file']) : lib.namesFromCount(flags.count!, flags['name-prefix']!);
      const bundleRecipients = flags['bundle-recipient'].map((r, i) => lib.checkAgeRecipient(r, `--bundle-recipient #${i + 1}`));
      const c2 = connectC2(lib, flags);
      try {
        const report = await lib.provisionDevices({
          ...commonOptions(lib, flags, c2, ctx.signal),
          devices: names.map((name) => ({ name })), method: flags.tofu ? 'tofu' : 'prekeyed',
          outDir: flags.out, bundleRecipients, cryptoMode: flags['crypto-mode'] as 'symkey' | 'pubkey',
        });
        printReport(report, flags.json, ctx.stdout);
        return ctx.signal.aborted ? EXIT.interrupted : EXIT.ok;
      } finally { c2.close(); }
    });
  },
});

function commonOptions(lib: Lib, flags: { topics: string; broker?: string; inventory: string; 'escrow-recipient': string[]; 'create-topics': boolean; force: boolean; concurrency: number; 'dry-run': boolean }, c2: ProvisionC2, signal: AbortSignal) {
  let progress: ReturnType<Lib['createProgressLine']> | undefined;
  return {
    onProgress: (done: number, total: number) => {
      progress ??= lib.createProgressLine('provision', total);
      progress.tick(done, 0);
      if (done === total) progress.end();
    },
    c2, topics: lib.checkTopics(flags.topics.split(',')), ...(flags.broker ? { broker: flags.broker } : {}), inventoryFile: flags.inventory,
    escrowRecipients: flags['escrow-recipient'], createTopics: flags['create-topics'], force: flags.force,
    concurrency: flags.concurrency, dryRun: flags['dry-run'], signal, logger: createLogger({ component: 'provision' }),
  };
}

const importCommand = defineCommand({
  name: 'provision import',
  summary: 'register devices whose identity key was set in the factory; they are rotated on first use',
  description: `Reads FILE.csv (header "name,key" or "serial,key"; key = 64 hex characters), checks every line
before registering anything, registers each device with its factory key (NewClient), links its topics and
marks it rotateOnFirstUse: provision first-use replaces the factory key when the device first connects.`,
  flags: {
    'factory-keys': { type: 'string', required: true, placeholder: 'FILE.csv', help: 'the factory\'s list of devices and keys' },
    ...registerFlags,
  },
  exitCodes: ['refused', 'c2Unreachable'],
  handlesSignals: true,
  async run({ flags }, ctx) {
    return classified(async (lib) => {
      const rows = lib.loadFactoryKeysCsv(flags['factory-keys']);
      const c2 = connectC2(lib, flags);
      try {
        const report = await lib.provisionDevices({ ...commonOptions(lib, flags, c2, ctx.signal), devices: lib.devicesFromFactoryRows(rows), method: 'factory' });
        printReport(report, flags.json, ctx.stdout);
        return ctx.signal.aborted ? EXIT.interrupted : EXIT.ok;
      } finally { c2.close(); }
    });
  },
});

const firstUseCommand = defineCommand({
  name: 'provision first-use',
  summary: 'when devices first connect: rotate factory/TOFU identity keys and deliver every topic key',
  description: `Watches broker presence (Mosquitto $SYS/broker/log: needs log_dest topic with notice and subscribe
log types). When a provisioned device subscribes to its command topic: a factory-keyed or TOFU device gets a
new identity key (NewClientKey; C2 sends SetIDKey sealed with the old key; the new key is escrowed and
identityKeyRotatedAt recorded), then every topic key is pushed again while it is connected. Ends when no
device is pending, or after --follow. Start it before switching devices on.`,
  flags: {
    ...c2Flags,
    ...inventoryFlag,
    'broker-url': { type: 'string', required: true, placeholder: 'URL', help: 'MQTT broker to watch, as e4ops reaches it (mqtt://host:1883)' },
    follow: { type: 'duration', default: '10m', min: 1, help: 'how long to watch for devices (e.g. 24h)' },
    json: { type: 'boolean', help: 'print the result as JSON' },
  },
  exitCodes: ['sourceUnreachable', 'timedOut', 'incomplete', 'c2Unreachable'],
  handlesSignals: true,
  async run({ flags }, ctx) {
    return classified(async (lib) => {
      const c2 = connectC2(lib, flags);
      const broker = await lib.connectBrokerWatch(flags['broker-url']).catch((e) => { throw new OpsError('sourceUnreachable', `--broker-url ${flags['broker-url']}: ${(e as Error).message}`); });
      try {
        const r = await lib.watchFirstUse({ c2, broker, inventoryFile: flags.inventory, followSeconds: flags.follow, signal: ctx.signal, logger: createLogger({ component: 'provision-first-use' }) });
        if (flags.json) ctx.stdout(JSON.stringify(r) + '\n');
        else ctx.stdout(`rotated ${r.rotated.length}, topic keys delivered to ${r.delivered.length}, still pending ${r.pending.length}${r.pending.length ? ` (${r.pending.slice(0, 10).join(', ')}${r.pending.length > 10 ? ', ...' : ''})` : ''}, failed ${r.failed.length}\n${r.failed.map((f) => `  ${f.name}: ${f.error}\n`).join('')}`);
        if (r.failed.length) return EXIT.incomplete;
        if (r.pending.length) return ctx.signal.aborted ? EXIT.interrupted : EXIT.timedOut;
        return EXIT.ok;
      } finally { await broker.close(); c2.close(); }
    });
  },
});

const listCommand = defineCommand({
  name: 'provision list',
  summary: 'devices of the inventory: how they were provisioned, their state, where their escrowed key is',
  flags: { ...inventoryFlag, json: { type: 'boolean', help: 'print JSON' } },
  async run({ flags }, ctx) {
    if (!fs.existsSync(flags.inventory)) throw new UsageError(`--inventory ${flags.inventory}: no such file`);
    return classified(async (lib) => {
      const rows = lib.loadProvisionedDevices(flags.inventory);
      ctx.stdout(flags.json ? JSON.stringify(rows) + '\n' : lib.renderDeviceTable(rows));
      return EXIT.ok;
    });
  },
});

export const command = defineCommand({
  name: 'provision',
  summary: 'give devices their first keys: pre-keyed, factory-set or trust on first use; rotate on first use',
  flags: {},
  subcommands: [newCommand, importCommand, firstUseCommand, listCommand],
});

await runIfMain(import.meta.url, command);
