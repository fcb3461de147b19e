// JSON Schema of an appliance definition (appliances/<name>/appliance.yaml). The `settings` object
// is a stack's settings (lib/settings/stack-settings-schema.ts) and is validated by that schema, so
// the appliance and the Pulumi stacks read one set of keys. No secrets: the appliance generates
// them on its first boot.

export const APPLIANCE_SCHEMA = {
  $id: 'https://e4ops.local/appliance.schema.json',
  title: 'e4ops appliance definition (appliances/<name>/appliance.yaml)',
  type: 'object',
  additionalProperties: false,
  required: ['name', 'settings'],
  properties: {
    name: { type: 'string', pattern: '^[a-z][a-z0-9-]{1,40}$', description: 'Appliance name; the image file is <name>.<format>' },
    description: { type: 'string' },
    suite: { enum: ['trixie', 'bookworm'], default: 'trixie', description: 'Debian release the image is built from (trixie: Node.js 20, PostgreSQL 17; bookworm has Node.js 18, too old for the backup timer)' },
    version: { type: 'string', pattern: '^[0-9A-Za-z][0-9A-Za-z.+~-]{0,40}$', description: 'Image version recorded in /etc/e4ops/image-release (default: the toolkit version from package.json)' },
    architecture: { enum: ['amd64'], default: 'amd64' },
    hostname: { type: 'string', pattern: '^[a-z][a-z0-9-]{0,62}$', default: 'e4c2', description: 'Host name of the VM (also a SAN of its C2 certificate)' },
    mirror: { type: 'string', pattern: '^https?://\\S+$', default: 'http://deb.debian.org/debian', description: 'Debian mirror mmdebstrap downloads from' },
    image: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        formats: {
          type: 'array', minItems: 1, uniqueItems: true, default: ['qcow2', 'raw', 'ova'],
          items: { enum: ['qcow2', 'raw', 'ova'] },
          description: 'Outputs, each with a .sha256 file: qcow2 (compressed; Proxmox, OpenStack, libvirt), raw, ova (OVF + streamOptimized VMDK; VMware, VirtualBox)',
        },
        sizeMb: { type: 'integer', minimum: 1024, maximum: 1_048_576, default: 3072, description: 'Size of the root file system (ext4) in MiB' },
        cpus: { type: 'integer', minimum: 1, maximum: 64, default: 2, description: 'Virtual CPUs the OVA asks for' },
        memoryMb: { type: 'integer', minimum: 512, maximum: 262_144, default: 2048, description: 'Memory the OVA asks for' },
      },
    },
    extraPackages: {
      type: 'array',
      default: [],
      items: { type: 'string', pattern: '^[a-z0-9][a-z0-9+.-]+$' },
      description: 'Debian packages added to the ones the services need',
    },
    settings: { type: 'object', description: 'Stack settings (profile minimal), the same keys as e4ops:settings of a Pulumi stack' },
  },
} as const;

export interface ApplianceDefinition {
  name: string;
  description?: string;
  suite: 'trixie' | 'bookworm';
  version?: string;
  architecture: 'amd64';
  hostname: string;
  mirror: string;
  image: { formats: Array<'qcow2' | 'raw' | 'ova'>; sizeMb: number; cpus: number; memoryMb: number };
  extraPackages: string[];
  settings: Record<string, unknown>;
}
