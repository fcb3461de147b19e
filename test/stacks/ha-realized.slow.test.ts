import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startPrivateDockerEngine, dockerEngineInstalled, type PrivateDockerEngine } from '../../lib/servers/docker-engine.ts';
import { buildStackImages } from '../../lib/servers/c2-image.ts';
import { createC2Api, type C2Api } from '../../lib/c2/c2-api.ts';
import { createFleet, type Fleet } from '../../lib/fleet/fleet.ts';
import { realizedHaSettings, evaluateStack, realizeRecordedStack, freePorts, UNREALIZED_CONTAINERS, type RealizedStack } from '../harness/stack-realizer.ts';
import { patroniCluster, haproxyServers, prometheusTargets } from '../harness/realized-ha-probes.ts';
import { measurePrimaryKill, measureC2ReplicaKill, measureBrokerRestart, measureEtcdMemberStop, waitPatroniSettled } from '../harness/ha-faults.ts';

// Slow (E4OPS_SLOW_TESTS=1): the ha profile as the Pulumi program declares it, realized on a private
// Docker engine from Debian-package images (test/harness/stack-realizer.ts): 3 Patroni members on 3
// etcd nodes, 3 C2 replicas behind HAProxy, Mosquitto, Prometheus with its exporters, the backup job.
// Elasticsearch, Kibana, the log shipper, Jaeger, the OpenCensus agent, EMQX and the Mosquitto
// exporter have no Debian package: they stay covered by the mocked tests (ha-profile.test.ts).
describe.skipIf(!process.env.E4OPS_SLOW_TESTS || !dockerEngineInstalled())('ha profile realized on a Docker engine (slow)', () => {
  let engine: PrivateDockerEngine;
  let stack: RealizedStack;
  let api: C2Api;
  let fleet: Fleet | undefined;
  let ports: { grpc: number; http: number; broker: number };

  beforeAll(async () => {
    engine = await startPrivateDockerEngine();
    const images = buildStackImages(engine.host);
    const [grpc, http, broker] = await freePorts(3);
    ports = { grpc, http, broker };
    const settings = realizedHaSettings(images, ports);
    const { resources, outputs } = await evaluateStack(settings);
    stack = await realizeRecordedStack(engine.host, resources, settings, outputs, { skip: UNREALIZED_CONTAINERS });
    await stack.waitHealthy(stack.containers, 300_000);
    api = createC2Api({ baseUrl: `https://127.0.0.1:${ports.http}`, ca: outputs.caCertificatePem as string });
  }, 1_200_000);

  afterAll(async () => {
    await fleet?.close();
    api?.close();
    await stack?.destroy();
    await engine?.stop();
  }, 120_000);

  it('every declared container runs, and each with a health check reports healthy', async () => {
    expect(stack.containers).toEqual(expect.arrayContaining(['etcd-0', 'etcd-1', 'etcd-2', 'pg-0', 'pg-1', 'pg-2', 'c2-0', 'c2-1', 'c2-2', 'haproxy-local', 'mosquitto-0', 'prometheus', 'blackbox', 'node-exporter-local', 'postgres-exporter', 'backup-job']));
    for (const c of stack.containers) {
      const st = await stack.inspect(c);
      expect(st.running, c).toBe(true);
      if (st.health !== undefined) expect(st.health, c).toBe('healthy');
    }
  });

  it('Patroni elects one leader; the other members stream from it, one of them synchronously', async () => {
    const members = await patroniCluster(stack);
    expect(members.map((m) => m.name).sort()).toEqual(['pg-0', 'pg-1', 'pg-2']);
    expect(members.filter((m) => m.role === 'leader')).toHaveLength(1);
    // Debian's Patroni 3.0 says "running" for a replica that streams (3.0.4+ say "streaming"); lag 0 is the proof.
    for (const m of members.filter((x) => x.role !== 'leader')) {
      expect(['running', 'streaming'], m.name).toContain(m.state);
      expect(m.lag, m.name).toBe(0);
    }
    expect(members.filter((m) => m.role === 'sync_standby').length).toBeGreaterThanOrEqual(1);
  });

  it('HAProxy sees every C2 replica up (gRPC and HTTPS) and only the Patroni leader as the PostgreSQL primary', async () => {
    const servers = haproxyServers(stack);
    for (const backend of ['c2_grpc', 'c2_https']) {
      expect(servers.filter((s) => s.backend === backend).map((s) => `${s.server}:${s.status}`).sort()).toEqual(['c2-0:UP', 'c2-1:UP', 'c2-2:UP']);
    }
    const leader = (await patroniCluster(stack)).find((m) => m.role === 'leader')!.name;
    expect(servers.filter((s) => s.backend === 'postgres_primary' && s.status === 'UP').map((s) => s.server)).toEqual([leader]);
    expect(await api.countClients()).toBeGreaterThanOrEqual(0);
  });

  it('a simulated device gets its topic key from C2 through the balancer (API and MQTT both via HAProxy)', async () => {
    fleet = await createFleet({ brokerUrl: `mqtt://127.0.0.1:${ports.broker}`, devices: [{ name: 'realized-dev-1', mode: 'symkey' }] });
    const d = fleet.device('realized-dev-1');
    await api.newClient(d.name, d.keyForC2);
    await api.newTopic('plant/realized');
    await api.linkClientTopic(d.name, 'plant/realized');
    await fleet.waitFor((f) => !!f.device('realized-dev-1').topicKey('plant/realized'), { what: 'SetTopicKey through HAProxy', timeoutMs: 30_000 });
    expect(fleet.stats().commandErrors).toBe(0);
    expect(await api.allTopicsForClient(d.name)).toEqual(['plant/realized']);
  });

  it('Prometheus scrapes every target up, except those of containers that are not realized here', async () => {
    const unrealized = Object.keys(UNREALIZED_CONTAINERS);
    const deadline = Date.now() + 90_000;
    let targets = await prometheusTargets(stack);
    while (Date.now() < deadline && targets.some((t) => t.health !== 'up' && !unrealized.some((u) => t.instance.includes(u)))) {
      await new Promise((r) => setTimeout(r, 3000));
      targets = await prometheusTargets(stack);
    }
    const jobs = new Set(targets.map((t) => t.job));
    for (const j of ['e4-c2-health', 'e4-certificates', 'e4-postgres', 'e4-patroni', 'e4-broker-probe', 'e4-node']) expect([...jobs], j).toContain(j);
    const down = targets.filter((t) => t.health !== 'up').map((t) => `${t.job} ${t.instance}: ${t.lastError}`);
    expect(down.filter((t) => !unrealized.some((u) => t.includes(u)))).toEqual([]);
    // What is down is exactly the unrealized exporter, so the check above did look at real targets.
    expect(down.every((t) => t.includes('mosquitto-exporter'))).toBe(true);
  });

  // Faults under a steady write load through HAProxy (10 writes/s). Figures: npm run bench:failover.
  it('kill -9 of the Patroni leader under write load: the synchronous standby takes over, writes come back, no acknowledged write is lost, the old leader rejoins', async () => {
    await waitPatroniSettled(stack);
    const syncStandby = (await patroniCluster(stack)).find((m) => m.role === 'sync_standby')?.name;
    const r = await measurePrimaryKill(stack, api, { afterMs: 40_000 });
    expect(r.newLeader).not.toBe(r.oldLeader);
    expect(r.newLeader).toBe(syncStandby);
    expect(Number.isFinite(r.recoverySeconds), JSON.stringify(r)).toBe(true);
    expect(r.acked).toBeGreaterThan(100);
    expect(r.ackedWritesLost).toEqual([]);
    await waitPatroniSettled(stack);
  }, 300_000);

  it('kill -9 of one C2 replica under write load: HAProxy takes it out and no write fails', async () => {
    const r = await measureC2ReplicaKill(stack, api, 'c2-1');
    expect(r.failed, JSON.stringify(r)).toBe(0);
    expect(r.ackedWritesLost).toEqual([]);
    await stack.waitHealthy(['c2-1'], 120_000);
  }, 300_000);

  it('a broker restart keeps the retained command for a device that connects afterwards, and C2 delivers again', async () => {
    const r = await measureBrokerRestart(stack, api, `mqtt://127.0.0.1:${ports.broker}`);
    expect(r).toEqual({ retainedOk: true, c2DeliversAfterRestart: true });
  }, 300_000);

  it('one etcd member stopped under write load: the Patroni leader stays and no write fails', async () => {
    const r = await measureEtcdMemberStop(stack, api, 'etcd-1');
    expect(r.leaderAfter).toBe(r.leaderBefore);
    expect(r.failed, JSON.stringify(r)).toBe(0);
  }, 300_000);
});
