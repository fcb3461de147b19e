// The cloud-init NoCloud seed an operator (or a test) gives the appliance: user-data with the host name,
// the admin's SSH keys and the e4ops settings block (written to /etc/e4ops/settings.yaml, where first
// boot's apply-settings reads it), and meta-data with the instance id. The same two files work as an
// OpenStack config-drive's user_data. Pure renderers; cloud-localds (cloud-image-utils) or any
// vfat/iso9660 image labelled cidata carries them.
import YAML from 'yaml';
import { APPLIANCE_PATHS } from './build-appliance.ts';

export interface SeedSettings {
  hostname: string;
  sshAuthorizedKeys: string[];
  /** The e4ops settings block: the same keys as the definition's `settings:` (merged over them). */
  settings?: Record<string, unknown>;
  instanceId: string;
  /** More files for cloud-init's write_files, e.g. the drill's age identity (backup.drill.identityFile). */
  files?: Array<{ path: string; content: string; permissions?: string }>;
}

export function renderUserData(s: SeedSettings): string {
  if (!/^[a-z][a-z0-9-]{0,62}$/.test(s.hostname)) throw new Error(`seed hostname "${s.hostname}": use lowercase letters, digits and dashes`);
  const doc: Record<string, unknown> = {
    hostname: s.hostname,
    ssh_authorized_keys: s.sshAuthorizedKeys.map((k) => k.trim()),
  };
  const files = [
    ...(s.settings ? [{ path: APPLIANCE_PATHS.settingsFile, owner: 'root:root', permissions: '0640', content: YAML.stringify(s.settings) }] : []),
    ...(s.files ?? []).map((f) => ({ path: f.path, owner: 'root:root', permissions: f.permissions ?? '0600', content: f.content })),
  ];
  if (files.length) doc.write_files = files;
  return `#cloud-config\n# Rendered by e4ops (appliances/cloud-init-seed.ts)\n${YAML.stringify(doc, { lineWidth: 0 })}`;
}

export function renderMetaData(s: SeedSettings): string {
  return `instance-id: ${s.instanceId}\nlocal-hostname: ${s.hostname}\n`;
}
