// A throwaway pgBackRest repository for tests, drills and benches: a temp folder holding the rendered
// pgbackrest.conf, the secrets include file, a posix repository and pgBackRest's lock/log/spool paths,
// all owned by user postgres. Create it, start PostgreSQL with its archive settings, attach the cluster.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { renderPgBackRestConf, renderPgBackRestSecretsConf, pitrPostgresParameters, type PgBackRestSettings } from '../render/pgbackrest-conf.ts';
import { runPgBackRest, type PgBackRestTarget } from '../pgbackrest/pgbackrest-command.ts';
import { chownTo } from './daemon.ts';

export interface ThrowawayPgBackRestRepoOptions {
  stanza?: string;
  /** Encrypt the repository (aes-256-cbc) with this passphrase; none = unencrypted. */
  cipherPassphrase?: string;
  archiveAsync?: boolean;
  processMax?: number;
  retentionFull?: number;
}

export interface ClusterLocation { dataDir: string; port: number; socketDir: string }

export interface ThrowawayPgBackRestRepo {
  dir: string;
  configFile: string;
  configIncludePath: string;
  stanza: string;
  repoPath: string;
  target: PgBackRestTarget;
  /** postgresql.conf parameters that archive into this repository. */
  postgresSettings(archiveTimeoutSeconds?: number): Record<string, string | number>;
  /** (Re)write pgbackrest.conf for this cluster. */
  attach(cluster: ClusterLocation): void;
  /** A further host's config on the same repository (its own pg1-path, lock and spool), e.g. a Patroni member. Returns its path. */
  configFor(name: string, cluster: ClusterLocation): string;
  /** Run a pgBackRest command on the stanza as user postgres; throws PgBackRestError on failure. */
  run(command: string, args?: string[]): Promise<string>;
  /** stanza-create + check. */
  init(): Promise<void>;
  cleanup(): void;
}

export function createThrowawayPgBackRestRepo(o: ThrowawayPgBackRestRepoOptions = {}): ThrowawayPgBackRestRepo {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-pgbackrest-'));
  const stanza = o.stanza ?? 'c2';
  const p = (name: string) => path.join(dir, name);
  for (const d of ['repo', 'conf.d', 'spool', 'lock', 'log']) fs.mkdirSync(p(d));
  const configFile = p('pgbackrest.conf');
  const configIncludePath = p('conf.d');
  const settings = (pg: PgBackRestSettings['pg']): PgBackRestSettings => ({
    stanza, repo: { type: 'posix', path: p('repo') }, cipher: o.cipherPassphrase !== undefined,
    archiveAsync: o.archiveAsync ?? true, processMax: o.processMax ?? 2, retentionFull: o.retentionFull ?? 2,
    spoolPath: p('spool'), lockPath: p('lock'), logPath: p('log'), pg, configFile, configIncludePath,
  });
  const write = (pg: PgBackRestSettings['pg'], file = configFile, own?: string) => {
    const base = settings(pg);
    fs.writeFileSync(file, renderPgBackRestConf(own ? { ...base, configFile: file, spoolPath: path.join(own, 'spool'), lockPath: path.join(own, 'lock') } : base));
    if (o.cipherPassphrase !== undefined) fs.writeFileSync(path.join(configIncludePath, 'e4ops-secrets.conf'), renderPgBackRestSecretsConf({ cipherPassphrase: o.cipherPassphrase }), { mode: 0o600 });
    chownTo(dir, 'postgres');
  };
  write({ path: '/nonexistent-until-attached' });
  const target: PgBackRestTarget = { configFile, configIncludePath, stanza };
  const repo: ThrowawayPgBackRestRepo = {
    dir, configFile, configIncludePath, stanza, repoPath: p('repo'), target,
    postgresSettings: (archiveTimeoutSeconds = 60) => pitrPostgresParameters({ stanza, configFile, configIncludePath, archiveTimeoutSeconds }),
    attach: (c) => write({ path: c.dataDir, port: c.port, socketPath: c.socketDir }),
    configFor(name, c) {
      const own = p(`host-${name}`);
      for (const d of ['spool', 'lock']) fs.mkdirSync(path.join(own, d), { recursive: true });
      const file = path.join(own, 'pgbackrest.conf');
      write({ path: c.dataDir, port: c.port, socketPath: c.socketDir }, file, own);
      return file;
    },
    run: (command, args = []) => runPgBackRest(target, command, args),
    async init() {
      await repo.run('stanza-create');
      await repo.run('check');
    },
    cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
  return repo;
}
