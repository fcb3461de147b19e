// The test realizer: what the Pulumi program declared under mocks (test/stacks/pulumi-mocks.ts with
// `realize`), created for real through the Docker Engine API on a private engine. Containers get the
// recorded names, images, env, commands, users, uploads (owned by root with the declared mode, as the
// Docker provider writes them), volumes, published ports, health checks, restart policies and
// networks (internal ones stay internal). Images the program builds (docker.Image) are built from
// their Dockerfile and args. Not part of the product: `pulumi up` with the Docker provider does this
// in a deployment; here no provider plugin can be had.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import YAML from 'yaml';
import { dockerEngineRequest, runDocker, tarArchive } from '../../lib/servers/docker-engine.ts';
import { buildImage } from '../../lib/servers/c2-image.ts';
import { validateStackSettings, type StackSettings } from '../../lib/settings/stack-settings.ts';
import type { StackImages } from '../../lib/servers/c2-image.ts';
import { installStackMocks, quiesce, reveal, settle, type RecordedResource } from '../stacks/pulumi-mocks.ts';

/** Container inputs the realizer turns into Engine API fields; any other input fails the realization. */
const HANDLED = new Set(['name', 'image', 'hostname', 'restart', 'command', 'entrypoints', 'envs', 'user', 'uploads', 'volumes',
  'networksAdvanced', 'ports', 'healthcheck', 'labels', 'logOpts', 'memory', 'shmSize', 'workingDir', 'dnsOpts', 'mustRun', 'wait', 'waitTimeout', 'start', 'attach', 'logs']);

export interface RealizedStack {
  host: string;
  /** Containers created and started, in creation order. */
  containers: string[];
  /** Containers declared but not realized, with the reason. */
  skipped: Record<string, string>;
  outputs: Record<string, unknown>;
  settings: StackSettings;
  inspect(name: string): Promise<ContainerState>;
  /** Address of a container on a network (default: the first one it is on). */
  ip(name: string, network?: string): Promise<string>;
  waitHealthy(names: string[], timeoutMs?: number): Promise<void>;
  exec(name: string, cmd: string[], opts?: { user?: string }): { code: number; stdout: string; stderr: string };
  logs(name: string, tail?: number): string;
  kill(name: string, signal?: string): Promise<void>;
  /**
   * kill -9 of the container's first process from the host; returns when (ms). With `stayDown` the restart
   * policy is switched off first (a lost member, not a crash Docker restarts at once); revive() undoes it.
   */
  crash(name: string, opts?: { stayDown?: boolean }): Promise<number>;
  /** Restore the declared restart policy of a container crash({ stayDown }) left down, and start it. */
  revive(name: string): Promise<void>;
  stop(name: string, timeoutSeconds?: number): Promise<void>;
  start(name: string): Promise<void>;
  restart(name: string): Promise<void>;
  destroy(): Promise<void>;
}

export interface ContainerState {
  running: boolean;
  health?: string;
  restartCount: number;
  networks: Record<string, string>;
  exitCode: number;
  /** Host pid of the container's first process (0 when not running). */
  pid: number;
}

const dur = (v?: string): number | undefined => {
  if (!v) return undefined;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(v);
  if (!m) throw new Error(`duration "${v}": expected like 10s`);
  return Math.round(Number(m[1]) * { ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 }[m[2] as 'ms']);
};

/** The body of POST /containers/create for one recorded docker.Container. */
export function containerCreateBody(inputs: Record<string, any>): { body: Record<string, unknown>; extraNetworks: Array<{ name: string; aliases: string[] }> } {
  const unknown = Object.keys(inputs).filter((k) => !HANDLED.has(k) && !k.startsWith('__'));
  if (unknown.length) throw new Error(`container ${inputs.name}: the realizer does not handle input(s) ${unknown.join(', ')}`);
  const nets: Array<{ name: string; aliases?: string[] }> = inputs.networksAdvanced ?? [];
  const ports: Array<{ internal: number; external?: number; ip?: string; protocol?: string }> = inputs.ports ?? [];
  const volumes: Array<{ volumeName?: string; hostPath?: string; containerPath: string; readOnly?: boolean }> = inputs.volumes ?? [];
  const hc = inputs.healthcheck;
  const body: Record<string, unknown> = {
    Image: inputs.image,
    Hostname: inputs.hostname,
    ...(inputs.command ? { Cmd: inputs.command } : {}),
    ...(inputs.entrypoints ? { Entrypoint: inputs.entrypoints } : {}),
    Env: inputs.envs ?? [],
    ...(inputs.user ? { User: inputs.user } : {}),
    ...(inputs.workingDir ? { WorkingDir: inputs.workingDir } : {}),
    Labels: Object.fromEntries((inputs.labels ?? []).map((l: { label: string; value: string }) => [l.label, l.value])),
    ExposedPorts: Object.fromEntries(ports.map((p) => [`${p.internal}/${p.protocol ?? 'tcp'}`, {}])),
    ...(hc ? { Healthcheck: { Test: hc.tests, Interval: dur(hc.interval), Timeout: dur(hc.timeout), Retries: hc.retries, StartPeriod: dur(hc.startPeriod) } } : {}),
    HostConfig: {
      RestartPolicy: { Name: inputs.restart ?? 'no' },
      Binds: volumes.map((v) => `${v.volumeName ?? v.hostPath}:${v.containerPath}${v.readOnly ? ':ro' : ''}`),
      PortBindings: Object.fromEntries(ports.map((p) => [`${p.internal}/${p.protocol ?? 'tcp'}`, [{ HostIp: p.ip ?? '', HostPort: String(p.external ?? '') }]])),
      ...(inputs.memory ? { Memory: inputs.memory * 1024 * 1024 } : {}),
      ...(inputs.shmSize ? { ShmSize: inputs.shmSize * 1024 * 1024 } : {}),
      ...(inputs.dnsOpts ? { DnsOptions: inputs.dnsOpts } : {}),
      ...(inputs.logOpts ? { LogConfig: { Type: 'json-file', Config: inputs.logOpts } } : {}),
      NetworkMode: nets[0]?.name ?? 'none',
    },
    NetworkingConfig: nets[0] ? { EndpointsConfig: { [nets[0].name]: { Aliases: nets[0].aliases ?? [] } } } : undefined,
  };
  return { body, extraNetworks: nets.slice(1).map((n) => ({ name: n.name, aliases: n.aliases ?? [] })) };
}

/** The files of a container's uploads as the Docker provider writes them (root-owned, declared mode). */
export function uploadFiles(inputs: Record<string, any>): Array<{ path: string; content: Buffer; mode: number }> {
  return (inputs.uploads ?? []).map((u: { file: string; content?: string; contentBase64?: string; permissions?: string; executable?: boolean }) => ({
    path: u.file,
    content: u.contentBase64 !== undefined ? Buffer.from(u.contentBase64, 'base64') : Buffer.from(u.content ?? '', 'utf8'),
    mode: u.permissions ? parseInt(u.permissions, 8) : u.executable ? 0o744 : 0o644,
  }));
}

export interface RealizeOptions {
  /** Container name → why it is not realized (no Debian package ...). */
  skip?: Record<string, string>;
  log?: (line: string) => void;
}

/** Create the recorded networks, volumes, built images and containers on the engine, and start the containers. */
export async function realizeRecordedStack(host: string, resources: RecordedResource[], settings: StackSettings, outputs: Record<string, unknown>, opts: RealizeOptions = {}): Promise<RealizedStack> {
  const log = opts.log ?? (() => {});
  const api = <T = any>(method: string, p: string, body?: unknown, o?: { tar?: Buffer }) => dockerEngineRequest<T>(host, method, p, body, o);
  const created = { networks: new Set<string>(), volumes: new Set<string>(), containers: [] as string[] };
  const restartPolicies = new Map<string, string>();
  const skipped: Record<string, string> = { ...opts.skip };
  const destroy = async () => {
    for (const c of [...created.containers].reverse()) await api('DELETE', `/containers/${c}?force=true&v=true`).catch(() => {});
    for (const v of created.volumes) await api('DELETE', `/volumes/${v}?force=true`).catch(() => {});
    for (const n of created.networks) await api('DELETE', `/networks/${n}`).catch(() => {});
  };
  // Images the program builds, when a realized container runs them.
  const wanted = new Set(resources.filter((r) => r.type === 'docker:index/container:Container' && !skipped[reveal<string>(r.inputs.name)]).map((r) => reveal<string>(r.inputs.image)));
  try {
    for (const r of resources) {
      const inputs = reveal<Record<string, any>>(r.inputs);
      if (r.type === 'docker:index/network:Network') {
        await api('POST', '/networks/create', { Name: inputs.name, Driver: inputs.driver ?? 'bridge', Internal: !!inputs.internal, CheckDuplicate: true,
          Labels: Object.fromEntries((inputs.labels ?? []).map((l: { label: string; value: string }) => [l.label, l.value])) });
        created.networks.add(inputs.name);
      } else if (r.type === 'docker:index/volume:Volume') {
        if (!created.volumes.has(inputs.name)) await api('POST', '/volumes/create', { Name: inputs.name });
        created.volumes.add(inputs.name);
      } else if (r.type === 'docker:index/image:Image' && wanted.has(inputs.imageName)) {
        log(`build ${inputs.imageName}`);
        // Only the toolkit is worth a saved tarball (npm ci over the network); the others build in seconds.
        buildImage(host, { tag: inputs.imageName, dockerfile: inputs.build.dockerfile, context: inputs.build.context, args: inputs.build.args,
          cache: /npm ci/.test(fs.readFileSync(inputs.build.dockerfile, 'utf8')),
          contextFiles: contextFilesOf(inputs.build.context, inputs.build.dockerfile) });
      }
    }
    for (const r of resources.filter((x) => x.type === 'docker:index/container:Container')) {
      const inputs = reveal<Record<string, any>>(r.inputs);
      if (skipped[inputs.name]) { log(`skip ${inputs.name}: ${skipped[inputs.name]}`); continue; }
      const { body, extraNetworks } = containerCreateBody(inputs);
      await api('POST', `/containers/create?name=${encodeURIComponent(inputs.name)}`, body);
      created.containers.push(inputs.name);
      restartPolicies.set(inputs.name, inputs.restart ?? 'no');
      for (const n of extraNetworks) await api('POST', `/networks/${n.name}/connect`, { Container: inputs.name, EndpointConfig: { Aliases: n.aliases } });
      const files = uploadFiles(inputs);
      if (files.length) await api('PUT', `/containers/${inputs.name}/archive?path=/`, undefined, { tar: tarArchive(files) });
    }
    // Started in declaration order (etcd before Patroni, as dependsOn says); restart policies do the rest.
    for (const c of created.containers) { log(`start ${c}`); await api('POST', `/containers/${c}/start`); }
  } catch (e) {
    await destroy();
    throw e;
  }
  const inspect = async (name: string): Promise<ContainerState> => {
    const j = await api('GET', `/containers/${name}/json`);
    return {
      running: j.State.Running, health: j.State.Health?.Status, restartCount: j.RestartCount, exitCode: j.State.ExitCode, pid: j.State.Pid,
      networks: Object.fromEntries(Object.entries(j.NetworkSettings.Networks as Record<string, { IPAddress: string }>).map(([k, v]) => [k, v.IPAddress])),
    };
  };
  const docker = (args: string[]) => spawnSync('docker', args, { env: { ...process.env, DOCKER_HOST: host }, encoding: 'utf8', maxBuffer: 64 << 20, timeout: 120_000 });
  const self: RealizedStack = {
    host, containers: created.containers, skipped, outputs, settings,
    inspect,
    async ip(name, network) {
      const nets = (await inspect(name)).networks;
      const ip = network ? nets[network] : Object.values(nets)[0];
      if (!ip) throw new Error(`${name} has no address${network ? ` on ${network}` : ''} (networks: ${Object.keys(nets).join(', ')})`);
      return ip;
    },
    async waitHealthy(names, timeoutMs = 300_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const states = await Promise.all(names.map(async (n) => [n, await inspect(n)] as const));
        const bad = states.filter(([, s]) => !s.running || (s.health !== undefined && s.health !== 'healthy'));
        if (!bad.length) return;
        if (Date.now() > deadline) {
          throw new Error(`not healthy after ${timeoutMs} ms: ${bad.map(([n, s]) => `${n} (${s.running ? s.health : `exited ${s.exitCode}, restarts ${s.restartCount}`}): ${self.logs(n, 6).replace(/\n/g, ' | ')}`).join('; ')}`);
        }
        await new Promise((r) => setTimeout(r, 2000));
      }
    },
    exec(name, cmd, o = {}) {
      const r = docker(['exec', ...(o.user ? ['-u', o.user] : []), name, ...cmd]);
      return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
    },
    logs(name, tail = 40) {
      const r = docker(['logs', '--tail', String(tail), name]);
      return `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
    },
    async kill(name, signal = 'KILL') { await api('POST', `/containers/${name}/kill?signal=${signal}`); },
    async crash(name, o = {}) {
      const { pid } = await inspect(name);
      if (!pid) throw new Error(`${name} is not running`);
      if (o.stayDown) await api('POST', `/containers/${name}/update`, { RestartPolicy: { Name: 'no' } });
      const at = Date.now();
      process.kill(pid, 'SIGKILL');
      return at;
    },
    async revive(name) {
      await api('POST', `/containers/${name}/update`, { RestartPolicy: { Name: restartPolicies.get(name) ?? 'no' } });
      if (!(await inspect(name)).running) await api('POST', `/containers/${name}/start`);
    },
    async stop(name, t = 10) { await api('POST', `/containers/${name}/stop?t=${t}`); },
    async start(name) { await api('POST', `/containers/${name}/start`); },
    async restart(name) { await api('POST', `/containers/${name}/restart?t=10`); },
    destroy,
  };
  return self;
}

/** Files a Dockerfile COPYs from its context (hashed, so a source change rebuilds the image). */
function contextFilesOf(context: string, dockerfile: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    const abs = `${context}/${rel}`;
    if (!fs.existsSync(abs)) return;
    if (fs.statSync(abs).isDirectory()) {
      for (const e of fs.readdirSync(abs)) if (e !== 'node_modules' && !e.startsWith('.')) walk(rel ? `${rel}/${e}` : e);
    } else out.push(rel);
  };
  for (const m of fs.readFileSync(dockerfile, 'utf8').matchAll(/^COPY\s+(?!--from)(.+)\s+\S+$/gm)) for (const src of m[1].split(/\s+/)) walk(src.replace(/\/$/, ''));
  return out;
}

/** Containers of the ha profile that cannot run here: their images have no Debian package. */
export const UNREALIZED_CONTAINERS: Record<string, string> = {
  'mosquitto-exporter': 'sapcc/mosquitto-exporter has no Debian package and the Go module proxy here refuses it (403): its Prometheus target stays down; the mocked tests cover its wiring',
};

/**
 * The ha profile as realized here: Pulumi.ha.yaml's settings with every image pointing at a local
 * Debian-package build, the API and broker published on 127.0.0.1 ports, and without the services
 * that have no Debian package: Elasticsearch, Kibana, the log shipper (writes to Elasticsearch),
 * Jaeger and the OpenCensus agent are switched off, and the broker is Mosquitto instead of EMQX.
 * The stack rules refuse Mosquitto in ha (it does not cluster), so the broker is swapped after validation.
 */
export function realizedHaSettings(images: StackImages, ports: { grpc: number; http: number; broker: number }, overrides: (raw: any) => void = () => {}): StackSettings {
  const raw = structuredClone(YAML.parse(fs.readFileSync('Pulumi.ha.yaml', 'utf8')).config['e4ops:settings']);
  raw.publish = { c2Address: '127.0.0.1', grpcPort: ports.grpc, httpPort: ports.http, brokerAddress: '127.0.0.1', brokerPort: ports.broker };
  raw.c2 = { ...raw.c2, image: images.c2, messageLogging: false };
  raw.postgres = { ...raw.postgres, patroniImageBase: images.base, exporterImage: images.postgresExporter, parameters: { shared_buffers: '128MB' } };
  // Debian's etcd has no v3 HTTP gateway (Patroni's etcd3 client gets 404): Patroni speaks v2 to it.
  raw.etcd = { ...raw.etcd, image: images.etcd, api: 'etcd' };
  raw.elasticsearch = { ...raw.elasticsearch, enabled: false };
  raw.logShipper = { enabled: false };
  raw.tracing = { enabled: false };
  raw.loadBalancer = { image: images.haproxy };
  raw.monitoring = { ...raw.monitoring, prometheus: { image: images.prometheus, blackboxImage: images.blackboxExporter, nodeExporterImage: images.nodeExporter, scrapeIntervalSeconds: 5 } };
  raw.backup = { ...raw.backup, baseImage: images.nodeBase };
  overrides(raw);
  const s = validateStackSettings(raw, {}, 'realized ha settings');
  s.broker = { ...s.broker, kind: 'mosquitto', nodes: 1, mosquittoImage: images.mosquitto };
  return s;
}

/** Evaluate the program for these settings under realizing mocks; the recorded resources and the outputs. */
export async function evaluateStack(settings: StackSettings, stack = 'ha-realized'): Promise<{ resources: RecordedResource[]; outputs: Record<string, unknown> }> {
  const rec = await installStackMocks(stack, {}, [], { realize: true });
  const { defineStack } = await import('../../stacks/program.ts');
  const { REPO_ROOT } = await import('../../lib/repo-root.ts');
  const out = defineStack(settings, {}, { repoRoot: REPO_ROOT });
  await quiesce(rec);
  const outputs: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(out)) outputs[k] = (await settle(v as never)).value;
  return { resources: [...rec.resources], outputs };
}

/** Free TCP ports on 127.0.0.1 (closed again before use: the engine binds them). */
export async function freePorts(n: number): Promise<number[]> {
  const net = await import('node:net');
  const servers = await Promise.all(Array.from({ length: n }, () => new Promise<import('node:net').Server>((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => resolve(s));
  })));
  const ports = servers.map((s) => (s.address() as import('node:net').AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

export { runDocker };
