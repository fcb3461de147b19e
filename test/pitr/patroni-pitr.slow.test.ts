// Slow (E4OPS_SLOW_TESTS=1): a real Patroni cluster from the rendered member configs with PITR on.
// The leader archives WAL into a real pgBackRest repository, the replica (in recovery, archive_mode on)
// archives nothing, and the replica is created from the repository (create_replica_methods: pgbackrest).
// Debian's etcd 3.4 has no v3 JSON gateway, so Patroni speaks the v2 API here (as in patroni-failover).
import { describe, it, expect, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startThrowawayEtcd } from '../../lib/servers/etcd.ts';
import { writePatroniTestMember, type PatroniTestMember } from '../harness/patroni-member.ts';
import { renderPostBootstrapScript } from '../../lib/render/postgres-conf.ts';
import { asUser, chownTo, startDaemon, type Daemon } from '../../lib/servers/daemon.ts';
import { createThrowawayPgBackRestRepo } from '../../lib/servers/pgbackrest-repo.ts';
import { runPgBackRest } from '../../lib/pgbackrest/pgbackrest-command.ts';
import { createPgClient } from '../../lib/pg/pg-client.ts';

describe.skipIf(!process.env.E4OPS_SLOW_TESTS)('Patroni with PITR: archives from the leader only, replicas from the repository (real programs, slow)', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-patroni-pitr-'));
  fs.chmodSync(tmp, 0o755);
  const repo = createThrowawayPgBackRestRepo({ cipherPassphrase: 'patroni pitr test passphrase' });
  const daemons: Daemon[] = [];
  afterAll(async () => {
    for (const d of daemons.reverse()) await d.stop('SIGTERM', 15_000);
    fs.rmSync(tmp, { recursive: true, force: true });
    repo.cleanup();
  });
  const env = { ...process.env, HOME: tmp, PATRONI_SUPERUSER_PASSWORD: 'super-secret-pw', PATRONI_REPLICATION_PASSWORD: 'repl-secret-pw', PATRONI_REWIND_PASSWORD: 'super-secret-pw', E4_DB_PASSWORD: 'e4-db-password' };
  const rest = async (host: string, port: number, p: string) => { try { return (await fetch(`http://${host}:${port}${p}`)).status; } catch { return 0; } };
  const until = async (what: string, cond: () => Promise<boolean>, ms = 120_000) => {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) { if (await cond()) return; await new Promise((r) => setTimeout(r, 500)); }
    throw new Error(`timed out waiting for ${what}\n${daemons.map((d) => d.tail(12)).join('\n---\n')}`);
  };
  const sql = async (ip: string, port: number, q: string) => {
    const c = createPgClient({ host: ip, port, user: 'postgres', password: env.PATRONI_SUPERUSER_PASSWORD, database: 'postgres' });
    await c.connect();
    try { return (await c.query(q)).rows; } finally { await c.end().catch(() => undefined); }
  };

  it('the leader archives, the replica does not, and the replica is restored from the repository', async () => {
    const etcd = await startThrowawayEtcd(tmp, 'e4ops-pitr');
    daemons.push(etcd.daemon);
    const script = path.join(tmp, 'post-bootstrap.sh');
    fs.writeFileSync(script, renderPostBootstrapScript({ database: 'e4', username: 'e4' }), { mode: 0o755 });

    type Member = PatroniTestMember & { conf: string };
    const members: Member[] = [];
    for (const [i, ip] of ['127.0.0.2', '127.0.0.3'].entries()) {
      let conf = '';
      // Each member host has its own pgbackrest.conf (its pg1-path) on the one shared repository.
      const m = await writePatroniTestMember({
        dir: tmp, index: i, ip, etcdHostPort: etcd.clientHostPort, postBootstrap: script,
        extra: (m) => {
          conf = repo.configFor(m.name, { dataDir: m.dataDir, port: m.pgPort, socketDir: m.socketDir });
          return { pitr: { stanza: repo.stanza, configFile: conf, configIncludePath: repo.configIncludePath, archiveTimeoutSeconds: 5 } };
        },
      });
      members.push({ ...m, conf });
    }
    chownTo(tmp, 'postgres');
    chownTo(repo.dir, 'postgres');
    const start = (m: Member) => daemons.push(startDaemon('patroni', [path.join(tmp, `${m.name}.yml`)], path.join(tmp, `${m.name}.log`), { cwd: tmp, env, ...asUser('postgres') }));
    start(members[0]);
    await until('pg-0 to lead', async () => (await rest(members[0].ip, members[0].restPort, '/primary')) === 200);

    const leader = { configFile: members[0].conf, configIncludePath: repo.configIncludePath, stanza: repo.stanza };
    await runPgBackRest(leader, 'stanza-create');
    await runPgBackRest(leader, 'backup', ['--type=full']);
    await sql(members[0].ip, members[0].pgPort, "CREATE TABLE probe AS SELECT 'written on the leader'::text AS note");
    await sql(members[0].ip, members[0].pgPort, 'SELECT pg_switch_wal()');

    start(members[1]);
    await until('pg-1 to replicate', async () => (await rest(members[1].ip, members[1].restPort, '/replica')) === 200);
    const log1 = fs.readFileSync(path.join(tmp, 'pg-1.log'), 'utf8');
    expect(log1).toMatch(/replica has been created using pgbackrest/);
    await until('the probe row on pg-1', async () => (await sql(members[1].ip, members[1].pgPort, 'SELECT note FROM probe').catch(() => [])).length === 1);

    // Archiving: on in both, but only the leader (not in recovery) archives.
    for (const m of members) expect((await sql(m.ip, m.pgPort, 'SHOW archive_mode'))[0].archive_mode).toBe('on');
    await sql(members[0].ip, members[0].pgPort, 'SELECT pg_switch_wal()');
    await until('the leader to archive', async () => Number((await sql(members[0].ip, members[0].pgPort, 'SELECT archived_count FROM pg_stat_archiver'))[0].archived_count) > 0);
    expect(Number((await sql(members[1].ip, members[1].pgPort, 'SELECT archived_count FROM pg_stat_archiver'))[0].archived_count)).toBe(0);
    expect((await sql(members[1].ip, members[1].pgPort, 'SELECT pg_is_in_recovery() AS r'))[0].r).toBe(true);
  }, 300_000);
});
