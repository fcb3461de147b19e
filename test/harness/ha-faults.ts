// Faults on the realized ha profile (test/harness/stack-realizer.ts), each under a steady C2 write
// load through HAProxy: what an operator of Patroni wants to know before trusting it. Shared by the
// slow test (test/stacks/ha-realized.slow.test.ts) and `npm run bench:failover`.
import { createFleet } from '../../lib/fleet/fleet.ts';
import type { C2Api } from '../../lib/c2/c2-api.ts';
import type { RealizedStack } from './stack-realizer.ts';
import { patroniCluster } from './realized-ha-probes.ts';
import { startWriteLoad, faultWindow, lostAcknowledgedWrites, type FaultWindow } from './write-load.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface LoadOptions { ratePerSecond?: number; beforeMs?: number; afterMs?: number }

async function leaderOf(stack: RealizedStack, timeoutMs = 120_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const leader = (await patroniCluster(stack)).find((m) => m.role === 'leader' && m.state === 'running');
      if (leader) return leader.name;
    } catch { /* no member answers yet */ }
    if (Date.now() > deadline) throw new Error(`no Patroni leader within ${timeoutMs} ms`);
    await sleep(1000);
  }
}

/** Wait until every Patroni member is back and streaming (a fault's aftermath must not leak into the next). */
export async function waitPatroniSettled(stack: RealizedStack, members = 3, timeoutMs = 180_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const ms = await patroniCluster(stack);
      last = JSON.stringify(ms.map((m) => [m.name, m.role, m.state]));
      if (ms.length === members && ms.filter((m) => m.role === 'leader').length === 1 && ms.every((m) => m.role === 'leader' || ((m.state === 'streaming' || m.state === 'running') && m.lag === 0))) return;
    } catch (e) { last = String(e); }
    await sleep(2000);
  }
  throw new Error(`Patroni did not settle within ${timeoutMs} ms: ${last}`);
}

export interface PrimaryKillResult extends FaultWindow { oldLeader: string; newLeader: string; ackedWritesLost: string[]; acked: number }

/**
 * kill -9 of the Patroni leader's container under write load, kept down (a lost member: a container
 * Docker restarts within the lease simply takes its own lock back), then revived to rejoin; every
 * acknowledged write read back.
 */
export async function measurePrimaryKill(stack: RealizedStack, api: C2Api, o: LoadOptions = {}): Promise<PrimaryKillResult> {
  const oldLeader = await leaderOf(stack);
  const load = startWriteLoad(api, { ratePerSecond: o.ratePerSecond ?? 10, prefix: `pk${Date.now() % 100000}` });
  await sleep(o.beforeMs ?? 5000);
  const at = await stack.crash(oldLeader, { stayDown: true });
  try {
    await sleep(o.afterMs ?? 30_000);
    await load.stop();
  } finally {
    await stack.revive(oldLeader);
  }
  const newLeader = await leaderOf(stack);
  const lost = await lostAcknowledgedWrites(api, load.records);
  return { ...faultWindow(load.records, at), oldLeader, newLeader, ackedWritesLost: lost, acked: load.records.filter((r) => r.ok).length };
}

/** kill -9 of one C2 replica under write load (HAProxy must take it out without a failed request). */
export async function measureC2ReplicaKill(stack: RealizedStack, api: C2Api, replica = 'c2-1', o: LoadOptions = {}): Promise<FaultWindow & { ackedWritesLost: string[] }> {
  const load = startWriteLoad(api, { ratePerSecond: o.ratePerSecond ?? 10, prefix: `ck${Date.now() % 100000}` });
  await sleep(o.beforeMs ?? 5000);
  const at = await stack.crash(replica, { stayDown: true });
  try {
    await sleep(o.afterMs ?? 15_000);
    await load.stop();
  } finally {
    await stack.revive(replica);
  }
  return { ...faultWindow(load.records, at), ackedWritesLost: await lostAcknowledgedWrites(api, load.records) };
}

/** Stop one etcd member (quorum stays) under write load: the Patroni leader must stay and writes go on. */
export async function measureEtcdMemberStop(stack: RealizedStack, api: C2Api, member = 'etcd-1', o: LoadOptions = {}): Promise<FaultWindow & { leaderBefore: string; leaderAfter: string }> {
  const leaderBefore = await leaderOf(stack);
  const load = startWriteLoad(api, { ratePerSecond: o.ratePerSecond ?? 10, prefix: `ek${Date.now() % 100000}` });
  await sleep(o.beforeMs ?? 3000);
  const at = Date.now();
  await stack.stop(member, 10);
  await sleep(o.afterMs ?? 20_000);
  await load.stop();
  const leaderAfter = await leaderOf(stack);
  await stack.start(member);
  return { ...faultWindow(load.records, at), leaderBefore, leaderAfter };
}

export interface BrokerRestartResult {
  /** A device that connects after the restart still gets the command C2 sent before it (retained, persisted). */
  retainedOk: boolean;
  /** C2 reconnected to the broker and delivers a new command after the restart. */
  c2DeliversAfterRestart: boolean;
}

/** Restart the broker container: retained commands survive (persistence), C2 delivers again. */
export async function measureBrokerRestart(stack: RealizedStack, api: C2Api, brokerUrl: string, broker = 'mosquitto-0'): Promise<BrokerRestartResult> {
  const name = `retained-dev-${Date.now() % 100000}`;
  const topic = `retained/${name}`;
  const first = await createFleet({ brokerUrl, devices: [{ name, mode: 'symkey' }] });
  const snapshot = first.snapshot();
  let key: Buffer | undefined;
  try {
    await api.newClient(name, first.device(name).keyForC2);
    await api.newTopic(topic);
    await api.linkClientTopic(name, topic);
    await first.waitFor((f) => !!f.device(name).topicKey(topic), { what: 'SetTopicKey before the restart', timeoutMs: 30_000 });
    key = first.device(name).topicKey(topic);
  } finally {
    await first.close();
  }
  await stack.restart(broker);
  await stack.waitHealthy([broker], 60_000);
  // The same device, starting from the state it had before C2 sent anything (a fresh clean session).
  const second = await createFleet({ brokerUrl, devices: [{ name, mode: 'symkey', identityKey: Buffer.from(snapshot.devices[0].identityKey, 'hex') }] });
  try {
    let retainedOk = false;
    try {
      await second.waitFor((f) => !!f.device(name).topicKey(topic), { what: 'retained SetTopicKey after the restart', timeoutMs: 20_000 });
      retainedOk = !!key && second.device(name).topicKey(topic)!.equals(key);
    } catch { retainedOk = false; }
    let c2DeliversAfterRestart = false;
    try {
      await api.newTopic(topic); // rotation: stored, sent to nobody on this C2 build ...
      await api.linkClientTopic(name, topic); // ... so re-send it with the link call
      await second.waitFor((f) => { const k = f.device(name).topicKey(topic); return !!k && !!key && !k.equals(key); }, { what: 'a new key after the restart', timeoutMs: 60_000 });
      c2DeliversAfterRestart = true;
    } catch { c2DeliversAfterRestart = false; }
    return { retainedOk, c2DeliversAfterRestart };
  } finally {
    await second.close();
  }
}
