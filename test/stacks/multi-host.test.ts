import { describe, it, expect, beforeAll } from 'vitest';
import { installStackMocks, quiesce, reveal, settle, type MockRecorder } from './pulumi-mocks.ts';
import { containers, envOf, upload } from './stack-assertions.ts';

// HA placement over three Docker hosts: one docker.Provider per host, one member of each cluster
// per host, peers published only on each host's private address.
describe('ha profile over three Docker hosts (Pulumi mocks)', () => {
  let rec: MockRecorder;
  let outputs: Record<string, unknown>;
  const hosts = [
    { name: 'dc1', url: 'ssh://deploy@dc1.example.net', address: '10.20.0.11' },
    { name: 'dc2', url: 'ssh://deploy@dc2.example.net', address: '10.20.0.12' },
    { name: 'dc3', url: 'ssh://deploy@dc3.example.net', address: '10.20.0.13' },
  ];

  beforeAll(async () => {
    rec = await installStackMocks('ha3', {});
    const { defineStack } = await import('../../stacks/program.ts');
    const { validateStackSettings } = await import('../../lib/settings/stack-settings.ts');
    const out = defineStack(validateStackSettings({ profile: 'ha', hosts, c2: { replicas: 3 }, publish: { c2Address: '0.0.0.0', brokerAddress: '0.0.0.0' } }), {}, { repoRoot: process.cwd() });
    await quiesce(rec);
    outputs = Object.fromEntries(await Promise.all(Object.entries(out).map(async ([k, v]) => [k, (await settle(v as never)).value])));
  });

  it('one Docker provider per host, and each cluster spread one member per host', () => {
    const providers = rec.byType('pulumi:providers:docker');
    expect(providers.map((p) => p.inputs.host)).toEqual(hosts.map((h) => h.url));
    const providerOf = (name: string) => providers.findIndex((p) => containers(rec).get(name)!.provider?.includes(`::${p.name}::`));
    for (const prefix of ['c2', 'pg', 'etcd', 'emqx', 'es']) {
      expect([0, 1, 2].map((i) => providerOf(`${prefix}-${i}`)), prefix).toEqual([0, 1, 2]);
    }
    for (const h of hosts) for (const svc of ['haproxy', 'log-shipper', 'ocagent', 'node-exporter']) expect(containers(rec).has(`${svc}-${h.name}`)).toBe(true);
  });

  it('peers reach each other on host addresses; peer ports are published on the private address only', () => {
    const etcd1 = YAML_parse(upload(containers(rec).get('etcd-1')!, '/etc/etcd/etcd.yml')!.content!);
    expect(etcd1['initial-cluster']).toBe('etcd-0=http://10.20.0.11:2380,etcd-1=http://10.20.0.12:2380,etcd-2=http://10.20.0.13:2380');
    const pg2 = containers(rec).get('pg-2')!;
    expect(reveal<Array<{ internal: number; ip: string }>>(pg2.inputs.ports)).toEqual(expect.arrayContaining([
      expect.objectContaining({ internal: 5432, ip: '10.20.0.13' }), expect.objectContaining({ internal: 8008, ip: '10.20.0.13' }),
    ]));
    for (const c of containers(rec).values()) {
      if (/^haproxy-/.test(c.inputs.name)) continue;
      for (const p of reveal<Array<{ ip: string }>>(c.inputs.ports) ?? []) expect(p.ip, c.inputs.name).toMatch(/^10\.20\.0\.1[123]$/);
    }
    // C2's peer ports move up so they never collide with the balancer's public 5555/8888.
    const lb = upload(containers(rec).get('haproxy-dc2')!, '/usr/local/etc/haproxy/haproxy.cfg')!.content!;
    expect(lb).toContain('server c2-0 10.20.0.11:15555');
    expect(envOf(containers(rec).get('es-1')!)['network.publish_host']).toBe('10.20.0.12');
  });

  it('says it survives the loss of one host', () => {
    expect(outputs.hostLossTolerance).toMatch(/over 3 Docker hosts .*survives the loss of one host/);
  });
});

import YAML from 'yaml';
function YAML_parse(text: string) { return YAML.parse(text); }
