// `provision list`: every device of the inventory, its provisioning state and where its escrowed key is.
import path from 'node:path';
import { openProvisioningInventory, type FleetInventory } from './provisioning-inventory.ts';
import { hasFirstUseKey } from './first-use-keys.ts';

export interface ProvisionedDeviceRow {
  name: string;
  method: string;
  /** registered | waiting for first use | rotated | (not provisioned here) */
  state: string;
  topics: number;
  topicKeysDelivered: boolean;
  /** Absolute path of the escrowed key, if any. */
  escrowedKey?: string;
  identityKeyRotatedAt?: string;
  provisionedAt?: string;
  /** A key kept for the first-use rotation (factory/TOFU, not yet rotated). */
  firstUseKeyHeld: boolean;
}

const STATE_WORDS = { registered: 'registered', waitingForFirstUse: 'waiting for first use', rotated: 'rotated' } as const;

export function listProvisionedDevices(inv: FleetInventory): ProvisionedDeviceRow[] {
  return inv.clients.map((c) => ({
    name: c.name,
    method: c.provisioning?.method ?? '-',
    state: c.provisioning ? STATE_WORDS[c.provisioning.state] : 'not provisioned by e4ops',
    topics: (c.topics ?? []).length,
    topicKeysDelivered: !!c.provisioning?.topicKeysDeliveredAt,
    ...(c.escrowedKeyFile ? { escrowedKey: path.resolve(inv.baseDir, c.escrowedKeyFile) } : {}),
    ...(c.identityKeyRotatedAt ? { identityKeyRotatedAt: c.identityKeyRotatedAt } : {}),
    ...(c.provisioning?.provisionedAt ? { provisionedAt: c.provisioning.provisionedAt } : {}),
    firstUseKeyHeld: hasFirstUseKey(inv, c.name),
  }));
}

export function loadProvisionedDevices(inventoryFile: string): ProvisionedDeviceRow[] {
  return listProvisionedDevices(openProvisioningInventory(inventoryFile));
}

export function renderDeviceTable(rows: ProvisionedDeviceRow[]): string {
  if (!rows.length) return 'no devices in the inventory\n';
  const head = ['NAME', 'METHOD', 'STATE', 'TOPICS', 'KEYS DELIVERED', 'ESCROWED KEY'];
  const body = rows.map((r) => [r.name, r.method, r.state, String(r.topics), r.topicKeysDelivered ? 'yes' : 'no', r.escrowedKey ?? (r.method === 'tofu' ? '(none until first use)' : '-')]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  return [head, ...body].map((cols) => cols.map((c, i) => (i === cols.length - 1 ? c : c.padEnd(widths[i]))).join('  ')).join('\n') + '\n';
}
