import { describe, it, expect, beforeAll } from 'vitest';
import YAML from 'yaml';
import fs from 'node:fs';
import { installStackMocks, quiesce, settle, reveal, type MockRecorder } from './pulumi-mocks.ts';
import { assertCommonStackProperties, assertNoSecretInOutputs, containers, imageRef, secretValues, envOf, upload, c2Configs } from './stack-assertions.ts';

// The Pulumi program under mocks with Pulumi.ha.yaml's settings (one Docker host as shipped).
describe('ha profile (Pulumi.ha.yaml) under Pulumi mocks', () => {
  let rec: MockRecorder;
  const outputs: Record<string, unknown> = {};

  beforeAll(async () => {
    const stackFile = YAML.parse(fs.readFileSync('Pulumi.ha.yaml', 'utf8'));
    rec = await installStackMocks('ha', { 'e4ops:settings': JSON.stringify(stackFile.config['e4ops:settings']) });
    const program = await import('../../stacks/index.ts');
    await quiesce(rec);
    for (const [k, v] of Object.entries(program)) outputs[k] = (await settle(v as never)).value;
  });

  it('deploys every HA service', () => {
    const names = [...containers(rec).keys()];
    for (const n of ['c2-0', 'c2-1', 'c2-2', 'haproxy-local', 'pg-0', 'pg-1', 'pg-2', 'etcd-0', 'etcd-1', 'etcd-2', 'emqx-0', 'emqx-1', 'emqx-2',
      'es-0', 'es-1', 'es-2', 'kibana', 'log-shipper-local', 'prometheus', 'blackbox', 'node-exporter-local', 'postgres-exporter',
      'elasticsearch-exporter', 'jaeger', 'ocagent-local', 'backup-job']) {
      expect(names, n).toContain(n);
    }
    expect(names).not.toContain('automation-engine');
    expect(names.filter((n) => /mosquitto/.test(n))).toEqual([]);
  });

  it('has the properties every profile needs (ids, health checks, secrets, certificates, no DB/ES ports)', () => {
    assertCommonStackProperties(rec, { expectC2: 3 });
  });

  it('puts the C2 replicas behind HAProxy (gRPC and HTTPS, health-checked); only HAProxy publishes', () => {
    const lb = containers(rec).get('haproxy-local')!;
    const cfg = upload(lb, '/usr/local/etc/haproxy/haproxy.cfg')!.content!;
    for (const backend of ['c2_grpc', 'c2_https']) {
      const section = cfg.split(`\nbackend ${backend}\n`)[1].split("\n\n")[0];
      expect(section).toContain('option httpchk GET /e4/clients/count');
      expect(section.match(/^ {2}server c2-\d /gm)).toHaveLength(3);
    }
    expect(cfg).toMatch(/backend postgres_primary[\s\S]*option httpchk GET \/primary/);
    const publishers = [...containers(rec).values()].filter((c) => (reveal<unknown[]>(c.inputs.ports) ?? []).length).map((c) => c.inputs.name);
    expect(publishers).toEqual(['haproxy-local']);
    expect(reveal<Array<{ internal: number; ip: string }>>(lb.inputs.ports).map((p) => p.internal).sort()).toEqual([1883, 5555, 8888]);
  });

  it('Elasticsearch and Kibana are 7.x; exactly one C2 replica logs messages into it', () => {
    for (const n of ['es-0', 'es-1', 'es-2', 'kibana']) expect(imageRef(rec, containers(rec).get(n)!)).toMatch(/:7\.\d+\.\d+$/);
    const logging = c2Configs(rec).filter((c) => c.config['es-enable'] === true);
    expect(logging.map((c) => c.name)).toEqual(['c2-0']);
    expect(logging[0].config['es-message-logging-enable']).toBe(true);
    expect(envOf(containers(rec).get('c2-0')!).E4C2_ES_URLS).toMatch(/^http:\/\/elastic:[^@]+@es-0:9200 /);
    expect(envOf(containers(rec).get('c2-1')!).E4C2_ES_URLS).toBeUndefined();
    // Three master-eligible nodes bootstrap together.
    expect(envOf(containers(rec).get('es-1')!)['cluster.initial_master_nodes']).toBe('es-0,es-1,es-2');
  });

  it('PITR (on in ha): Patroni archives through pgBackRest; pgbackrest.conf has no secret, the cipher passphrase goes in a secret 0600 upload', () => {
    const pg1 = containers(rec).get('pg-1')!;
    const patroni = YAML.parse(upload(pg1, '/etc/patroni/patroni.yml')!.content!);
    expect(patroni.bootstrap.dcs.postgresql.parameters).toMatchObject({ archive_mode: 'on', archive_timeout: 60 });
    expect(patroni.bootstrap.dcs.postgresql.parameters.archive_command).toBe('pgbackrest --config=/etc/pgbackrest/pgbackrest.conf --config-include-path=/etc/pgbackrest/conf.d --stanza=c2 archive-push %p');
    expect(patroni.postgresql.create_replica_methods).toEqual(['pgbackrest', 'basebackup']);
    const conf = upload(pg1, '/etc/pgbackrest/pgbackrest.conf')!;
    expect(conf.content).toMatch(/^pg1-path=\/var\/lib\/postgresql\/data\/pgdata$/m);
    expect(conf.content).not.toMatch(/cipher-pass=/);
    const secrets = upload(pg1, '/etc/pgbackrest/conf.d/e4ops-secrets.conf')!;
    expect(secrets.secret).toBe(true);
    expect(secrets.content).toMatch(/^repo1-cipher-pass=mock-generated-secret-pitrCipherPassphrase-/m);
  });

  it('Patroni members use the etcd cluster; EMQX nodes form one static cluster with retained messages on disc', () => {
    const patroni = YAML.parse(upload(containers(rec).get('pg-1')!, '/etc/patroni/patroni.yml')!.content!);
    expect(patroni.etcd3.hosts).toEqual(['etcd-0:2379', 'etcd-1:2379', 'etcd-2:2379']);
    expect(patroni.name).toBe('pg-1');
    expect(envOf(containers(rec).get('pg-1')!).PATRONI_SUPERUSER_PASSWORD).toBeTruthy();
    const emqx = upload(containers(rec).get('emqx-2')!, '/opt/emqx/etc/emqx.conf')!.content!;
    expect(emqx).toContain('static.seeds = ["emqx@emqx-0", "emqx@emqx-1", "emqx@emqx-2"]');
    expect(emqx).toMatch(/storage_type = disc/);
    expect(imageRef(rec, containers(rec).get('emqx-0')!)).toMatch(/^emqx\/emqx:5\.[0-8]\./);
  });

  it('Prometheus loads the dashboards rule files and scrapes the OpenCensus agent, Postgres, Patroni and the broker', () => {
    const prom = containers(rec).get('prometheus')!;
    const cfg = YAML.parse(upload(prom, '/etc/prometheus/prometheus.yml')!.content!);
    const jobs = Object.fromEntries(cfg.scrape_configs.map((j: any) => [j.job_name, j.static_configs[0].targets]));
    expect(jobs['e4-c2-metrics']).toEqual(['ocagent-local:9998']);
    expect(jobs['e4-postgres']).toEqual(['postgres-exporter:9187']);
    expect(jobs['e4-patroni']).toEqual(['pg-0:8008', 'pg-1:8008', 'pg-2:8008']);
    expect(jobs['e4-broker']).toEqual(['emqx-0:18083', 'emqx-1:18083', 'emqx-2:18083']);
    const ruleFiles = fs.readdirSync('dashboards/prometheus').filter((f) => /\.ya?ml$/.test(f));
    const uploaded = reveal<Array<{ file: string }>>(prom.inputs.uploads).map((u) => u.file);
    for (const f of ruleFiles) expect(uploaded).toContain(`/etc/prometheus/rules/${f}`);
    expect(outputs.prometheusRuleFiles).toEqual(ruleFiles.sort());
  });

  it('uploaded secrets reach the service users: C2 and Patroni start as root only to take their uploads, then drop to e4 / postgres', () => {
    // The Docker provider writes uploads owned by root: a 0600 config.yaml was unreadable by C2 (found on a real engine).
    const c2 = containers(rec).get('c2-1')!;
    expect(c2.inputs.user).toBe('root');
    const [sh, flag, script] = reveal<string[]>(c2.inputs.entrypoints);
    expect([sh, flag]).toEqual(['sh', '-c']);
    expect(script).toMatch(/^chown -R e4: \/opt\/e4\/configs \/var\/log && export HOME=.* && exec setpriv --reuid=e4 --regid=e4 --init-groups \/opt\/e4\/bin\/c2$/);
    const pg = containers(rec).get('pg-2')!;
    expect(pg.inputs.user).toBe('root');
    expect(reveal<string[]>(pg.inputs.command)[2]).toMatch(/chown -R postgres: \/etc\/patroni \/etc\/pgbackrest && .*exec setpriv --reuid=postgres --regid=postgres --init-groups patroni \/etc\/patroni\/patroni\.yml$/);
    expect(upload(pg, '/etc/pgbackrest/conf.d/e4ops-secrets.conf')).toBeDefined();
  });

  it('Patroni fails over on a short lease with synchronous replication; HAProxy checks every second and moves off a dead C2 replica', () => {
    const patroni = YAML.parse(upload(containers(rec).get('pg-0')!, '/etc/patroni/patroni.yml')!.content!);
    expect(patroni.bootstrap.dcs).toMatchObject({ ttl: 10, loop_wait: 2, retry_timeout: 4, synchronous_mode: true, synchronous_mode_strict: false });
    const cfg = upload(containers(rec).get('haproxy-local')!, '/usr/local/etc/haproxy/haproxy.cfg')!.content!;
    expect(cfg).toMatch(/default-server inter 1000ms fall 3 rise 2 resolvers containers init-addr none$/m);
    // Patroni dials its own PostgreSQL on 127.0.0.1 (bootstrap failed without this line on a real engine).
    expect(patroni.postgresql.pg_hba).toContain('host all all 127.0.0.1/32 scram-sha-256');
    const https = cfg.split('\nbackend c2_https\n')[1].split('\n\n')[0];
    for (const line of ['timeout connect 1s', 'retries 3', 'option redispatch 1']) expect(https).toContain(line);
    expect(https.match(/ rise 1 on-marked-down shutdown-sessions$/gm)).toHaveLength(3);
    expect(cfg.split('\nbackend postgres_primary\n')[1].match(/ rise 1 on-marked-down shutdown-sessions$/gm)).toHaveLength(3);
    // A dead member's name fails to resolve in about 1 s (Patroni asks every member before promoting).
    for (const n of ['pg-0', 'c2-0']) expect(reveal(containers(rec).get(n)!.inputs.dnsOpts)).toEqual(['timeout:1', 'attempts:1']);
    expect(reveal(containers(rec).get('haproxy-local')!.inputs.healthcheck).tests).toEqual(['CMD', 'bash', '-c', 'exec 3<>/dev/tcp/127.0.0.1/8404']);
  });

  it('the backup job is scheduled with the configured retention and recipients', () => {
    const job = containers(rec).get('backup-job')!;
    expect(upload(job, '/etc/cron.d/e4ops-backup')!.content).toMatch(/^17 3 \* \* \* root /m);
    const cfg = JSON.parse(upload(job, '/etc/e4ops/backup.json')!.content!);
    expect(cfg.retention).toEqual({ keepLast: 7, keepDaily: 14, keepWeekly: 8, keepMonthly: 12 });
    expect(cfg.ageRecipients[0]).toMatch(/^age1/);
  });

  it('outputs say plainly that one host does not survive host loss, and leak no secret', () => {
    expect(outputs.hostLossTolerance).toMatch(/single Docker host .*does NOT survive the loss of the host/);
    expect((outputs.c2Replicas as Array<{ mqttClientId: string }>).map((r) => r.mqttClientId)).toEqual(['e4c2-0', 'e4c2-1', 'e4c2-2']);
    assertNoSecretInOutputs(outputs, secretValues(rec));
  });
});
