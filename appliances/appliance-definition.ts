// Read and validate an appliance definition: the appliance's own keys by APPLIANCE_SCHEMA (ajv),
// its `settings` by the stack settings validator (the same rules as a Pulumi stack), then the rules
// that only apply to a single VM. Every problem names the key and the fix.
import fs from 'node:fs';
import { Ajv } from 'ajv';
import { describeSchemaErrorWithFix } from '../lib/json-schema.ts';
import YAML from 'yaml';
import { APPLIANCE_SCHEMA, type ApplianceDefinition } from './appliance-schema.ts';
import { validateStackSettings, StackSettingsError, type StackSettings } from '../lib/settings/stack-settings.ts';

export { APPLIANCE_SCHEMA, type ApplianceDefinition };

export class ApplianceDefinitionError extends Error {
  constructor(public readonly problems: string[], source = 'appliance definition') {
    super(`${source} is invalid (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n` + problems.map((p) => `  - ${p}`).join('\n'));
    this.name = 'ApplianceDefinitionError';
  }
}

let compiled: ReturnType<Ajv['compile']> | undefined;
function validator() {
  compiled ??= new Ajv({ allErrors: true, useDefaults: true, strict: true }).compile(APPLIANCE_SCHEMA as unknown as object);
  return compiled;
}

// Secrets are generated on the VM at first boot; say so when someone tries to put one in the file.
const secretKeyHint = (key: string) =>
  key === 'secrets' || /pass|secret|key$/i.test(key) ? ' (an appliance holds no secrets in its definition: they are generated on first boot)' : '';

export interface ValidatedAppliance {
  definition: ApplianceDefinition;
  settings: StackSettings;
}

/** Rules for a stack that runs on one VM with systemd (no Docker, no load balancer). */
export function checkApplianceRules(s: StackSettings, suite = 'trixie', extraPackages: string[] = []): string[] {
  const p: string[] = [];
  if (s.profile !== 'minimal') p.push(`settings.profile: is ${s.profile}; an appliance is one VM. Fix: use profile minimal (run the ha profile as a Pulumi stack)`);
  if (s.broker.kind !== 'mosquitto') p.push(`settings.broker.kind: is ${s.broker.kind}; the appliance runs Debian's Mosquitto. Fix: set it to mosquitto`);
  if (s.elasticsearch.enabled) p.push('settings.elasticsearch.enabled: Elasticsearch is not part of the appliance (no Debian package). Fix: set it to false');
  if (s.automationEngine.enabled) p.push('settings.automationEngine.enabled: the automation engine is not in the appliance yet. Fix: set it to false');
  if (s.backup.enabled) {
    if (suite === 'bookworm') p.push('settings.backup.enabled: the backup timer runs the toolkit, which needs Node.js 20; Debian 12 (bookworm) has 18. Fix: build with suite trixie, or set it to false');
    for (const [i, t] of s.backup.targets.entries()) {
      if (t.type === 'local' && !/^\/[A-Za-z0-9_.\/-]*$/.test(t.path ?? '')) p.push(`settings.backup.targets[${i}].path: a local target on the appliance needs an absolute directory of letters, digits and _ . - /. Fix: e.g. /var/backups/e4ops`);
      if (t.type === 'rclone' && !extraPackages.includes('rclone')) p.push(`settings.backup.targets[${i}]: an rclone target needs rclone in the image. Fix: add rclone to extraPackages (and rebuild)`);
    }
  }
  if (s.backup.drill.enabled) {
    if (!s.backup.targets.some((t) => t.type === 'local')) p.push('settings.backup.drill.enabled: the appliance drills the first local backup target, and there is none. Fix: add a local target (e.g. /var/backups/e4ops), or set it to false');
  }
  if (s.postgres.pitr.enabled) {
    if (suite === 'bookworm') p.push('settings.postgres.pitr.enabled: pgBackRest and its timers run the toolkit (Node.js 20), which bookworm lacks. Fix: build with suite trixie, or set it to false');
    if (s.postgres.pitr.repo.type === 'sftp') p.push('settings.postgres.pitr.repo.type: sftp needs a private key on the VM that first boot does not make. Fix: use posix (a mounted folder) or s3');
  }
  if (s.monitoring.prometheus.enabled || s.tracing.enabled || s.logShipper.enabled) {
    p.push('settings.monitoring.prometheus.enabled / tracing.enabled / logShipper.enabled: not in the appliance. Fix: set them to false');
  }
  if (s.c2.cryptoMode === 'pubkey') p.push('settings.c2.cryptoMode: pubkey mode needs a C2 key generated on first boot, which the appliance does not do yet. Fix: use symkey');
  if (!['0.0.0.0', '127.0.0.1'].includes(s.publish.c2Address)) {
    p.push(`settings.publish.c2Address: is ${s.publish.c2Address}; C2's gateway dials its own gRPC port on 127.0.0.1, so gRPC must listen there too. Fix: use 0.0.0.0 (every interface of the VM) or 127.0.0.1`);
  }
  return p;
}

/** Validate a parsed definition. Throws ApplianceDefinitionError listing every problem. */
export function validateApplianceDefinition(raw: unknown, source?: string): ValidatedAppliance {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ApplianceDefinitionError(['(top level): not a mapping. Fix: start from appliances/c2-minimal/appliance.yaml'], source);
  }
  const def = structuredClone(raw) as Record<string, unknown>;
  const validate = validator();
  const problems: string[] = [];
  if (!validate(def)) {
    for (const e of validate.errors ?? []) {
      const t = describeSchemaErrorWithFix(e, APPLIANCE_SCHEMA, { unknownKeyHint: secretKeyHint });
      if (!problems.includes(t)) problems.push(t);
    }
    throw new ApplianceDefinitionError(problems, source);
  }
  let settings: StackSettings;
  try {
    settings = validateStackSettings(def.settings, {}, 'settings', { deployment: 'appliance' });
  } catch (err) {
    if (err instanceof StackSettingsError) throw new ApplianceDefinitionError(err.problems.map((q) => `settings.${q}`), source);
    throw err;
  }
  const rules = checkApplianceRules(settings, String(def.suite), def.extraPackages as string[]);
  if (rules.length) throw new ApplianceDefinitionError(rules, source);
  return { definition: def as unknown as ApplianceDefinition, settings };
}

/** Read appliances/<name>/appliance.yaml (or any path) and validate it. */
export function loadApplianceDefinition(file: string): ValidatedAppliance {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new ApplianceDefinitionError([`${file}: cannot be read (${(err as NodeJS.ErrnoException).code}). Fix: give the path of an appliance.yaml, e.g. appliances/c2-minimal/appliance.yaml`], file);
  }
  let doc: unknown;
  try {
    doc = YAML.parse(text);
  } catch (err) {
    throw new ApplianceDefinitionError([`${file}: not valid YAML (${(err as Error).message}). Fix: correct the file`], file);
  }
  return validateApplianceDefinition(doc, file);
}
