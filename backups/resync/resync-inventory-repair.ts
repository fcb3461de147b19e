// Step 2 of a resync: make C2 hold what the fleet inventory says exists. Topics and clients created
// after the backup are re-created (topics get a fresh key at once); clients whose current identity
// key is in the inventory are re-registered with it (NewClient is an upsert that keeps the links);
// links C2 lacks are made after their topic's rotation, so a device gets only the fresh key and keeps
// the pre-restore key as its previous one (it can still read peers not yet served for 60 minutes).
import { forEachBounded } from '../../lib/retry-with-backoff.ts';
import { inventoryTopics, readInventoryKey, type FleetInventory, type InventoryClient } from '../../lib/fleet-inventory/fleet-inventory.ts';
import { check, type ResyncRun } from './resync-run.ts';

export async function repairInventory(run: ResyncRun): Promise<void> {
  run.existingTopics = await run.c2.listTopics();
  const inv = run.opts.inventory;
  if (!inv) return;
  const existingTopics = new Set(run.existingTopics);
  const missingTopics = inventoryTopics(inv).filter((t) => !existingTopics.has(t));
  const existingClients = new Set(await run.c2.listClients());
  const missingClients = inv.clients.filter((c) => !existingClients.has(c.name));
  run.log.info('resync.inventory', { missingTopics: missingTopics.length, missingClients: missingClients.length });
  run.checks.push(
    check('inventory-topics-present', missingTopics.length === 0, missingTopics.length ? `${missingTopics.length} topic(s) in the inventory were missing from the restored database (created after the backup): ${list(missingTopics)}` : 'every inventory topic exists in the restored database'),
    check('inventory-clients-present', missingClients.length === 0, missingClients.length ? `${missingClients.length} client(s) in the inventory were missing from the restored database: ${list(missingClients.map((c) => c.name))}` : 'every inventory client exists in the restored database'),
  );
  run.needReprovision = inv.cryptoMode === 'symkey' ? devicesNeedingReprovision(run, inv) : [];
  const hint = run.opts.reprovisionHint ?? 're-provision it with a new identity key (NewClientKey would seal the new key with the old one)';
  for (const name of run.needReprovision) {
    run.delivery?.ledger.markUnservable(name, `identity key changed after the backup and the inventory has no current key (keyFile): it cannot read any command sealed with the key C2 holds; ${hint}`);
  }
  if (run.dryRun) {
    run.createdTopics.push(...missingTopics);
    return;
  }
  await createMissingTopics(run, missingTopics);
  await createMissingClients(run, inv, missingClients);
  if (inv.cryptoMode === 'symkey') await reRegisterIdentityKeys(run, inv, existingClients);
  await planLinks(run, inv, existingClients);
  run.log.info('resync.inventory.repaired', { topicsCreated: missingTopics.length, clientsCreated: run.clientsCreated.length, identityReRegistered: run.identityReRegistered.size, linksNow: run.linksCreated, linksAfterRotation: run.deferredLinks.length });
}

const list = (xs: string[]) => `${xs.slice(0, 20).join(', ')}${xs.length > 20 ? ' ...' : ''}`;

async function createMissingTopics(run: ResyncRun, topics: string[]): Promise<void> {
  for (const t of topics) {
    await run.call(`create topic ${t}`, () => run.c2.newTopic(t));
    run.writer!.append({ type: 'topic-created', topic: t, at: run.at() });
    run.createdTopics.push(t);
  }
}

async function createMissingClients(run: ResyncRun, inv: FleetInventory, clients: InventoryClient[]): Promise<void> {
  const unrecoverable: string[] = [];
  for (const c of clients) {
    const key = readInventoryKey(inv, c);
    if (!key) { unrecoverable.push(c.name); continue; }
    await run.call(`create client ${c.name}`, () => run.c2.newClient(c.name, key));
    run.writer!.append({ type: 'client-created', name: c.name, at: run.at() });
    run.clientsCreated.push(c.name);
    run.recreatedClients.add(c.name);
  }
  if (unrecoverable.length) {
    run.checks.push(check('inventory-clients-recreated', false, `${unrecoverable.length} missing client(s) have no keyFile in the inventory and could not be re-created: ${list(unrecoverable)}`));
  }
}

/**
 * NewClient with the inventory's identity key for every client C2 already has: C2 may hold the
 * backup-era key of a device whose key changed since (NewClientKey after the backup). With the
 * restored database at hand, sealed-key digests before and after say which keys really changed.
 */
async function reRegisterIdentityKeys(run: ResyncRun, inv: FleetInventory, existingClients: Set<string>): Promise<void> {
  const todo = inv.clients.filter((c) => c.keyFile && existingClients.has(c.name) && !run.identityReRegistered.has(c.name));
  if (!todo.length) return;
  const names = todo.map((c) => c.name);
  const before = await run.opts.probe?.clientKeyDigests?.(names);
  await forEachBounded(todo, run.concurrency, async (c) => {
    const key = readInventoryKey(inv, c)!;
    await run.call(`re-register ${c.name}`, () => run.c2.newClient(c.name, key));
  });
  const after = before ? await run.opts.probe!.clientKeyDigests!(names) : undefined;
  for (const c of todo) {
    const changed: boolean | 'unknown' = before && after ? before.get(c.name) !== after.get(c.name)
      : rotatedAfterBackup(run, c) ? true : 'unknown';
    run.writer!.append({ type: 'identity-reregistered', name: c.name, at: run.at(), keyChanged: changed });
    run.identityReRegistered.set(c.name, changed);
  }
  const changed = [...run.identityReRegistered].filter(([, v]) => v === true).map(([k]) => k);
  run.checks.push(check('identity-keys-current', true, `${run.identityReRegistered.size} client(s) re-registered with the identity key from the inventory; ${changed.length} of them differed from the restored database${changed.length ? `: ${list(changed)}` : ''}${before ? '' : ' (as far as identityKeyRotatedAt tells; give --database-url to compare the stored keys)'}`));
}

function rotatedAfterBackup(run: ResyncRun, c: InventoryClient): boolean {
  const backup = run.opts.backupTakenAt;
  return !!(backup && c.identityKeyRotatedAt && new Date(c.identityKeyRotatedAt) > backup);
}

/** Symkey devices whose key changed after the backup and whose current key the inventory lacks. */
function devicesNeedingReprovision(run: ResyncRun, inv: FleetInventory): string[] {
  return inv.clients.filter((c) => !c.keyFile && rotatedAfterBackup(run, c)).map((c) => c.name);
}

/** Links C2 lacks: now for topics that already hold a fresh key, after the rotation for the others. */
async function planLinks(run: ResyncRun, inv: FleetInventory, existingClients: Set<string>): Promise<void> {
  const fresh = new Set([...run.createdTopics, ...run.journal.rotated]);
  const jobs: { name: string; topic: string }[] = [];
  const known = inv.clients.filter((c) => existingClients.has(c.name) || run.recreatedClients.has(c.name));
  await forEachBounded(known, run.concurrency, async (c) => {
    const have = existingClients.has(c.name) ? await run.c2.topicsOfClient(c.name) : [];
    const haveSet = new Set(have);
    for (const t of c.topics ?? []) if (!haveSet.has(t)) jobs.push({ name: c.name, topic: t });
    // what the device must hold once the repair is done: its links in C2 plus the inventory's
    run.delivery?.ledger.setTopics(c.name, [...new Set([...have, ...(c.topics ?? [])])]);
  });
  const now = jobs.filter((j) => fresh.has(j.topic));
  run.deferredLinks = jobs.filter((j) => !fresh.has(j.topic));
  await createLinks(run, now);
}

/** Link calls (each also sends the topic's current key to the device). */
export async function createLinks(run: ResyncRun, jobs: { name: string; topic: string }[]): Promise<void> {
  await forEachBounded(jobs, run.concurrency, async (j) => {
    await run.pacer.acquire(j.name);
    await run.call(`link ${j.name} ${j.topic}`, () => run.c2.linkClientTopic(j.name, j.topic));
    run.delivery?.ledger.recordPush(j.name, j.topic);
    run.writer!.append({ type: 'link-created', name: j.name, topic: j.topic, at: run.at() });
    run.linksCreated++;
  });
}
