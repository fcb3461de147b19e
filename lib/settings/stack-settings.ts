// Validate a stack's settings once, before any resource exists: the JSON Schema (ajv, with
// defaults), then C2's own rules and the cross-field rules no schema expresses well. Every error
// names the key and says how to fix it.
import fs from 'node:fs';
import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';
import YAML from 'yaml';
import { STACK_SETTINGS_SCHEMA, SECRET_KEYS, type SecretKey } from './stack-settings-schema.ts';
import { describeSchemaErrorWithFix } from '../json-schema.ts';
import { cronScheduleProblem } from '../render/backup-job.ts';
import { AGE_PUBLIC_KEY, decodeAgeRecipient } from '../age.ts';
import { PROFILE_DEFAULTS, mergeUnder, type Profile } from './profile-defaults.ts';

export { STACK_SETTINGS_SCHEMA, SECRET_KEYS, type SecretKey, type Profile };

export interface DockerHostSettings { name: string; url: string; address?: string }
export interface BackupTargetSettings { name: string; type: 'local' | 'rclone'; path?: string; remote?: string }

/** postgres.pitr after validation. */
export interface PitrSettings {
  enabled: boolean; stanza: string;
  repo: {
    type: 'posix' | 'sftp' | 's3'; path: string; sftpHost?: string; sftpPort?: number; sftpUser?: string; sftpPrivateKeyFile?: string;
    sftpHostKeyHashType: 'md5' | 'sha1' | 'sha256'; sftpHostFingerprint?: string; s3Endpoint?: string; s3Bucket?: string; s3Region?: string;
    s3UriStyle: 'host' | 'path'; verifyTls: boolean;
  };
  cipher: boolean; compressType: 'zst' | 'lz4' | 'gz' | 'bz2' | 'none'; processMax: number; archiveAsync: boolean; spoolPath: string;
  archiveTimeoutSeconds: number; retentionFull: number; retentionDiff: number; fullSchedule: string; diffSchedule: string;
}

/** Settings after validation: every defaulted key is present. */
/** Patroni's timing and replication mode (HA profile); see docs/operate/high-availability.md. */
export interface PostgresFailoverSettings {
  ttlSeconds: number;
  loopWaitSeconds: number;
  retryTimeoutSeconds: number;
  synchronousMode: boolean;
}

export interface StackSettings {
  profile: Profile;
  hosts: DockerHostSettings[];
  publish: { c2Address: string; grpcPort: number; httpPort: number; brokerAddress: string; brokerPort: number };
  c2: {
    replicas: number; image?: string; goModuleVersion: string; cryptoMode: 'symkey' | 'pubkey';
    logLevel: 'debug' | 'info' | 'warn' | 'error'; mqttIdPrefix: string; messageLogging: boolean;
    dbSecureConnection: 'enabled' | 'selfsigned' | 'insecure'; memoryMb?: number;
  };
  postgres: {
    image: string; patroniImageBase: string; replicas: number; database: string; username: string;
    parameters: Record<string, string | number | boolean>; exporterImage: string; memoryMb?: number;
    pitr: PitrSettings;
    failover: PostgresFailoverSettings;
  };
  etcd: { image: string; nodes: number; api: 'etcd3' | 'etcd' };
  broker: { kind: 'mosquitto' | 'emqx'; mosquittoImage: string; emqxImage: string; nodes: number; allowAnonymous: boolean; exporterImage: string; memoryMb?: number };
  elasticsearch: {
    enabled: boolean; image: string; kibanaImage: string; exporterImage: string; nodes: number; heapMb: number;
    messageIndex: string; logIndex: string; memoryMb?: number;
  };
  logShipper: { enabled: boolean; baseImage: string };
  monitoring: {
    prometheus: { enabled: boolean; image: string; blackboxImage: string; nodeExporterImage: string; scrapeIntervalSeconds: number; retentionDays: number };
    alerts: { drillMaxAgeDays: number; runbookBaseUrl?: string };
    retention: { messagesDays: number; logsDays: number };
  };
  tracing: { enabled: boolean; ocAgentImage: string; jaegerImage: string };
  loadBalancer: { image: string };
  automationEngine: { enabled: boolean; replicas: number; image?: string; goModuleVersion: string; database: string };
  backup: {
    enabled: boolean; schedule: string; maxAgeHours: number; baseImage: string; command: string; targets: BackupTargetSettings[]; ageRecipients: string[];
    drill: { enabled: boolean; schedule: string; identityFile: string; withC2: boolean };
    retention: { keepLast: number; keepDaily: number; keepWeekly: number; keepMonthly: number };
  };
}

export type StackSecrets = Partial<Record<SecretKey, string>>;

export class StackSettingsError extends Error {
  constructor(public readonly problems: string[], source = 'stack settings') {
    super(`${source} are invalid (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n` + problems.map((p) => `  - ${p}`).join('\n'));
    this.name = 'StackSettingsError';
  }
}

const addFormats = (addFormatsModule as unknown as { default?: typeof addFormatsModule }).default ?? addFormatsModule;
let compiled: ReturnType<Ajv['compile']> | undefined;
function schemaValidator() {
  if (!compiled) {
    // coerceTypes: `pulumi config set --path settings.c2.replicas 3` may store "3" as a string.
    const ajv = new Ajv({ allErrors: true, useDefaults: true, coerceTypes: true, strict: true, allowUnionTypes: true });
    (addFormats as unknown as (a: Ajv, f: string[]) => void)(ajv, ['ipv4']);
    compiled = ajv.compile(STACK_SETTINGS_SCHEMA as unknown as object);
  }
  return compiled;
}

/** Major version from an image reference's tag (…/elasticsearch:7.17.25 → 7), or undefined. */
export function imageMajorVersion(ref: string): number | undefined {
  const noDigest = ref.split('@')[0];
  const lastSlash = noDigest.lastIndexOf('/');
  const colon = noDigest.indexOf(':', lastSlash + 1);
  if (colon < 0) return undefined;
  const m = /^v?(\d+)(\.|$|-)/.exec(noDigest.slice(colon + 1));
  return m ? Number(m[1]) : undefined;
}


/** One settings section's rules: problems found (each names the key and the fix), none = fine. */
export type StackRule = (s: StackSettings) => string[];

const c2Rules: StackRule = (s) => {
  const p: string[] = [];
  const ha = s.profile === 'ha';
  if (ha && s.c2.replicas < 2) {
    p.push(`c2.replicas: is ${s.c2.replicas}, but the ha profile needs at least 2 C2 replicas behind HAProxy. Fix: set c2.replicas to 2 or more, or use profile minimal`);
  }
  if (!ha && s.c2.replicas !== 1) {
    p.push(`c2.replicas: is ${s.c2.replicas}, but the minimal profile has no load balancer and runs exactly 1 C2. Fix: set c2.replicas to 1, or use profile ha`);
  }
  return p;
};

const postgresRules: StackRule = (s) => {
  const p: string[] = [];
  const ha = s.profile === 'ha';
  if (!ha && s.postgres.replicas !== 1) {
    p.push(`postgres.replicas: is ${s.postgres.replicas}, but the minimal profile runs one PostgreSQL server. Fix: set postgres.replicas to 1, or use profile ha (Patroni)`);
  }
  if (ha && s.postgres.replicas < 2) {
    p.push(`postgres.replicas: is ${s.postgres.replicas}, but failover needs at least 2 Patroni members. Fix: set postgres.replicas to 2 or more (3 recommended)`);
  }
  for (const k of ['listen_addresses', 'port', 'unix_socket_directories', 'hba_file', 'data_directory']) {
    if (k in s.postgres.parameters) p.push(`postgres.parameters.${k}: is managed by the stack. Fix: remove it`);
  }
  return p;
};

const etcdRules: StackRule = (s) => {
  const p: string[] = [];
  if (s.profile === 'ha' && (s.etcd.nodes < 3 || s.etcd.nodes % 2 === 0)) {
    p.push(`etcd.nodes: is ${s.etcd.nodes}; etcd needs an odd number of members, at least 3, to keep quorum when one is lost. Fix: set etcd.nodes to 3 or 5`);
  }
  const f = s.postgres.failover;
  if (f.loopWaitSeconds + 2 * f.retryTimeoutSeconds > f.ttlSeconds) {
    p.push(`postgres.failover.ttlSeconds: is ${f.ttlSeconds}, below loopWaitSeconds + 2 * retryTimeoutSeconds (${f.loopWaitSeconds + 2 * f.retryTimeoutSeconds}); Patroni would lose its lease while still retrying. Fix: raise ttlSeconds or lower the other two`);
  }
  return p;
};

const brokerRules: StackRule = (s) => {
  const p: string[] = [];
  const ha = s.profile === 'ha';
  if (s.broker.kind === 'mosquitto' && s.broker.nodes !== 1) {
    p.push(`broker.nodes: is ${s.broker.nodes}, but Mosquitto does not cluster. Fix: set broker.nodes to 1, or broker.kind to emqx`);
  }
  if (ha && s.broker.kind === 'mosquitto') {
    p.push('broker.kind: mosquitto cannot cluster, so retained C2 commands would not survive the loss of its host. Fix: use broker.kind emqx in the ha profile');
  }
  if (ha && s.broker.kind === 'emqx' && s.broker.nodes < 2) {
    p.push(`broker.nodes: is ${s.broker.nodes}; a clustered broker needs at least 2 nodes. Fix: set broker.nodes to 3`);
  }
  if (s.broker.kind === 'emqx') {
    const major = imageMajorVersion(s.broker.emqxImage);
    const minor = Number(/:(?:v)?\d+\.(\d+)/.exec(s.broker.emqxImage)?.[1] ?? NaN);
    if (major === undefined || major > 5 || (major === 5 && !(minor <= 8))) {
      p.push(`broker.emqxImage: "${s.broker.emqxImage}" is not EMQX 5.0-5.8; from 5.9 EMQX is under the BSL and clustering needs a commercial licence. Fix: pin emqx/emqx:5.8.6 (Apache-2.0) or configure a licence yourself`);
    }
  }
  return p;
};

const elasticsearchRules: StackRule = (s) => {
  const p: string[] = [];
  const es = s.elasticsearch;
  if (!es.enabled) {
    if (s.c2.messageLogging) p.push('c2.messageLogging: is on but elasticsearch.enabled is false. Fix: enable elasticsearch or set c2.messageLogging to false');
    if (s.logShipper.enabled) p.push('logShipper.enabled: the log shipper writes to Elasticsearch, which is disabled. Fix: enable elasticsearch or set logShipper.enabled to false');
    return p;
  }
  if (es.nodes % 2 === 0) {
    p.push(`elasticsearch.nodes: is ${es.nodes}; master-eligible nodes must be odd so a majority survives a split. Fix: set elasticsearch.nodes to 1, 3 or 5`);
  }
  const major = imageMajorVersion(es.image);
  if (s.c2.messageLogging && major !== 7) {
    p.push(`elasticsearch.image: "${es.image}" is ${major === undefined ? 'of unknown version' : `Elasticsearch ${major}`}, but C2's message logging (olivere/elastic v6, typed documents) needs Elasticsearch 7.x. Fix: use a 7.17 tag such as docker.elastic.co/elasticsearch/elasticsearch:7.17.25, or set c2.messageLogging to false`);
  }
  const kmajor = imageMajorVersion(es.kibanaImage);
  if (major !== undefined && kmajor !== major) {
    p.push(`elasticsearch.kibanaImage: "${es.kibanaImage}" does not match Elasticsearch major version ${major}. Fix: use the Kibana tag equal to the Elasticsearch tag`);
  }
  if (es.memoryMb !== undefined && es.heapMb * 2 > es.memoryMb) {
    p.push(`elasticsearch.heapMb: ${es.heapMb} MiB is more than half of elasticsearch.memoryMb (${es.memoryMb}). Fix: lower heapMb or raise memoryMb`);
  }
  return p;
};

const hostsRules: StackRule = (s) => {
  const p: string[] = [];
  const names = new Set<string>();
  const addrs = new Set<string>();
  s.hosts.forEach((h, i) => {
    if (names.has(h.name)) p.push(`hosts[${i}].name: "${h.name}" is used twice. Fix: give every host a unique name`);
    names.add(h.name);
    if (s.hosts.length > 1 && !h.address) {
      p.push(`hosts[${i}].address: missing; with several Docker hosts, peers (Patroni, etcd, EMQX, Elasticsearch) reach each other on each host's private address. Fix: set hosts[${i}].address to its private IPv4 address`);
    }
    if (h.address) {
      if (addrs.has(h.address)) p.push(`hosts[${i}].address: ${h.address} is used by another host. Fix: give each host its own address`);
      addrs.add(h.address);
      if (h.address === '0.0.0.0') p.push(`hosts[${i}].address: 0.0.0.0 would publish internal ports on every interface. Fix: give the host's private address`);
    }
  });
  return p;
};

/** One member per host: losing a host then costs each cluster one member, never its quorum. */
const spreadOverHostsRules: StackRule = (s) => {
  if (s.hosts.length <= 1) return [];
  const sizes: Array<[string, number]> = [['c2.replicas', s.c2.replicas], ['postgres.replicas', s.postgres.replicas], ['etcd.nodes', s.etcd.nodes], ['broker.nodes', s.broker.nodes]];
  if (s.elasticsearch.enabled) sizes.push(['elasticsearch.nodes', s.elasticsearch.nodes]);
  return sizes.filter(([, n]) => n > s.hosts.length).map(([k, n]) =>
    `${k}: is ${n} but only ${s.hosts.length} Docker hosts are listed; with several hosts every host runs at most one member, so that losing a host costs one member and never the quorum. Fix: add hosts or lower ${k} to ${s.hosts.length}`);
};

const publishRules: StackRule = (s) => {
  const p: string[] = [];
  const pub = s.publish;
  const binds: Array<[string, string, number]> = [
    ['publish.grpcPort', pub.c2Address, pub.grpcPort], ['publish.httpPort', pub.c2Address, pub.httpPort], ['publish.brokerPort', pub.brokerAddress, pub.brokerPort],
  ];
  for (let i = 0; i < binds.length; i++) for (let j = i + 1; j < binds.length; j++) {
    const [ka, aa, pa] = binds[i]; const [kb, ab, pb] = binds[j];
    if (pa === pb && (aa === ab || aa === '0.0.0.0' || ab === '0.0.0.0')) {
      p.push(`${kb}: ${ab}:${pb} collides with ${ka} (${aa}:${pa}). Fix: choose another port`);
    }
  }
  return p;
};

const pitrRules: StackRule = (s) => {
  const p: string[] = [];
  const pitr = s.postgres.pitr;
  if (!pitr.enabled) return p;
  const need = (keys: (keyof PitrSettings['repo'])[]) => keys.filter((k) => pitr.repo[k] === undefined);
  const missing = pitr.repo.type === 'sftp' ? need(['sftpHost', 'sftpUser', 'sftpPrivateKeyFile']) : pitr.repo.type === 's3' ? need(['s3Endpoint', 's3Bucket', 's3Region']) : [];
  for (const k of missing) p.push(`postgres.pitr.repo.${k}: is required for a ${pitr.repo.type} repository. Fix: set it, or use repo.type posix`);
  for (const k of ['archive_mode', 'archive_command', 'archive_timeout', 'restore_command']) {
    if (k in s.postgres.parameters) p.push(`postgres.parameters.${k}: is managed by postgres.pitr while it is enabled. Fix: remove it (archive_timeout: set postgres.pitr.archiveTimeoutSeconds)`);
  }
  return p;
};

const automationEngineRules: StackRule = (s) =>
  s.automationEngine.enabled && s.automationEngine.replicas !== 1
    ? [`automationEngine.replicas: is ${s.automationEngine.replicas}; an enabled engine runs exactly one replica (two rotate keys behind each other). Fix: set it to 1, or disable the engine`]
    : [];

const backupRules: StackRule = (s) => {
  const p: string[] = [];
  const b = s.backup;
  // cron-parser (lib/render/backup-job.ts, the crontab renderer's own check) also catches ranges: 99 99 * * *.
  const cronProblem = cronScheduleProblem(b.schedule);
  if (cronProblem) {
    p.push(`backup.schedule: "${b.schedule}" is not a 5-field cron expression (${cronProblem.replace(/^"[^"]*" /, '')}). Fix: use e.g. "17 3 * * *" (03:17 daily)`);
  }
  if (b.enabled) {
    if (!b.targets.length) p.push('backup.targets: is empty but backup.enabled is true. Fix: add at least one target, e.g. { name: offsite, type: rclone, remote: "s3remote:e4-backups" }');
    if (!b.ageRecipients.length) p.push('backup.ageRecipients: is empty; backups are always encrypted. Fix: add the age public key (age1...) of whoever may restore');
  }
  // The schema checks the shape; a one-character typo keeps it and would seal every backup to nobody.
  b.ageRecipients.forEach((r, i) => {
    if (!AGE_PUBLIC_KEY.test(r)) return;
    try { decodeAgeRecipient(r); } catch { p.push(`backup.ageRecipients[${i}]: "${r.slice(0, 12)}..." fails its bech32 checksum (mistyped?). Fix: copy the key again from age-keygen -y`); }
  });
  const drillProblem = cronScheduleProblem(b.drill.schedule);
  if (drillProblem) p.push(`backup.drill.schedule: "${b.drill.schedule}" is not a 5-field cron expression (${drillProblem.replace(/^"[^"]*" /, '')}). Fix: use e.g. "43 4 * * 0" (Sundays 04:43)`);
  if (b.drill.enabled && !b.enabled) p.push('backup.drill.enabled: drills the backups, but backup.enabled is false. Fix: enable backups, or set backup.drill.enabled to false');
  const tnames = new Set<string>();
  b.targets.forEach((t, i) => {
    if (tnames.has(t.name)) p.push(`backup.targets[${i}].name: "${t.name}" is used twice. Fix: give every target a unique name`);
    tnames.add(t.name);
    if (t.type === 'local' && !t.path) p.push(`backup.targets[${i}].path: missing for a local target. Fix: set path (a directory in the backup volume)`);
    if (t.type === 'rclone' && !t.remote) p.push(`backup.targets[${i}].remote: missing for an rclone target. Fix: set remote to REMOTE:path`);
  });
  return p;
};

/**
 * C2's own rules and the cross-field rules, one list per settings section, run in this order on settings
 * the schema already accepted. A new rule goes into its section's function; each can be tested alone.
 */
export const STACK_RULES: Readonly<Record<string, StackRule>> = {
  c2: c2Rules,
  postgres: postgresRules,
  pitr: pitrRules,
  etcd: etcdRules,
  broker: brokerRules,
  elasticsearch: elasticsearchRules,
  hosts: hostsRules,
  spreadOverHosts: spreadOverHostsRules,
  publish: publishRules,
  automationEngine: automationEngineRules,
  backup: backupRules,
};

/** Every rule of STACK_RULES on settings the schema already accepted. */
export function checkStackRules(s: StackSettings): string[] {
  return Object.values(STACK_RULES).flatMap((rule) => rule(s));
}

export function checkStackSecrets(secrets: StackSecrets): string[] {
  const p: string[] = [];
  for (const [k, v] of Object.entries(secrets)) {
    const spec = SECRET_KEYS[k as SecretKey];
    if (!spec) {
      p.push(`${k}: unknown secret key. Fix: use one of ${Object.keys(SECRET_KEYS).join(', ')}`);
      continue;
    }
    if (v === undefined) continue;
    if (Buffer.byteLength(v) < spec.minBytes) {
      p.push(`${k}: is ${Buffer.byteLength(v)} bytes, ${spec.what} needs at least ${spec.minBytes}${k === 'c2DbPassphrase' ? ' (C2 refuses to start otherwise)' : ''}. Fix: pulumi config set --secret ${k} "<a longer value>", or remove it to have one generated`);
    }
  }
  return p;
}

/**
 * Validate raw settings (the parsed `e4ops:settings` value) and secrets. Returns settings with all
 * defaults applied; throws StackSettingsError listing every problem.
 */
export interface ValidateStackSettingsOptions {
  /** What the settings deploy: a Pulumi stack (default) or the VM appliance, whose toolkit also runs the scheduled drill. */
  deployment?: 'stack' | 'appliance';
}

/** Settings a Pulumi stack cannot honour yet (the appliance can): refused rather than silently ignored. */
function stackDeploymentProblems(s: StackSettings): string[] {
  return s.backup.drill.enabled
    ? ['backup.drill.enabled: a Pulumi stack does not run the scheduled drill (the VM appliance does). Fix: set it to false and schedule the drill on a toolkit host: e4ops drill --print-systemd-timer --target ... --identity ... --passphrase-file ...']
    : [];
}

export function validateStackSettings(raw: unknown, secrets: StackSecrets = {}, source?: string, opts: ValidateStackSettingsOptions = {}): StackSettings {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new StackSettingsError(['e4ops:settings: missing or not an object. Fix: add `e4ops:settings:` with at least `profile: minimal` (or ha) to the stack file'], source);
  }
  const input = raw as Record<string, unknown>;
  const profile = input.profile;
  const problems: string[] = [];
  let merged: Record<string, unknown> = structuredClone(input);
  if (profile === 'minimal' || profile === 'ha') merged = mergeUnder(structuredClone(PROFILE_DEFAULTS[profile]), merged);
  const validate = schemaValidator();
  if (!validate(merged)) {
    for (const e of validate.errors ?? []) {
      const text = e.instancePath === '/profile' || (e.keyword === 'required' && (e.params as { missingProperty: string }).missingProperty === 'profile')
        ? 'profile: must be "minimal" or "ha". Fix: set profile'
        : describeSchemaErrorWithFix(e, STACK_SETTINGS_SCHEMA);
      if (!problems.includes(text)) problems.push(text);
    }
  }
  const secretProblems = checkStackSecrets(secrets);
  if (problems.length) throw new StackSettingsError([...problems, ...secretProblems], source);
  const s = merged as unknown as StackSettings;
  if ((input.c2 as Record<string, unknown> | undefined)?.messageLogging === undefined) s.c2.messageLogging = s.elasticsearch.enabled;
  // The cross-field rules need a schema-valid object; report them together with secret problems.
  const ruleProblems = [...checkStackRules(s), ...((opts.deployment ?? 'stack') === 'stack' ? stackDeploymentProblems(s) : []), ...secretProblems];
  if (ruleProblems.length) throw new StackSettingsError(ruleProblems, source);
  return s;
}

export interface StackFileContents {
  project: string;
  settings: unknown;
  /** Plaintext secret values; secure (encrypted) values are listed in encryptedSecrets instead. */
  secrets: StackSecrets;
  encryptedSecrets: string[];
  unknownKeys: string[];
}

/** Read a Pulumi.<stack>.yaml and pull out `<project>:settings` and the secret keys. */
export function readStackFile(file: string, project = 'e4ops'): StackFileContents {
  let doc: unknown;
  try {
    doc = YAML.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new StackSettingsError([`${file}: cannot be read as YAML (${(err as Error).message}). Fix: correct the file`], file);
  }
  const config = (doc as { config?: Record<string, unknown> } | null)?.config ?? {};
  const out: StackFileContents = { project, settings: undefined, secrets: {}, encryptedSecrets: [], unknownKeys: [] };
  for (const [fullKey, value] of Object.entries(config)) {
    const [ns, key] = fullKey.includes(':') ? fullKey.split(':', 2) : [project, fullKey];
    if (ns !== project) continue; // other providers' keys (docker:host ...) are theirs to check
    if (key === 'settings') out.settings = value;
    else if (key in SECRET_KEYS) {
      if (typeof value === 'object' && value !== null && 'secure' in value) out.encryptedSecrets.push(key);
      else out.secrets[key as SecretKey] = String(value);
    } else out.unknownKeys.push(`${project}:${key}`);
  }
  return out;
}

/** check-config: validate a stack file the way the Pulumi program will. */
export function checkStackFile(file: string, project = 'e4ops'): { settings: StackSettings; notes: string[] } {
  const c = readStackFile(file, project);
  const problems = c.unknownKeys.map((k) => `${k}: unknown config key. Fix: put stack settings under ${project}:settings, secrets under one of ${Object.keys(SECRET_KEYS).map((s) => `${project}:${s}`).join(', ')}`);
  if (problems.length) throw new StackSettingsError(problems, file);
  const settings = validateStackSettings(c.settings, c.secrets, file);
  const notes = c.encryptedSecrets.map((k) => `${k}: encrypted in the stack file; its length is checked when the Pulumi program runs`);
  for (const k of Object.keys(c.secrets)) notes.push(`${k}: stored in plaintext in the stack file. Use: pulumi config set --secret ${k} ...`);
  return { settings, notes };
}
