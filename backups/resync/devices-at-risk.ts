// Devices a resync alone cannot bring back, and what the operator should do for each.
import type { FleetInventory } from '../../lib/fleet-inventory/fleet-inventory.ts';
import type { ResyncReport } from './resync-report.ts';

const OFFLINE_LIMIT_MS = 10 * 60 * 1000;

/**
 * Devices that a resync alone cannot bring back, with what the operator should do for each. Identity
 * keys: a device whose key changed after the backup is at risk unless the resync re-registered it
 * from the inventory. Presence: without a broker watch, the inventory's lastSeen is all there is.
 */
export function listDevicesAtRisk(inv: FleetInventory | undefined, opts: { backupTakenAt?: Date; now: Date; recreated: Set<string>; reRegistered?: Set<string>; presenceWatched?: boolean; reprovisionHint?: string }): ResyncReport['atRisk'] {
  const out: ResyncReport['atRisk'] = [];
  if (!inv) return out;
  const reprovision = opts.reprovisionHint ?? 're-provision the device with a new identity key (NewClientKey would seal the new key with the old one and make it worse)';
  for (const c of inv.clients) {
    const rotatedAt = c.identityKeyRotatedAt ? new Date(c.identityKeyRotatedAt) : undefined;
    const current = opts.recreated.has(c.name) || !!opts.reRegistered?.has(c.name);
    if (inv.cryptoMode === 'symkey' && !current) {
      if (!opts.backupTakenAt) {
        if (!c.keyFile) out.push({ name: c.name, reason: 'symkey mode: the backup time is unknown, so the identity key C2 holds may be older than the device\'s', action: `confirm the device's identity key did not change, or add its current key (keyFile) to the inventory and re-run, or ${reprovision}` });
      } else if (rotatedAt && rotatedAt > opts.backupTakenAt) {
        out.push({
          name: c.name,
          reason: `symkey mode: identity key changed at ${c.identityKeyRotatedAt}, after the backup (${opts.backupTakenAt.toISOString()}); C2 holds the old key and the device cannot read commands`,
          action: c.keyFile ? 'its current key is in the inventory but was not re-registered (the run stopped early): re-run the resync with the same --journal' : reprovision,
        });
      }
    }
    if (!opts.presenceWatched && c.lastSeen && opts.now.getTime() - new Date(c.lastSeen).getTime() > OFFLINE_LIMIT_MS) {
      out.push({
        name: c.name,
        reason: `offline since ${c.lastSeen} (more than 10 minutes): it will reject the retained SetTopicKey commands as stale and only ever see the last one`,
        action: `when it is back online, re-send each of its topic keys (PUT /e4/client/${c.name}/topic/<topic>), or run the resync with --broker-url and --follow so it is served when it connects`,
      });
    }
  }
  return out;
}

