import { describe, it, expect } from 'vitest';
import { validateStackSettings, StackSettingsError, imageMajorVersion, type StackSecrets } from '../../lib/settings/stack-settings.ts';

// Bad settings are refused before anything is deployed, each problem naming the key and the fix.
function problems(raw: unknown, secrets: StackSecrets = {}): string[] {
  try {
    validateStackSettings(raw, secrets);
  } catch (e) {
    expect(e).toBeInstanceOf(StackSettingsError);
    return (e as StackSettingsError).problems;
  }
  throw new Error('settings were accepted');
}

describe('stack settings validation', () => {
  it('fills profile defaults: minimal is C2 + Postgres + Mosquitto; ha has replicas and every service', () => {
    const m = validateStackSettings({ profile: 'minimal' });
    expect(m.c2.replicas).toBe(1);
    expect(m.broker.kind).toBe('mosquitto');
    expect([m.elasticsearch.enabled, m.logShipper.enabled, m.tracing.enabled, m.monitoring.prometheus.enabled, m.c2.messageLogging]).toEqual([false, false, false, false, false]);
    expect(m.publish).toEqual({ c2Address: '127.0.0.1', grpcPort: 5555, httpPort: 8888, brokerAddress: '127.0.0.1', brokerPort: 1883 });
    const h = validateStackSettings({ profile: 'ha' });
    expect([h.c2.replicas, h.postgres.replicas, h.etcd.nodes, h.broker.nodes, h.elasticsearch.nodes]).toEqual([2, 3, 3, 3, 3]);
    expect(h.broker.kind).toBe('emqx');
    expect(h.c2.messageLogging).toBe(true);
    expect(imageMajorVersion(h.elasticsearch.image)).toBe(7);
    expect(h.monitoring.retention).toEqual({ messagesDays: 30, logsDays: 14 });
    expect(h.backup.retention).toEqual({ keepLast: 7, keepDaily: 14, keepWeekly: 8, keepMonthly: 12 });
  });

  it('operator values win over profile defaults', () => {
    const h = validateStackSettings({ profile: 'ha', c2: { replicas: 4, mqttIdPrefix: 'c2x' }, elasticsearch: { enabled: false }, logShipper: { enabled: false } });
    expect(h.c2.replicas).toBe(4);
    expect(h.c2.messageLogging).toBe(false);
  });

  const cases: Array<[string, unknown, StackSecrets, RegExp]> = [
    ['unknown top-level key', { profile: 'minimal', c2Replicas: 2 }, {}, /^c2Replicas: unknown key\. Fix: remove it/],
    ['unknown nested key (typo)', { profile: 'ha', postgres: { replica: 3 } }, {}, /^postgres\.replica: unknown key.*keys allowed in postgres: .*replicas/],
    ['wrong type', { profile: 'ha', c2: { replicas: 'two' } }, {}, /^c2\.replicas: must be of type integer/],
    ['missing or unknown profile', { c2: {} }, {}, /^profile: must be "minimal" or "ha"/],
    ['passphrase under 16 bytes', { profile: 'minimal' }, { c2DbPassphrase: 'too-short' }, /^c2DbPassphrase: is 9 bytes.*at least 16.*C2 refuses to start.*pulumi config set --secret c2DbPassphrase/],
    ['Elasticsearch 8 with C2 message logging', { profile: 'ha', elasticsearch: { image: 'docker.elastic.co/elasticsearch/elasticsearch:8.15.0', kibanaImage: 'docker.elastic.co/kibana/kibana:8.15.0' } }, {}, /^elasticsearch\.image: .*Elasticsearch 8.*needs Elasticsearch 7\.x\. Fix: use a 7\.17 tag/],
    ['even etcd member count', { profile: 'ha', etcd: { nodes: 4 } }, {}, /^etcd\.nodes: is 4; etcd needs an odd number.*Fix: set etcd\.nodes to 3 or 5/],
    ['even Elasticsearch master count', { profile: 'ha', elasticsearch: { nodes: 2 } }, {}, /^elasticsearch\.nodes: is 2; master-eligible nodes must be odd/],
    ['HA with one C2 replica', { profile: 'ha', c2: { replicas: 1 } }, {}, /^c2\.replicas: is 1, but the ha profile needs at least 2 C2 replicas behind HAProxy/],
    ['minimal with two C2 replicas', { profile: 'minimal', c2: { replicas: 2 } }, {}, /^c2\.replicas: is 2, but the minimal profile has no load balancer/],
    ['HA on Mosquitto', { profile: 'ha', broker: { kind: 'mosquitto', nodes: 1 } }, {}, /^broker\.kind: mosquitto cannot cluster/],
    ['EMQX 5.9 (BSL, clustering needs a licence)', { profile: 'ha', broker: { emqxImage: 'emqx/emqx:5.9.1' } }, {}, /^broker\.emqxImage: .*5\.9 EMQX is under the BSL/],
    ['message logging without Elasticsearch', { profile: 'minimal', c2: { messageLogging: true } }, {}, /^c2\.messageLogging: is on but elasticsearch\.enabled is false/],
    ['bad bind address', { profile: 'minimal', publish: { c2Address: 'localhost' } }, {}, /^publish\.c2Address: is not a valid ipv4 address/],
    ['published ports collide', { profile: 'minimal', publish: { brokerAddress: '127.0.0.1', brokerPort: 8888 } }, {}, /^publish\.brokerPort: 127\.0\.0\.1:8888 collides with publish\.httpPort/],
    ['several hosts without private addresses', { profile: 'ha', hosts: [{ name: 'a', url: 'ssh://a' }, { name: 'b', url: 'ssh://b' }, { name: 'c', url: 'ssh://c' }] }, {}, /^hosts\[0\]\.address: missing/],
    ['more members than hosts', { profile: 'ha', hosts: [{ name: 'a', url: 'ssh://a', address: '10.0.0.1' }, { name: 'b', url: 'ssh://b', address: '10.0.0.2' }] }, {}, /^postgres\.replicas: is 3 but only 2 Docker hosts/],
    ['bad Docker host URL', { profile: 'minimal', hosts: [{ name: 'a', url: 'http://a' }] }, {}, /^hosts\[0\]\.url: has an invalid form/],
    ['two automation engines', { profile: 'minimal', automationEngine: { enabled: true, replicas: 2 } }, {}, /^automationEngine\.replicas: must be <= 1.*At most one engine/],
    ['backup on without targets or recipients', { profile: 'minimal', backup: { enabled: true } }, {}, /^backup\.targets: is empty but backup\.enabled is true/],
    ['bad cron schedule', { profile: 'minimal', backup: { schedule: 'daily' } }, {}, /^backup\.schedule: "daily" is not a 5-field cron expression/],
    ['out-of-range cron schedule', { profile: 'minimal', backup: { schedule: '99 99 * * *' } }, {}, /^backup\.schedule: "99 99 \* \* \*" is not a 5-field cron expression \(is not a cron schedule: .*got value 99/],
    ['bad age recipient', { profile: 'minimal', backup: { ageRecipients: ['not-a-key'] } }, {}, /^backup\.ageRecipients\[0\]: has an invalid form/],
    ['mistyped age recipient (shape right, checksum wrong)', { profile: 'minimal', backup: { ageRecipients: ['age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p', 'age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8q'] } }, {}, /^backup\.ageRecipients\[1\]: "age1ql3z7hjy\.\.\." fails its bech32 checksum.*Fix: copy the key again/],
    ['stack-managed postgres parameter', { profile: 'minimal', postgres: { parameters: { port: 5433 } } }, {}, /^postgres\.parameters\.port: is managed by the stack/],
    ['unknown secret key', { profile: 'minimal' }, { c2Passphrase: 'x'.repeat(20) } as StackSecrets, /^c2Passphrase: unknown secret key/],
  ];
  it.each(cases)('refuses %s, naming the key and the fix', (_what, raw, secrets, expected) => {
    const p = problems(raw, secrets);
    expect(p.some((line) => expected.test(line)), `got:\n${p.join('\n')}`).toBe(true);
    for (const line of p) expect(line).toMatch(/Fix: |must be |: missing|unknown/);
  });

  it('accepts numbers and booleans set as strings by `pulumi config set --path`', () => {
    const s = validateStackSettings({ profile: 'ha', c2: { replicas: '3' }, elasticsearch: { enabled: 'true' } });
    expect(s.c2.replicas).toBe(3);
    expect(s.elasticsearch.enabled).toBe(true);
  });

  it('Patroni timing: ha defaults fail over on a 10 s lease with synchronous replication; a lease shorter than the retries is refused', () => {
    expect(validateStackSettings({ profile: 'ha' }).postgres.failover).toEqual({ ttlSeconds: 10, loopWaitSeconds: 2, retryTimeoutSeconds: 4, synchronousMode: true });
    expect(problems({ profile: 'ha', postgres: { failover: { ttlSeconds: 8, retryTimeoutSeconds: 4 } } }))
      .toEqual([expect.stringMatching(/^postgres\.failover\.ttlSeconds: is 8, below loopWaitSeconds \+ 2 \* retryTimeoutSeconds \(10\).*Fix: raise ttlSeconds/)]);
    expect(validateStackSettings({ profile: 'ha', etcd: { api: 'etcd' } }).etcd.api).toBe('etcd');
    expect(problems({ profile: 'ha', etcd: { api: 'v3' } }).join('\n')).toMatch(/etcd\.api/);
  });

  it('reports every problem at once, not just the first', () => {
    const p = problems({ profile: 'ha', c2: { replicas: 'x', colour: 'red' }, etcd: { nodes: 'three' } });
    expect(p.length).toBeGreaterThanOrEqual(3);
  });

  it('refuses a non-object settings value', () => {
    expect(problems('profile: ha')[0]).toMatch(/^e4ops:settings: missing or not an object/);
  });
});
