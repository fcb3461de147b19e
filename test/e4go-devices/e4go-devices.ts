// Real E4 devices for tests: the Go program in this folder (e4go v1.1.0 + paho.mqtt.golang) hosts many
// devices in one process. Built once per source hash into the e4ops cache (like test/go-vectors).
//
//   const fleet = await startE4goDevices(mosquitto.url);
//   await fleet.add({ name: 'dev-1', identityKey, topics: ['t1'], cleanSession: false });
//   await fleet.offline('dev-1'); ...; await fleet.online('dev-1');
//   await fleet.publish('dev-1', 't1', 'hello');            // protected by e4go with its topic key
//   const r = await fleet.report('dev-1');                    // keys held, commands, messages read
//   await fleet.stop();
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createInterface } from 'node:readline';
import { cacheDir as goCacheRoot, findGo } from '../go-vectors/go-vectors.ts';

const MODULE_DIR = dirname(fileURLToPath(import.meta.url));
const execFileP = promisify(execFile);

export { findGo };

export interface E4goDeviceSpec {
  name: string;
  /** 32-byte symmetric identity key (the one C2 holds for this client). */
  identityKey: Uint8Array;
  /** MQTT client id; default the name (the inventory's `mqttClientId`). */
  clientId?: string;
  /** true (default): clean session, like e4go's cmd/e4client; false: the broker queues while offline. */
  cleanSession?: boolean;
  /** Subscription QoS for the command topic and the data topics; default 1. */
  qos?: 0 | 1 | 2;
  /** Data topics it subscribes to (and reports keys for). */
  topics: string[];
  /** Create it without connecting. */
  offline?: boolean;
}

export interface E4goMessage { topic: string; payload?: string; error?: string }

export interface E4goDeviceReport {
  online: boolean;
  /** topic → hex key currently held (only the spec's topics). */
  topicKeys: Record<string, string>;
  /** hex of the identity key it holds now (SetIDKey commands change it). */
  identityKey: string;
  commandsOk: number;
  commandsFailed: number;
  commandErrors: string[] | null;
  /** Messages seen on data topics: decrypted payload, or e4go's error. */
  messages: E4goMessage[];
}

export interface E4goDevices {
  add(spec: E4goDeviceSpec): Promise<{ commandTopic: string }>;
  offline(name: string): Promise<void>;
  online(name: string): Promise<void>;
  publish(name: string, topic: string, payload: string): Promise<void>;
  report(name: string): Promise<E4goDeviceReport>;
  /** Poll report(name) until `until` holds; throws with the last report after timeoutMs. */
  waitFor(name: string, until: (r: E4goDeviceReport) => boolean, timeoutMs?: number): Promise<E4goDeviceReport>;
  clear(name: string): Promise<void>;
  remove(name: string): Promise<void>;
  stop(): Promise<void>;
}

function binDir(): string {
  return process.env.E4OPS_E4GO_DEVICES_CACHE ?? join(dirname(goCacheRoot()), 'e4go-devices');
}

/** Build (or reuse) the device program; returns its path. */
export async function buildE4goDevices(go = findGo()): Promise<string> {
  if (!go) throw new Error('no Go toolchain found ($GO, PATH, /usr/local/go/bin/go): needed to build test/e4go-devices');
  const h = createHash('sha256');
  for (const f of ['go.mod', 'go.sum', 'main.go']) h.update(readFileSync(join(MODULE_DIR, f)));
  const bin = join(binDir(), `e4go-devices-${h.digest('hex').slice(0, 16)}`);
  if (existsSync(bin)) return bin;
  mkdirSync(binDir(), { recursive: true });
  const tmp = `${bin}.tmp${process.pid}`;
  try {
    await execFileP(go, ['build', '-mod=readonly', '-o', tmp, '.'], {
      cwd: MODULE_DIR, maxBuffer: 16 << 20,
      env: {
        ...process.env, CGO_ENABLED: '0', GOFLAGS: '-buildvcs=false',
        ...(process.env.HOME ? {} : { GOCACHE: join(binDir(), 'gocache'), GOPATH: join(binDir(), 'gopath') }),
      },
    });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`building test/e4go-devices failed (needs the Go module proxy for e4go v1.1.0 and paho.mqtt.golang): ${err.stderr || err.message}`);
  }
  renameSync(tmp, bin);
  return bin;
}

/** Start the device host process against a broker (mqtt://host:port or tcp://host:port). */
export async function startE4goDevices(brokerUrl: string, opts: { binary?: string } = {}): Promise<E4goDevices> {
  const bin = opts.binary ?? (await buildE4goDevices());
  const broker = brokerUrl.replace(/^mqtt:\/\//, 'tcp://');
  const child: ChildProcessWithoutNullStreams = spawn(bin, [], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr = (stderr + d).slice(-4000); });
  const pending = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void }>();
  let nextId = 1;
  createInterface({ input: child.stdout }).on('line', (line) => {
    const msg = JSON.parse(line);
    const p = pending.get(msg.id);
    if (!p) return;
    pending.delete(msg.id);
    if (msg.ok) p.resolve(msg);
    else p.reject(new Error(`e4go device: ${msg.error}`));
  });
  const exited = new Promise<void>((resolve) => child.on('exit', () => {
    for (const p of pending.values()) p.reject(new Error(`e4go-devices exited: ${stderr}`));
    pending.clear();
    resolve();
  }));
  const call = (req: Record<string, unknown>): Promise<any> => new Promise((resolve, reject) => {
    const id = nextId++;
    pending.set(id, { resolve, reject });
    child.stdin.write(`${JSON.stringify({ ...req, id })}\n`);
  });
  const devices: E4goDevices = {
    async add(spec) {
      const r = await call({
        op: 'add', name: spec.name, key: Buffer.from(spec.identityKey).toString('hex'), broker,
        clientId: spec.clientId ?? spec.name, clean: spec.cleanSession ?? true, qos: spec.qos ?? 1,
        topics: spec.topics, offline: spec.offline ?? false,
      });
      return { commandTopic: r.commandTopic };
    },
    async offline(name) { await call({ op: 'offline', name }); },
    async online(name) { await call({ op: 'online', name }); },
    async publish(name, topic, payload) { await call({ op: 'publish', name, topic, payload }); },
    async report(name) {
      const { id: _id, ok: _ok, ...r } = await call({ op: 'report', name });
      return r as E4goDeviceReport;
    },
    async waitFor(name, until, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const r = await devices.report(name);
        if (until(r)) return r;
        if (Date.now() > deadline) throw new Error(`device ${name} never reached the awaited state; last report: ${JSON.stringify(r)}`);
        await new Promise((res) => setTimeout(res, 100));
      }
    },
    async clear(name) { await call({ op: 'clear', name }); },
    async remove(name) { await call({ op: 'remove', name }); },
    async stop() {
      child.stdin.end();
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
  return devices;
}
