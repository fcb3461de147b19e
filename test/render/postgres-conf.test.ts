import { describe, it, expect, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { renderPostgresConf, renderPostBootstrapScript } from '../../lib/render/postgres-conf.ts';
import { startThrowawayPostgres, type ThrowawayPostgres } from '../../lib/servers/postgres.ts';
import { createPgClient } from '../../lib/pg/pg-client.ts';

// PostgreSQL 15 must start with the rendered settings, and the post-bootstrap script (run by
// Patroni on the first primary) must create C2's role with a SCRAM password and its database.
describe('rendered PostgreSQL settings on the real PostgreSQL', () => {
  let server: ThrowawayPostgres | undefined;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-pgconf-'));
  afterAll(async () => { await server?.stop(); fs.rmSync(tmp, { recursive: true, force: true }); });

  it('starts with the rendered postgresql.conf and applies operator parameters', async () => {
    server = await startThrowawayPostgres({ confText: renderPostgresConf({ parameters: { work_mem: '8MB', max_connections: 150 } }) });
    expect(server.psql('show password_encryption').trim()).toBe('scram-sha-256');
    expect(server.psql('show wal_level').trim()).toBe('replica');
    expect(server.psql('show work_mem').trim()).toBe('8MB');
    expect(server.psql('show max_connections').trim()).toBe('150');
  });

  it('post-bootstrap script creates the C2 role (SCRAM password, quotes survive) and its databases', async () => {
    const script = path.join(tmp, 'post-bootstrap.sh');
    fs.writeFileSync(script, renderPostBootstrapScript({ database: 'e4', username: 'e4', extraDatabases: ['e4_automation'] }), { mode: 0o755 });
    const password = "it's a \"long\" pass; phrase";
    const r = spawnSync('sh', [script, server!.url()], { encoding: 'utf8', env: { ...process.env, E4_DB_PASSWORD: password } });
    expect(r.status, r.stderr).toBe(0);
    expect(server!.psql("select rolpassword like 'SCRAM-SHA-256$%' from pg_authid where rolname = 'e4'").trim()).toBe('t');
    expect(server!.psql("select string_agg(datname, ',' order by datname) from pg_database where datdba = (select oid from pg_roles where rolname = 'e4')").trim()).toBe('e4,e4_automation');
    // The stored verifier matches the password: require SCRAM for e4 (first pg_hba line wins).
    const hba = path.join(server!.dataDir, 'pg_hba.conf');
    fs.writeFileSync(hba, `host all e4 127.0.0.0/8 scram-sha-256\n${fs.readFileSync(hba, 'utf8')}`);
    server!.psql('select pg_reload_conf()');
    const login = async (pw: string) => {
      const c = createPgClient({ host: server!.host, port: server!.port, user: 'e4', database: 'e4', password: pw });
      try { await c.connect(); return (await c.query('select current_user as u')).rows[0].u as string; } finally { await c.end().catch(() => {}); }
    };
    await expect(login('wrong password')).rejects.toThrow(/password authentication failed/);
    expect(await login(password)).toBe('e4');
  });

  it('refuses a script without the password and bad identifiers', () => {
    const script = path.join(tmp, 'nopw.sh');
    fs.writeFileSync(script, renderPostBootstrapScript({ database: 'e4', username: 'e4' }), { mode: 0o755 });
    const env = { ...process.env };
    delete env.E4_DB_PASSWORD;
    const r = spawnSync('sh', [script, server!.url()], { encoding: 'utf8', env });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/E4_DB_PASSWORD/);
    expect(() => renderPostBootstrapScript({ database: 'e4; drop', username: 'e4' })).toThrow(/identifier/);
  });
});
