// pgBackRest for C2's database (point-in-time recovery): pgbackrest.conf, the secrets include file, and
// the PostgreSQL side (archive_command, restore_command, and Patroni's replica-from-repository method).
// One renderer for the stacks, the appliance and the tests. Secrets (the repository cipher passphrase, S3
// keys) never appear in pgbackrest.conf: they go to a separate include file (conf.d, mode 0600) that
// pgBackRest concatenates with the main file, so the main file can be committed and printed.
import type { PitrSettings } from '../settings/stack-settings.ts';

export interface PosixRepo { type: 'posix'; path: string }
/** SFTP repositories need pgBackRest 2.46 or later built with libssh2 (Debian 12's 2.45 has no sftp). */
export interface SftpRepo {
  type: 'sftp'; path: string; host: string; port?: number; user: string;
  privateKeyFile: string; publicKeyFile?: string;
  /** Host key check: hash type and the server's fingerprint (ssh-keygen -lf ... -E sha1 / md5 / sha256). */
  hostKeyHashType: 'md5' | 'sha1' | 'sha256'; hostFingerprint?: string;
}
export interface S3Repo {
  type: 's3'; path: string; endpoint: string; bucket: string; region: string;
  uriStyle?: 'host' | 'path'; verifyTls?: boolean; port?: number;
}
export type PgBackRestRepo = PosixRepo | SftpRepo | S3Repo;

export interface PgBackRestSettings {
  /** Stanza name (default c2). */
  stanza?: string;
  repo: PgBackRestRepo;
  /** aes-256-cbc with the passphrase from the secrets include file (default true). */
  cipher?: boolean;
  /** zst (default), lz4, gz, bz2, none. */
  compressType?: 'zst' | 'lz4' | 'gz' | 'bz2' | 'none';
  compressLevel?: number;
  /** Parallel processes for backup/restore (default 2). */
  processMax?: number;
  /** Asynchronous archiving with a local spool (default true). */
  archiveAsync?: boolean;
  spoolPath?: string;
  lockPath?: string;
  logPath?: string;
  /** Full backups kept (default 2); WAL needed by older ones expires with them. */
  retentionFull?: number;
  /** Differential backups kept (default 7). */
  retentionDiff?: number;
  /** The PostgreSQL cluster this host backs up. */
  pg: { path: string; port?: number; socketPath?: string; user?: string };
  /** Where this file and the secrets include folder live on the host (for the commands it renders). */
  configFile?: string;
  configIncludePath?: string;
}

export const PGBACKREST_DEFAULTS = {
  stanza: 'c2', compressType: 'zst', processMax: 2, archiveAsync: true, spoolPath: '/var/spool/pgbackrest',
  lockPath: '/tmp/pgbackrest', logPath: '/var/log/pgbackrest', retentionFull: 2, retentionDiff: 7,
  configFile: '/etc/pgbackrest/pgbackrest.conf', configIncludePath: '/etc/pgbackrest/conf.d',
  /** archive_timeout: a quiet C2 still ships its last commits within this many seconds (the RPO bound). */
  archiveTimeoutSeconds: 60,
} as const;

const STANZA = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

function assertValue(key: string, v: string | number | boolean): string {
  const text = typeof v === 'boolean' ? (v ? 'y' : 'n') : String(v);
  // One option per line: a newline in a value would inject options (e.g. a second repo).
  if (/[\r\n]/.test(text) || text === '') throw new Error(`pgbackrest ${key}: empty or multi-line value`);
  return text;
}

function repoLines(r: PgBackRestRepo): [string, string | number | boolean][] {
  const lines: [string, string | number | boolean][] = [['repo1-type', r.type], ['repo1-path', r.path]];
  if (r.type === 'sftp') {
    lines.push(['repo1-sftp-host', r.host], ['repo1-sftp-host-user', r.user], ['repo1-sftp-private-key-file', r.privateKeyFile],
      ['repo1-sftp-host-key-hash-type', r.hostKeyHashType]);
    if (r.port) lines.push(['repo1-sftp-host-port', r.port]);
    if (r.publicKeyFile) lines.push(['repo1-sftp-public-key-file', r.publicKeyFile]);
    if (r.hostFingerprint) lines.push(['repo1-sftp-host-fingerprint', r.hostFingerprint]);
  } else if (r.type === 's3') {
    lines.push(['repo1-s3-endpoint', r.endpoint], ['repo1-s3-bucket', r.bucket], ['repo1-s3-region', r.region], ['repo1-s3-uri-style', r.uriStyle ?? 'host']);
    if (r.port) lines.push(['repo1-storage-port', r.port]);
    if (r.verifyTls === false) lines.push(['repo1-storage-verify-tls', false]);
  }
  return lines;
}

function section(name: string, entries: [string, string | number | boolean][]): string[] {
  return [`[${name}]`, ...entries.map(([k, v]) => `${k}=${assertValue(k, v)}`)];
}

/** pgbackrest.conf, with no secret in it. Pure. */
export function renderPgBackRestConf(s: PgBackRestSettings): string {
  const d = PGBACKREST_DEFAULTS;
  const stanza = s.stanza ?? d.stanza;
  if (!STANZA.test(stanza)) throw new Error(`pgbackrest stanza "${stanza}": use letters, digits, _ . - (at most 64)`);
  if (!s.repo.path.startsWith('/')) throw new Error(`pgbackrest repo path "${s.repo.path}": must be absolute`);
  if (!s.pg.path.startsWith('/')) throw new Error(`pgbackrest pg1-path "${s.pg.path}": must be absolute (the data directory)`);
  const global: [string, string | number | boolean][] = [
    ...repoLines(s.repo),
    ['repo1-retention-full', s.retentionFull ?? d.retentionFull],
    ['repo1-retention-diff', s.retentionDiff ?? d.retentionDiff],
    ...(s.cipher ?? true ? [['repo1-cipher-type', 'aes-256-cbc'] as [string, string]] : []),
    ['compress-type', s.compressType ?? d.compressType],
    ...(s.compressLevel !== undefined ? [['compress-level', s.compressLevel] as [string, number]] : []),
    ['process-max', s.processMax ?? d.processMax],
    ['archive-async', s.archiveAsync ?? d.archiveAsync],
    ['spool-path', s.spoolPath ?? d.spoolPath],
    ['lock-path', s.lockPath ?? d.lockPath],
    ['log-path', s.logPath ?? d.logPath],
    ['log-level-console', 'warn'],
    ['log-level-file', 'info'],
    // A backup starts with an immediate checkpoint instead of waiting for the next spread one.
    ['start-fast', true],
  ];
  const pg: [string, string | number | boolean][] = [['pg1-path', s.pg.path]];
  if (s.pg.port) pg.push(['pg1-port', s.pg.port]);
  if (s.pg.socketPath) pg.push(['pg1-socket-path', s.pg.socketPath]);
  if (s.pg.user) pg.push(['pg1-user', s.pg.user]);
  return ['# Rendered by e4ops (lib/render/pgbackrest-conf.ts); edits are overwritten.',
    `# Secrets (repo1-cipher-pass, S3 keys) are in ${s.configIncludePath ?? d.configIncludePath}/*.conf, mode 0600, never here.`,
    ...section('global', global), '', ...section(stanza, pg)].join('\n') + '\n';
}

export interface PgBackRestSecrets { cipherPassphrase?: string; s3Key?: string; s3KeySecret?: string }

/** The secrets include file (conf.d/e4ops-secrets.conf, mode 0600, owner postgres). Pure; handle its text as a secret. */
export function renderPgBackRestSecretsConf(s: PgBackRestSecrets): string {
  const entries: [string, string][] = [];
  if (s.cipherPassphrase !== undefined) entries.push(['repo1-cipher-pass', s.cipherPassphrase]);
  if (s.s3Key !== undefined) entries.push(['repo1-s3-key', s.s3Key]);
  if (s.s3KeySecret !== undefined) entries.push(['repo1-s3-key-secret', s.s3KeySecret]);
  return section('global', entries).join('\n') + '\n';
}

/** The pgbackrest invocation prefix the PostgreSQL side uses (config file, include path, stanza). */
export function pgBackRestCommand(s: Pick<PgBackRestSettings, 'stanza' | 'configFile' | 'configIncludePath'>, pgbackrestBin = 'pgbackrest'): string {
  const d = PGBACKREST_DEFAULTS;
  for (const p of [s.configFile ?? d.configFile, s.configIncludePath ?? d.configIncludePath, pgbackrestBin]) {
    if (!/^[A-Za-z0-9_./-]+$/.test(p)) throw new Error(`pgbackrest path "${p}": use a path without spaces or quotes (it goes into archive_command)`);
  }
  return `${pgbackrestBin} --config=${s.configFile ?? d.configFile} --config-include-path=${s.configIncludePath ?? d.configIncludePath} --stanza=${s.stanza ?? d.stanza}`;
}

export interface PitrPostgresSettings extends Pick<PgBackRestSettings, 'stanza' | 'configFile' | 'configIncludePath'> {
  archiveTimeoutSeconds?: number;
  pgbackrestBin?: string;
}

/**
 * postgresql.conf parameters for continuous archiving: every finished WAL segment goes to the repository,
 * a quiet server switches segments after archive_timeout, and recovery fetches WAL back. archive_mode=on
 * (not always): a standby does not archive, so in a Patroni cluster only the leader does.
 */
export function pitrPostgresParameters(s: PitrPostgresSettings = {}): Record<string, string | number> {
  const cmd = pgBackRestCommand(s, s.pgbackrestBin);
  const timeout = s.archiveTimeoutSeconds ?? PGBACKREST_DEFAULTS.archiveTimeoutSeconds;
  if (!Number.isInteger(timeout) || timeout < 1) throw new Error(`archive_timeout ${timeout}: a whole number of seconds >= 1`);
  return {
    archive_mode: 'on',
    archive_command: `${cmd} archive-push %p`,
    archive_timeout: timeout,
    restore_command: `${cmd} archive-get %f "%p"`,
  };
}

/**
 * Patroni's side: archiving parameters for postgresql.parameters, restore_command for recovery_conf, and a
 * replica-creation method that restores from the repository before falling back to pg_basebackup.
 */
export function patroniPitrSections(s: PitrPostgresSettings = {}) {
  const { restore_command, ...parameters } = pitrPostgresParameters(s);
  return {
    parameters,
    recoveryConf: { restore_command },
    createReplicaMethods: ['pgbackrest', 'basebackup'],
    // no_params: pgBackRest reads its own config (Patroni's --scope/--datadir flags are not pgBackRest's).
    // --type=standby writes standby.signal; --delta reuses what is already in the data directory.
    pgbackrest: { command: `${pgBackRestCommand(s, s.pgbackrestBin)} --delta --type=standby restore`, keep_data: true, no_params: true },
  };
}

/** Stack settings (postgres.pitr) → renderer settings for a cluster whose data directory is pgPath. */
export function pgBackRestSettingsOf(p: PitrSettings, pg: PgBackRestSettings['pg']): PgBackRestSettings {
  const r = p.repo;
  const repo: PgBackRestRepo = r.type === 'sftp'
    ? { type: 'sftp', path: r.path, host: r.sftpHost!, port: r.sftpPort, user: r.sftpUser!, privateKeyFile: r.sftpPrivateKeyFile!, hostKeyHashType: r.sftpHostKeyHashType, hostFingerprint: r.sftpHostFingerprint }
    : r.type === 's3'
      ? { type: 's3', path: r.path, endpoint: r.s3Endpoint!, bucket: r.s3Bucket!, region: r.s3Region!, uriStyle: r.s3UriStyle, verifyTls: r.verifyTls }
      : { type: 'posix', path: r.path };
  return {
    stanza: p.stanza, repo, cipher: p.cipher, compressType: p.compressType, processMax: p.processMax, archiveAsync: p.archiveAsync,
    spoolPath: p.spoolPath, retentionFull: p.retentionFull, retentionDiff: p.retentionDiff, pg,
  };
}
