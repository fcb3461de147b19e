// First boot's settings step (`e4ops appliance apply-settings`): the definition baked into the image,
// its `settings` deep-merged with the cloud-init block (/etc/e4ops/settings.yaml: the same keys as
// `settings:`), validated by validateApplianceDefinition, rendered by renderSettingsFiles: the same
// schema, rules and renderers as the build. All validation happens before the first write, so a bad
// block changes nothing; the error names the file and every bad key.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { c2CertificateSans } from '../lib/render/c2-replica.ts';
import { UsageError } from '../lib/cli/flags.ts';
import { validateApplianceDefinition, ApplianceDefinitionError, type ValidatedAppliance } from './appliance-definition.ts';
import { renderSettingsFiles, optionalSettingsFilePaths, APPLIANCE_PATHS, type PlannedFile } from './build-appliance.ts';

type Tree = Record<string, unknown>;
const isMap = (v: unknown): v is Tree => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Mappings merge key by key; anything else (lists included) replaces. Pure. */
export function mergeSettings(base: Tree, over: Tree): Tree {
  const out: Tree = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = isMap(v) && isMap(base[k]) ? mergeSettings(base[k] as Tree, v) : v;
  return out;
}

function readYaml(file: string, what: string): unknown {
  let text: string;
  try { text = fs.readFileSync(file, 'utf8'); } catch (e) {
    throw new UsageError(`${what} ${file}: cannot be read (${(e as NodeJS.ErrnoException).code})`);
  }
  try { return YAML.parse(text); } catch (e) {
    throw new UsageError(`${what} ${file}: not valid YAML (${(e as Error).message.split('\n')[0]}). Fix: correct the cloud-init write_files content`);
  }
}

export interface ApplySettingsOptions {
  /** File-system root the appliance paths are under ('/' on the VM; a scratch dir in tests). */
  root: string;
  /** Host name for the certificate SANs (default: this machine's, as cloud-init set it). */
  hostname?: string;
}

export interface ApplySettingsResult {
  appliance: ValidatedAppliance;
  /** Settings came from the cloud-init block too (false: the image's definition alone). */
  fromCloudInit: boolean;
  written: string[];
  removed: string[];
  hostname: string;
  certSan: string;
}

/** Validate everything, then write. Throws UsageError (nothing written) on a bad block. */
export function applySettings(o: ApplySettingsOptions): ApplySettingsResult {
  const P = APPLIANCE_PATHS;
  const at = (p: string) => path.join(o.root, p);
  const def = readYaml(at(P.definitionFile), 'appliance definition');
  if (!isMap(def) || !isMap(def.settings)) throw new UsageError(`appliance definition ${at(P.definitionFile)}: has no settings mapping; the image is damaged (rebuild it)`);
  const settingsFile = at(P.settingsFile);
  const fromCloudInit = fs.existsSync(settingsFile);
  let settings = def.settings;
  if (fromCloudInit) {
    const block = readYaml(settingsFile, 'settings block');
    if (block !== null && !isMap(block)) throw new UsageError(`settings block ${settingsFile}: (top level) is not a mapping. Fix: give the same keys as the definition's settings: (publish, c2, postgres, backup ...)`);
    settings = mergeSettings(def.settings, block ?? {});
  }
  let appliance: ValidatedAppliance;
  try {
    appliance = validateApplianceDefinition({ ...def, settings }, fromCloudInit ? `settings block ${settingsFile} (merged over ${P.definitionFile})` : at(P.definitionFile));
  } catch (e) {
    if (e instanceof ApplianceDefinitionError) throw new UsageError(e.message);
    throw e;
  }
  const hostname = o.hostname ?? os.hostname();
  if (!/^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$/.test(hostname)) throw new UsageError(`host name "${hostname}": not a DNS name. Fix: set hostname in the cloud-init user-data to letters, digits, dots and dashes`);
  const short = hostname.split('.')[0];
  const sans = c2CertificateSans(short, { extraDnsNames: hostname === short ? [] : [hostname] });
  const certSan = [...sans.dnsNames.map((d) => `DNS:${d}`), ...sans.ipAddresses.map((i) => `IP:${i}`)].join(',');

  const files: PlannedFile[] = renderSettingsFiles(appliance);
  const written: string[] = [];
  for (const f of files) {
    const target = at(f.path);
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.writeFileSync(`${target}.tmp`, f.content, { mode: f.mode });
    fs.chmodSync(`${target}.tmp`, f.mode);
    fs.renameSync(`${target}.tmp`, target);
    written.push(f.path);
  }
  // Jobs switched off by the block (backup, drill, pgBackRest): no unit or config left behind from the image.
  const removed: string[] = [];
  for (const p of optionalSettingsFilePaths().filter((q) => !written.includes(q))) {
    if (fs.existsSync(at(p))) { fs.rmSync(at(p)); removed.push(p); }
  }
  // Local backup targets first boot initialises (e4ops backup init), so the first run finds them marked.
  const localTargets = appliance.settings.backup.enabled ? appliance.settings.backup.targets.filter((t) => t.type === 'local').map((t) => t.path!) : [];
  fs.writeFileSync(at(P.runtimeEnv), `E4OPS_HOSTNAME='${short}'\nE4OPS_CERT_SAN='${certSan}'\nE4OPS_LOCAL_BACKUP_TARGETS='${localTargets.join(' ')}'\n`, { mode: 0o644 });
  return { appliance, fromCloudInit, written, removed, hostname: short, certSan };
}
