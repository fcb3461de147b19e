import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { asUser, chownTo, startDaemon, type Daemon } from './daemon.ts';
import { freeLoopbackPort } from '../ports.ts';
import { runDocker } from './docker-engine.ts';
import { e4opsCacheDir } from '../cache-dir.ts';
import { REPO_ROOT } from '../repo-root.ts';
import { renderC2Config, type C2ConfigSettings, type C2CryptoMode, type C2DbSecureConnection } from '../render/c2-config.ts';
import { createCertificateAuthority, issueLeafCertificate, type CertificateAuthority } from '../c2/tls-material.ts';
import { startThrowawayPostgres, type ThrowawayPostgres } from './postgres.ts';
import { startThrowawayMosquitto, type ThrowawayMosquitto } from './mosquitto.ts';

// Launches the real C2 binary (built by scripts/build-c2.sh). C2 reads <dir of argv[0]>/../configs/config.yaml,
// so each instance gets its own directory: <dir>/bin/c2 (a link or copy of the cached binary) and
// <dir>/configs/{config.yaml, certificates}. C2 writes its log to /var/log/e4_c2.log when it can open that
// file, else to stdout; as root the launcher therefore runs C2 as an unprivileged user (default `nobody`) so
// the log lands in <dir>/c2.log, captured here, and never in the machine's /var/log.

// REPO_ROOT lives in lib/repo-root.ts; re-exported for the importers that still take it from here.
export { REPO_ROOT };
const C2_BUILD_MODULE = path.join(REPO_ROOT, 'test', 'c2-build', 'go.mod');

/** The C2 version pinned by test/c2-build/go.mod. */
export function pinnedC2Version(): string {
  const text = fs.readFileSync(C2_BUILD_MODULE, 'utf8');
  const m = text.match(/github\.com\/teserakt-io\/c2\s+(v\S+)/);
  if (!m) throw new Error(`${C2_BUILD_MODULE} has no github.com/teserakt-io/c2 requirement`);
  return m[1];
}

/** Directory holding c2 and c2cli: $E4OPS_C2_BIN_DIR, else the build-c2.sh cache for the pinned version. */
export function c2BinaryDir(): string {
  if (process.env.E4OPS_C2_BIN_DIR) return process.env.E4OPS_C2_BIN_DIR;
  return e4opsCacheDir('c2', pinnedC2Version());
}

/** True when the C2 binary is built (tests skip with a clear reason otherwise). */
export function c2BinaryAvailable(): boolean {
  return fs.existsSync(path.join(c2BinaryDir(), 'c2'));
}

export interface StartC2Options {
  /** Path of the c2 binary (default: c2BinaryDir()/c2). */
  binary?: string;
  /**
   * Run C2 from this container image instead (stacks/docker/c2.Dockerfile), with host networking and the
   * same configs folder mounted at /opt/e4/configs; `docker` must reach an engine (dockerHost or DOCKER_HOST).
   */
  image?: string;
  dockerHost?: string;
  /** Scratch directory (created if missing; default a new temp dir, removed by stop()). */
  dir?: string;
  /** Address C2 binds its gRPC and HTTPS ports to (default 127.0.0.1). */
  host?: string;
  grpcPort?: number;
  httpPort?: number;
  cryptoMode?: C2CryptoMode;
  /** Database: C2 dials host:5432 (no port setting exists). */
  db: {
    host: string;
    database: string;
    username: string;
    password?: string;
    schema?: string;
    secureConnection?: C2DbSecureConnection;
  };
  /** Passphrase sealing the keys at rest (>= 16 bytes); passed as E4C2_DB_ENCRYPTION_PASSPHRASE, not in the file. */
  passphrase: string;
  /** Broker as mqtt://host:port or tcp://host:port (C2 has no TLS to the broker). */
  mqttBroker: string;
  mqttClientId?: string;
  mqttUsername?: string;
  mqttPassword?: string;
  logLevel?: C2ConfigSettings['logLevel'];
  /** When running as root, the user C2 runs as (default 'nobody'); null keeps root (C2 then logs to /var/log/e4_c2.log). */
  runAsUser?: string | null;
  /** Existing CA to sign C2's certificates with (default: a new one in <dir>/tls). */
  ca?: CertificateAuthority;
  /** Extra environment for C2 (E4C2_* overrides). */
  env?: Record<string, string>;
  startTimeoutMs?: number;
  /** Start attempts when C2 exits by itself during start-up (default 3), like a restart policy. */
  startAttempts?: number;
}

export interface RunningC2 {
  dir: string;
  configFile: string;
  /** Log of the process (C2's JSON log lines plus the banner). */
  logFile: string;
  host: string;
  grpcPort: number;
  httpPort: number;
  /** https://host:httpPort */
  baseUrl: string;
  /** CA that signed C2's certificates: give certPem to API clients. */
  ca: CertificateAuthority;
  version: string;
  daemon: Daemon;
  /** Container name when started from an image. */
  container?: string;
  /** Kill C2 at once, synchronously (signal handlers, where nothing async runs): process or container. */
  killSync(): void;
  /** Parsed JSON log lines (banner and non-JSON lines skipped). */
  logLines(): Record<string, unknown>[];
  stop(): Promise<void>;
}

function toPahoBroker(url: string): string {
  const u = new URL(url);
  if (u.protocol !== 'mqtt:' && u.protocol !== 'tcp:') {
    throw new Error(`C2 mqtt broker "${url}": only mqtt:// or tcp:// works (C2 has no TLS to the broker)`);
  }
  return `tcp://${u.hostname}:${u.port || '1883'}`;
}

async function httpsStatus(url: string, ca: string): Promise<{ status: number; body: string } | null> {
  return new Promise((resolve) => {
    const req = https.get(url, { ca, timeout: 2000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(null));
  });
}

/**
 * Wait until C2 serves its API: GET /e4/health-check answers 200, or, on C2 builds without that route
 * (404), GET /e4/clients/count answers 200 (which also proves gateway → gRPC → database works).
 */
export async function waitForC2Ready(baseUrl: string, caPem: string, timeoutMs: number, exited?: Promise<unknown>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let gone = false;
  exited?.then(() => { gone = true; });
  let last = 'no answer';
  while (Date.now() < deadline && !gone) {
    const h = await httpsStatus(`${baseUrl}/e4/health-check`, caPem);
    if (h?.status === 200) return;
    if (h?.status === 404) {
      const c = await httpsStatus(`${baseUrl}/e4/clients/count`, caPem);
      if (c?.status === 200) return;
      last = c ? `clients/count ${c.status} ${c.body.slice(0, 200)}` : 'clients/count: no answer';
    } else if (h) last = `health-check ${h.status} ${h.body.slice(0, 200)}`;
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error(gone ? 'C2 exited during start-up' : `C2 at ${baseUrl} not ready after ${timeoutMs} ms (${last})`);
}

/** Where one C2 instance lives and listens. */
interface C2Layout {
  dir: string;
  /** The launcher made `dir` and removes it on stop. */
  ownDir: boolean;
  binDir: string;
  configsDir: string;
  logFile: string;
  host: string;
  grpcPort: number;
  httpPort: number;
  baseUrl: string;
}

/** How to (re)start that instance: as a process or as a container. */
interface C2Launch {
  start(): Daemon;
  /** Remove the container of a killed run (no-op for a process). */
  removeContainer(): void;
  container?: string;
}

/** Start the real C2 against an existing PostgreSQL (on db.host:5432) and MQTT broker. */
export async function startC2(opts: StartC2Options): Promise<RunningC2> {
  const binary = checkStartC2Options(opts);
  const layout = await prepareC2Directory(opts);
  const ca = issueC2Certificates(opts, layout);
  const configFile = writeC2Config(opts, layout);
  const launch = planC2Launch(opts, layout, binary);
  const daemon = await launchUntilReady(opts, layout, ca, configFile, launch);
  return runningC2(opts, layout, ca, configFile, launch, daemon);
}

/** Refuse what C2 would refuse, before anything is written. Returns the binary to run. */
function checkStartC2Options(opts: StartC2Options): string {
  const binary = opts.binary ?? path.join(c2BinaryDir(), 'c2');
  if (opts.image && opts.binary) throw new Error('startC2: give binary or image, not both');
  if (!opts.image && !fs.existsSync(binary)) {
    throw new Error(`C2 binary not found at ${binary}: run scripts/build-c2.sh (or set E4OPS_C2_BIN_DIR)`);
  }
  if (Buffer.byteLength(opts.passphrase) < 16) throw new Error('C2 passphrase is shorter than 16 bytes: C2 refuses to start; use a longer one');
  return binary;
}

async function prepareC2Directory(opts: StartC2Options): Promise<C2Layout> {
  const host = opts.host ?? '127.0.0.1';
  const grpcPort = opts.grpcPort ?? (await freeLoopbackPort(host));
  const httpPort = opts.httpPort ?? (await freeLoopbackPort(host));
  const dir = opts.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-c2-'));
  const layout: C2Layout = {
    dir, ownDir: !opts.dir, binDir: path.join(dir, 'bin'), configsDir: path.join(dir, 'configs'), logFile: path.join(dir, 'c2.log'),
    host, grpcPort, httpPort, baseUrl: c2BaseUrl(host, httpPort),
  };
  fs.mkdirSync(layout.binDir, { recursive: true });
  fs.mkdirSync(layout.configsDir, { recursive: true });
  return layout;
}

/** C2's gRPC and HTTPS certificates in configs/, signed by the given CA or a new one in <dir>/tls. */
function issueC2Certificates(opts: StartC2Options, layout: C2Layout): CertificateAuthority {
  const ca = opts.ca ?? createCertificateAuthority({ dir: path.join(layout.dir, 'tls'), commonName: 'e4ops C2 CA' });
  const sans = { dnsNames: ['localhost'], ipAddresses: [...new Set(['127.0.0.1', layout.host].filter((h) => net.isIP(h)))] };
  issueLeafCertificate(ca, { dir: layout.configsDir, name: 'c2-grpc', commonName: 'c2 grpc', ...sans });
  issueLeafCertificate(ca, { dir: layout.configsDir, name: 'c2-http', commonName: 'c2 http', ...sans });
  return ca;
}

function c2ConfigSettings(opts: StartC2Options, layout: C2Layout): C2ConfigSettings {
  const { host, grpcPort, httpPort } = layout;
  return {
    cryptoMode: opts.cryptoMode ?? 'symkey',
    grpcHostPort: `${host}:${grpcPort}`,
    grpcCert: 'c2-grpc-cert.pem',
    grpcKey: 'c2-grpc-key.pem',
    httpHostPort: `${host}:${httpPort}`,
    httpGrpcHostPort: `${host}:${grpcPort}`,
    httpCert: 'c2-http-cert.pem',
    httpKey: 'c2-http-key.pem',
    mqtt: {
      broker: toPahoBroker(opts.mqttBroker),
      clientId: opts.mqttClientId ?? `e4c2-${path.basename(layout.dir)}`,
      ...(opts.mqttUsername !== undefined ? { username: opts.mqttUsername } : {}),
      ...(opts.mqttPassword !== undefined ? { password: opts.mqttPassword } : {}),
    },
    db: {
      type: 'postgres',
      host: opts.db.host,
      database: opts.db.database,
      username: opts.db.username,
      // C2 builds "password=%s" into its DSN: an empty value would swallow the next setting.
      password: opts.db.password ?? 'unused-with-trust-auth',
      // This C2 refuses to start without db-schema ("no schema supplied").
      schema: opts.db.schema ?? 'public',
      secureConnection: opts.db.secureConnection ?? 'insecure',
    },
    logLevel: opts.logLevel ?? 'debug',
  };
}

function writeC2Config(opts: StartC2Options, layout: C2Layout): string {
  const configFile = path.join(layout.configsDir, 'config.yaml');
  fs.writeFileSync(configFile, renderC2Config(c2ConfigSettings(opts, layout)));
  return configFile;
}

/**
 * Put the binary in place, hand the directory to the user C2 runs as, and build the start function.
 * The passphrase travels in the environment, never on a command line.
 */
function planC2Launch(opts: StartC2Options, layout: C2Layout, binary: string): C2Launch {
  const { dir, configsDir, logFile } = layout;
  // C2 locates configs/ from argv[0]: give it its own bin/ path (hard link when possible, else a copy).
  const localBinary = path.join(layout.binDir, 'c2');
  if (!opts.image) {
    fs.rmSync(localBinary, { force: true });
    try { fs.linkSync(binary, localBinary); } catch { fs.copyFileSync(binary, localBinary); }
    fs.chmodSync(localBinary, 0o755);
  }
  const isRoot = process.getuid?.() === 0;
  const runAs = opts.runAsUser === undefined ? (isRoot ? 'nobody' : null) : opts.runAsUser;
  if (runAs) {
    chownTo(dir, runAs);
    fs.chmodSync(dir, 0o755);
  }
  fs.writeFileSync(logFile, '');
  const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, E4C2_DB_ENCRYPTION_PASSPHRASE: opts.passphrase, ...opts.env };
  if (!opts.image) {
    return { start: () => startDaemon(localBinary, [], logFile, { cwd: dir, env, ...(runAs ? asUser(runAs) : {}) }), removeContainer: () => undefined };
  }
  const container = `e4ops-c2-${path.basename(dir).replace(/^e4ops-c2-/, '').replace(/[^\w.-]/g, '')}`;
  const dockerHost = opts.dockerHost ?? process.env.DOCKER_HOST;
  const removeContainer = () => {
    try { runDocker(dockerHost, ['rm', '-f', container], { timeoutMs: 30_000 }); } catch { /* none by that name */ }
  };
  // From an image: `docker run` in the foreground (its output is C2's log; SIGTERM reaches C2 through it).
  // The container runs as the user the binary would run as, so it reads the same configs folder; secrets go
  // by variable name only (-e NAME), never on the command line.
  const u = runAs ? asUser(runAs) : {};
  const ids = { uid: u.uid ?? process.getuid?.() ?? 0, gid: u.gid ?? process.getgid?.() ?? 0 };
  const start = () => {
    removeContainer(); // a leftover of a killed run with the same name
    return startDaemon('docker', ['run', '--rm', '--name', container, '--network', 'host', '--user', `${ids.uid}:${ids.gid}`,
      ...Object.keys(env).filter((k) => k.startsWith('E4C2_')).flatMap((k) => ['-e', k]),
      '-v', `${configsDir}:/opt/e4/configs`, opts.image!], logFile, { env: { ...process.env, ...env, HOME: process.env.HOME ?? dir, ...(dockerHost ? { DOCKER_HOST: dockerHost } : {}) } });
  };
  return { start, removeContainer, container };
}

/**
 * C2 is fail-fast (e.g. an MQTT CONNACK slower than 1 s ends it) and deployments rely on a restart policy;
 * the launcher does the same: a C2 that exits by itself during start-up is started again.
 */
async function launchUntilReady(opts: StartC2Options, layout: C2Layout, ca: CertificateAuthority, configFile: string, launch: C2Launch): Promise<Daemon> {
  const attempts = Math.max(1, opts.startAttempts ?? 3);
  for (let attempt = 1; ; attempt++) {
    const daemon = launch.start();
    try {
      await waitForC2Ready(layout.baseUrl, ca.certPem, opts.startTimeoutMs ?? 30_000, daemon.exited);
      return daemon;
    } catch (err) {
      const exitedByItself = daemon.child.exitCode !== null || daemon.child.signalCode !== null;
      await daemon.stop('SIGKILL');
      launch.removeContainer();
      if (!exitedByItself || attempt >= attempts) {
        const tail = daemon.tail(40);
        const keep = !layout.ownDir || process.env.E4OPS_KEEP_C2_DIR === '1';
        if (!keep) fs.rmSync(layout.dir, { recursive: true, force: true });
        throw new Error(`C2 did not start after ${attempt} attempt(s) (${(err as Error).message}); ${keep ? `config ${configFile}` : 'scratch dir removed (E4OPS_KEEP_C2_DIR=1 keeps it)'}; log:\n${tail}`);
      }
      // A port we picked can be taken between the pick and C2's bind (other servers start too): pick again.
      if (/address already in use/.test(daemon.tail(40)) && await repickPorts(opts, layout)) writeC2Config(opts, layout);
      fs.appendFileSync(layout.logFile, `\n[e4ops] C2 exited during start-up (attempt ${attempt} of ${attempts}); starting it again\n`);
      await new Promise((r) => setTimeout(r, 500 * attempt));
    }
  }
}

const c2BaseUrl = (host: string, httpPort: number) => `https://${host.includes(':') ? `[${host}]` : host}:${httpPort}`;

/** New free ports for the ones the launcher chose (never for ports the caller asked for). */
async function repickPorts(opts: StartC2Options, layout: C2Layout): Promise<boolean> {
  if (opts.grpcPort !== undefined && opts.httpPort !== undefined) return false;
  if (opts.grpcPort === undefined) layout.grpcPort = await freeLoopbackPort(layout.host);
  if (opts.httpPort === undefined) layout.httpPort = await freeLoopbackPort(layout.host);
  layout.baseUrl = c2BaseUrl(layout.host, layout.httpPort);
  return true;
}

function runningC2(opts: StartC2Options, layout: C2Layout, ca: CertificateAuthority, configFile: string, launch: C2Launch, daemon: Daemon): RunningC2 {
  const { dir, logFile, host, grpcPort, httpPort, baseUrl } = layout;
  let stopped = false;
  return {
    dir, configFile, logFile, host, grpcPort, httpPort, baseUrl, ca, daemon,
    ...(launch.container ? { container: launch.container } : {}),
    version: opts.image ? `image ${opts.image}` : opts.binary ? 'custom' : pinnedC2Version(),
    killSync() {
      try { daemon.child.kill('SIGKILL'); } catch { /* gone */ }
      launch.removeContainer();
    },
    logLines() {
      return fs.readFileSync(logFile, 'utf8').split('\n').flatMap((l) => {
        if (!l.startsWith('{')) return [];
        try { return [JSON.parse(l) as Record<string, unknown>]; } catch { return []; }
      });
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await daemon.stop('SIGTERM', 10_000);
      launch.removeContainer();
      if (layout.ownDir) fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Run c2cli (built next to c2) against a running C2's gRPC port, trusting its gRPC certificate.
 * Returns what it printed (this c2cli prints its results on stderr, so stdout and stderr together);
 * throws with that output on a non-zero exit.
 */
export function runC2Cli(c2: RunningC2, args: string[], opts: { binary?: string; timeoutMs?: number } = {}): string {
  const binary = opts.binary ?? path.join(c2BinaryDir(), 'c2cli');
  if (!fs.existsSync(binary)) throw new Error(`c2cli not found at ${binary}: run scripts/build-c2.sh`);
  const cert = path.join(path.dirname(c2.configFile), 'c2-grpc-cert.pem');
  const r = spawnSync(binary, ['--endpoint', `${c2.host}:${c2.grpcPort}`, '--cert', cert, ...args], { encoding: 'utf8', timeout: opts.timeoutMs ?? 30_000 });
  if (r.status !== 0) throw new Error(`c2cli ${args.join(' ')} failed (exit ${r.status}): ${r.stderr || r.stdout}`);
  return r.stdout + r.stderr;
}

async function portFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, host, () => srv.close(() => resolve(true)));
  });
}

/** A random 127.0.0.N (N in 2..254) where nothing listens on port 5432 yet. */
export async function pickLoopbackHostFor5432(): Promise<string> {
  for (let i = 0; i < 50; i++) {
    const host = `127.0.0.${2 + Math.floor(Math.random() * 253)}`;
    if (await portFree(host, 5432)) return host;
  }
  throw new Error('no free 127.0.0.N:5432 found in 50 tries: is a PostgreSQL listening on 0.0.0.0:5432 (listen_addresses = *)? C2 can only dial port 5432');
}

export interface C2TestStack {
  postgres: ThrowawayPostgres;
  mosquitto: ThrowawayMosquitto;
  c2: RunningC2;
  /** The database C2 uses (name on postgres). */
  database: string;
  passphrase: string;
  stop(): Promise<void>;
}

/**
 * PostgreSQL on a random 127.0.0.N:5432 (C2 cannot use another port, and the machine's own PostgreSQL holds
 * 127.0.0.1:5432), a Mosquitto on a random loopback port, and C2 on both. For tests and drills.
 */
export async function startC2TestStack(opts: { passphrase?: string; database?: string; c2?: Partial<StartC2Options> } = {}): Promise<C2TestStack> {
  const passphrase = opts.passphrase ?? 'e4ops-test-passphrase-0123456789';
  const database = opts.database ?? 'e4c2';
  let postgres: ThrowawayPostgres | undefined;
  for (let attempt = 0; !postgres; attempt++) {
    const host = await pickLoopbackHostFor5432();
    try {
      postgres = await startThrowawayPostgres({ host, port: 5432 });
    } catch (err) {
      if (attempt >= 3) throw err; // another process took that address between check and start
    }
  }
  let mosquitto: ThrowawayMosquitto | undefined;
  try {
    await postgres.createDatabase(database);
    mosquitto = await startThrowawayMosquitto();
    const c2 = await startC2({
      db: { host: postgres.host, database, username: 'postgres' },
      passphrase,
      mqttBroker: mosquitto.url,
      ...opts.c2,
    });
    const pg = postgres;
    const mq = mosquitto;
    return {
      postgres: pg, mosquitto: mq, c2, database, passphrase,
      async stop() {
        await c2.stop();
        await mq.stop();
        await pg.stop();
      },
    };
  } catch (err) {
    await mosquitto?.stop();
    await postgres.stop();
    throw err;
  }
}
