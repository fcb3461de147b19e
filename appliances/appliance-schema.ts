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
    suite: { enum: ['bookworm'], default: 'bookworm', description: 'Debian release the image is built from' },
    architecture: { enum: ['amd64'], default: 'amd64' },
    hostname: { type: 'string', pattern: '^[a-z][a-z0-9-]{0,62}$', default: 'e4c2', description: 'Host name of the VM (also a SAN of its C2 certificate)' },
    mirror: { type: 'string', pattern: '^https?://\\S+$', default: 'http://deb.debian.org/debian', description: 'Debian mirror mmdebstrap downloads from' },
    image: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        format: { enum: ['qcow2', 'raw'], default: 'qcow2' },
        sizeMb: { type: 'integer', minimum: 1024, maximum: 1_048_576, default: 3072, description: 'Size of the root file system (ext4) in MiB' },
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
  suite: 'bookworm';
  architecture: 'amd64';
  hostname: string;
  mirror: string;
  image: { format: 'qcow2' | 'raw'; sizeMb: number };
  extraPackages: string[];
  settings: Record<string, unknown>;
}
