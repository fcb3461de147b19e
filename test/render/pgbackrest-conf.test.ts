// The pgBackRest renderer: what it writes, that secrets stay out of the main file, and that real
// pgBackRest 2.45 and PostgreSQL 15 accept it (stanza-create, check, backup, WAL archived).
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { renderPgBackRestConf, renderPgBackRestSecretsConf, pitrPostgresParameters, pgBackRestSettingsOf } from '../../lib/render/pgbackrest-conf.ts';
import { renderPatroniConfig, renderPostgresConf } from '../../lib/render/postgres-conf.ts';
import { validateStackSettings, StackSettingsError } from '../../lib/settings/stack-settings.ts';
import { createThrowawayPgBackRestRepo, type ThrowawayPgBackRestRepo } from '../../lib/servers/pgbackrest-repo.ts';
import { startThrowawayPostgres, type ThrowawayPostgres } from '../../lib/servers/postgres.ts';


const PASS = 'pitr cipher passphrase for the test repo';

describe('pgbackrest.conf renderer', () => {
  const base = { repo: { type: 'posix' as const, path: '/var/lib/pgbackrest' }, pg: { path: '/var/lib/postgresql/15/main', port: 5432 } };

  it('renders stanza c2, the encrypted zst repository, async archiving and retention, with no secret in it', () => {
    const text = renderPgBackRestConf(base);
    expect(text).toMatch(/^\[global\]$/m);
    expect(text).toMatch(/^\[c2\]\npg1-path=\/var\/lib\/postgresql\/15\/main\npg1-port=5432$/m);
    for (const line of ['repo1-type=posix', 'repo1-cipher-type=aes-256-cbc', 'compress-type=zst', 'process-max=2', 'archive-async=y', 'spool-path=/var/spool/pgbackrest', 'repo1-retention-full=2', 'repo1-retention-diff=7']) {
      expect(text.split('\n')).toContain(line);
    }
    expect(text).not.toMatch(/^repo1-cipher-pass/m);
    expect(renderPgBackRestSecretsConf({ cipherPassphrase: PASS })).toBe(`[global]\nrepo1-cipher-pass=${PASS}\n`);
  });

  it('refuses values that would inject options, and bad stanza names', () => {
    expect(() => renderPgBackRestConf({ ...base, repo: { type: 'posix', path: '/x\nrepo2-path=/evil' } })).toThrow(/multi-line/);
    expect(() => renderPgBackRestConf({ ...base, stanza: 'c2 prod' })).toThrow(/stanza/);
    expect(() => renderPgBackRestSecretsConf({ cipherPassphrase: 'a\nrepo1-cipher-type=none' })).toThrow(/multi-line/);
    expect(() => renderPgBackRestConf({ ...base, repo: { type: 'posix', path: 'relative' } })).toThrow(/absolute/);
  });

  it('renders s3 and sftp repositories', () => {
    const s3 = renderPgBackRestConf({ ...base, repo: { type: 's3', path: '/c2', endpoint: 's3.example.net', bucket: 'wal', region: 'eu-1', uriStyle: 'path' } });
    expect(s3).toMatch(/^repo1-s3-bucket=wal$/m);
    expect(s3).toMatch(/^repo1-s3-uri-style=path$/m);
    const sftp = renderPgBackRestConf({ ...base, repo: { type: 'sftp', path: '/c2', host: 'backup.example.net', user: 'pgbr', privateKeyFile: '/etc/pgbackrest/id_ed25519', hostKeyHashType: 'sha256', hostFingerprint: 'abc' } });
    expect(sftp).toMatch(/^repo1-sftp-host=backup.example.net$/m);
    expect(sftp).toMatch(/^repo1-sftp-host-key-hash-type=sha256$/m);
  });

  it('the PostgreSQL side archives through pgBackRest and restores from it', () => {
    const p = pitrPostgresParameters({ stanza: 'c2', archiveTimeoutSeconds: 30 });
    expect(p).toEqual({
      archive_mode: 'on',
      archive_command: 'pgbackrest --config=/etc/pgbackrest/pgbackrest.conf --config-include-path=/etc/pgbackrest/conf.d --stanza=c2 archive-push %p',
      archive_timeout: 30,
      restore_command: 'pgbackrest --config=/etc/pgbackrest/pgbackrest.conf --config-include-path=/etc/pgbackrest/conf.d --stanza=c2 archive-get %f "%p"',
    });
    expect(renderPostgresConf({})).not.toMatch(/archive_mode/);
    expect(renderPostgresConf({ pitr: {} })).toMatch(/^archive_timeout = 60$/m);
  });

  it('Patroni: archiving in the DCS parameters (archive_mode on = the leader only), restore_command in recovery_conf, replicas from the repository first', () => {
    const doc = YAML.parse(renderPatroniConfig({
      scope: 'e4', name: 'pg-0', restApi: { listen: '0.0.0.0:8008', connectAddress: 'pg-0:8008' }, etcdHosts: ['etcd-0:2379'],
      postgres: { listen: '0.0.0.0:5432', connectAddress: 'pg-0:5432', dataDir: '/data', binDir: '/usr/lib/postgresql/15/bin', clientNetworks: ['10.0.0.0/8'] },
      superuser: 'postgres', replicationUser: 'replicator', pitr: { stanza: 'c2' },
    }));
    const params = doc.bootstrap.dcs.postgresql.parameters;
    expect(params.archive_mode).toBe('on');
    expect(params.archive_command).toMatch(/--stanza=c2 archive-push %p$/);
    expect(params.restore_command).toBeUndefined();
    expect(doc.postgresql.recovery_conf.restore_command).toMatch(/archive-get %f "%p"$/);
    expect(doc.postgresql.create_replica_methods).toEqual(['pgbackrest', 'basebackup']);
    expect(doc.postgresql.pgbackrest).toMatchObject({ keep_data: true, no_params: true });
    expect(doc.postgresql.pgbackrest.command).toMatch(/--type=standby restore$/);
  });

  it('stack settings: PITR is off in minimal, on in ha; an s3 repository without a bucket is refused', () => {
    expect(validateStackSettings({ profile: 'minimal' }).postgres.pitr.enabled).toBe(false);
    const ha = validateStackSettings({ profile: 'ha' }).postgres.pitr;
    expect(ha).toMatchObject({ enabled: true, stanza: 'c2', cipher: true, compressType: 'zst', archiveTimeoutSeconds: 60, repo: { type: 'posix', path: '/var/lib/pgbackrest' } });
    expect(renderPgBackRestConf(pgBackRestSettingsOf(ha, { path: '/data' }))).toMatch(/^repo1-path=\/var\/lib\/pgbackrest$/m);
    expect(() => validateStackSettings({ profile: 'ha', postgres: { pitr: { repo: { type: 's3', s3Endpoint: 'x', s3Region: 'r' } } } })).toThrow(StackSettingsError);
    expect(() => validateStackSettings({ profile: 'ha', postgres: { pitr: { repo: { type: 's3', s3Endpoint: 'x', s3Region: 'r' } } } })).toThrow(/postgres\.pitr\.repo\.s3Bucket/);
    expect(() => validateStackSettings({ profile: 'ha', postgres: { parameters: { archive_command: '/bin/true' } } })).toThrow(/archive_command: is managed by postgres\.pitr/);
  });
});

describe('real pgBackRest 2.45 and PostgreSQL 15 accept the rendered files', () => {
  let repo: ThrowawayPgBackRestRepo;
  let pg: ThrowawayPostgres;
  beforeAll(async () => {
    repo = createThrowawayPgBackRestRepo({ cipherPassphrase: PASS });
    // The rendered postgresql.conf text (C2's settings + archiving), as the stacks deliver it.
    pg = await startThrowawayPostgres({ confText: renderPostgresConf({ pitr: { stanza: repo.stanza, configFile: repo.configFile, configIncludePath: repo.configIncludePath, archiveTimeoutSeconds: 5 } }) });
    repo.attach(pg);
  }, 60_000);
  afterAll(async () => {
    await pg?.stop();
    repo?.cleanup();
  });

  it('stanza-create, check and a full backup succeed; WAL is archived; the repository is encrypted', async () => {
    await repo.init();
    expect(pg.psql('SHOW archive_mode').trim()).toBe('on');
    await repo.run('backup', ['--type=full']);
    const [info] = JSON.parse(await repo.run('info', ['--output=json']));
    expect(info.status.code).toBe(0);
    expect(info.cipher).toBe('aes-256-cbc');
    expect(info.backup.map((b: { type: string }) => b.type)).toEqual(['full']);
    expect(info.archive[0].max).toMatch(/^[0-9A-F]{24}$/);
    // No file in the repository holds the passphrase or is readable without it.
    expect(fs.readFileSync(repo.configFile, 'utf8')).not.toContain(PASS);
    // The repository's own files are encrypted (OpenSSL-compatible "Salted__" header), not plain INI.
    const backupInfo = fs.readFileSync(path.join(repo.repoPath, 'backup', repo.stanza, 'backup.info'));
    expect(backupInfo.subarray(0, 8).toString('latin1')).toBe('Salted__');
    expect(backupInfo.includes(Buffer.from(PASS))).toBe(false);
  }, 120_000);
});
