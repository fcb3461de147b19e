// bench:failover: the ha profile realized on a private Docker engine (test/harness/stack-realizer.ts:
// the Pulumi program's containers from Debian-package images), then faults under a steady C2 write
// load (NewClient / NewTopic alternately through HAProxy, BENCH_FAILOVER_RATE per second, default 10):
//   (1) kill -9 of the Patroni leader's container: seconds until writes succeed again, failed
//       requests, acknowledged writes lost (every acknowledged client and topic read back);
//   (2) kill -9 of one C2 replica: failed requests (HAProxy checks, retries, redispatch);
//   (3) broker restart: a device connecting afterwards still gets the retained command;
//   (4) one etcd member stopped: writes go on, the leader stays.
// Baseline (same process tree, BENCH_FAILOVER_BASELINE=0 skips it): (1) again on a second realization
// with Patroni's own defaults (ttl 30, loop_wait 10, retry_timeout 10, asynchronous replication).
// Last stdout line: one JSON object.
import { startPrivateDockerEngine } from '../lib/servers/docker-engine.ts';
import { buildStackImages, type StackImages } from '../lib/servers/c2-image.ts';
import { createC2Api, type C2Api } from '../lib/c2/c2-api.ts';
import { realizedHaSettings, evaluateStack, realizeRecordedStack, freePorts, UNREALIZED_CONTAINERS, type RealizedStack } from '../test/harness/stack-realizer.ts';
import { measurePrimaryKill, measureC2ReplicaKill, measureBrokerRestart, measureEtcdMemberStop, waitPatroniSettled } from '../test/harness/ha-faults.ts';

const RATE = Number(process.env.BENCH_FAILOVER_RATE ?? 10);
const BASELINE = process.env.BENCH_FAILOVER_BASELINE !== '0';
const say = (s: string) => process.stderr.write(s + '\n');
const round = (n: number) => Math.round(n * 100) / 100;

async function realize(host: string, images: StackImages, overrides: (raw: any) => void): Promise<{ stack: RealizedStack; api: C2Api; brokerUrl: string }> {
  const [grpc, http, broker] = await freePorts(3);
  const settings = realizedHaSettings(images, { grpc, http, broker }, overrides);
  const { resources, outputs } = await evaluateStack(settings);
  // The backup job plays no part in a failover; its image (npm ci) is the slowest to build.
  const stack = await realizeRecordedStack(host, resources, settings, outputs, { skip: { ...UNREALIZED_CONTAINERS, 'backup-job': 'not needed for the failover figures' } });
  await stack.waitHealthy(stack.containers, 300_000);
  await waitPatroniSettled(stack);
  // The toolkit's own API client: it retries connection errors and 502/503/504 (a cut connection to a
  // dead replica), never an error C2 answers (a write C2 could not commit). A failed request is one
  // that client reports failed.
  const api = createC2Api({ baseUrl: `https://127.0.0.1:${http}`, ca: outputs.caCertificatePem as string, timeoutMs: 10_000 });
  return { stack, api, brokerUrl: `mqtt://127.0.0.1:${broker}` };
}

async function main(): Promise<void> {
  const engine = await startPrivateDockerEngine();
  try {
    let t = Date.now();
    const images = buildStackImages(engine.host);
    say(`bench:failover: images ready in ${((Date.now() - t) / 1000).toFixed(1)} s`);
    t = Date.now();
    const tuned = await realize(engine.host, images, () => {});
    say(`bench:failover: tuned ha profile up in ${((Date.now() - t) / 1000).toFixed(1)} s (${tuned.stack.containers.length} containers); load ${RATE} writes/s`);
    const pk = await measurePrimaryKill(tuned.stack, tuned.api, { ratePerSecond: RATE });
    say(`  primary kill (${pk.oldLeader} -> ${pk.newLeader}): writes back after ${pk.recoverySeconds.toFixed(2)} s, ${pk.failed}/${pk.total} failed, ${pk.ackedWritesLost.length} of ${pk.acked} acked lost; errors: ${pk.errors.join(' | ')}`);
    await waitPatroniSettled(tuned.stack);
    const ck = await measureC2ReplicaKill(tuned.stack, tuned.api, 'c2-1', { ratePerSecond: RATE });
    say(`  C2 replica kill: ${ck.failed}/${ck.total} failed, slowest write ${ck.maxLatencySeconds.toFixed(2)} s, ${ck.ackedWritesLost.length} acked lost; errors: ${ck.errors.join(' | ')}`);
    await tuned.stack.waitHealthy(['c2-1'], 120_000);
    const br = await measureBrokerRestart(tuned.stack, tuned.api, tuned.brokerUrl);
    say(`  broker restart: retained command survives ${br.retainedOk}, C2 delivers afterwards ${br.c2DeliversAfterRestart}`);
    const ek = await measureEtcdMemberStop(tuned.stack, tuned.api, 'etcd-1', { ratePerSecond: RATE });
    say(`  etcd member stopped: ${ek.failed}/${ek.total} failed, leader ${ek.leaderBefore} -> ${ek.leaderAfter}`);
    await tuned.stack.destroy();

    let baseline: { recoverySeconds: number; failed: number; lost: number } | undefined;
    if (BASELINE) {
      const b = await realize(engine.host, images, (raw) => {
        raw.postgres.failover = { ttlSeconds: 30, loopWaitSeconds: 10, retryTimeoutSeconds: 10, synchronousMode: false };
      });
      const bpk = await measurePrimaryKill(b.stack, b.api, { ratePerSecond: RATE, afterMs: 60_000 });
      baseline = { recoverySeconds: bpk.recoverySeconds, failed: bpk.failed, lost: bpk.ackedWritesLost.length };
      say(`  baseline (Patroni defaults) primary kill: writes back after ${bpk.recoverySeconds.toFixed(2)} s, ${bpk.failed}/${bpk.total} failed, ${bpk.ackedWritesLost.length} of ${bpk.acked} acked lost`);
      await b.stack.destroy();
    }
    console.log(JSON.stringify({
      bench: 'failover',
      primaryKillSeconds: round(pk.recoverySeconds),
      failedRequests: pk.failed,
      ackedWritesLost: pk.ackedWritesLost.length,
      c2ReplicaKillFailedRequests: ck.failed,
      brokerRestartRetainedOk: br.retainedOk,
      brokerRestartC2Delivers: br.c2DeliversAfterRestart,
      etcdMemberStopFailedRequests: ek.failed,
      etcdMemberStopLeaderKept: ek.leaderBefore === ek.leaderAfter,
      writesPerSecond: RATE,
      ...(baseline ? { baselinePrimaryKillSeconds: round(baseline.recoverySeconds), baselineFailedRequests: baseline.failed, baselineAckedWritesLost: baseline.lost, ratioToBaseline: round(pk.recoverySeconds / baseline.recoverySeconds) } : {}),
    }));
  } finally {
    await engine.stop();
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
