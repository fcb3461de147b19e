// A private Docker engine for tests and benchmarks: its own data root, exec root and socket, no
// iptables, no default bridge (containers use --network host or networks a test creates); overlay2
// storage, or vfs where overlay mounts are refused (vfs copies every layer: a C2 image build takes
// about 2 minutes instead of 2 seconds). Nothing is pulled: there is no registry here, so base images come from
// mmdebstrap | docker import (cached as a tarball) and images are built with the classic builder.
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startDaemon, type Daemon } from './daemon.ts';
import { e4opsCacheDir } from '../cache-dir.ts';

export interface PrivateDockerEngine {
  /** DOCKER_HOST value: unix://<socket>. */
  host: string;
  dir: string;
  daemon: Daemon;
  /** Run the docker CLI against this engine; returns stdout, throws with stderr on failure. */
  docker(args: string[], opts?: { input?: string | Buffer; timeoutMs?: number }): string;
  stop(): Promise<void>;
}

/** True when dockerd and the docker CLI are installed (apt-get install docker.io). */
export function dockerEngineInstalled(): boolean {
  return ['dockerd', 'docker'].every((c) => spawnSync('sh', ['-c', `command -v ${c}`]).status === 0);
}

/** Run the docker CLI with DOCKER_HOST set; stdout on success, an error naming the command otherwise. */
export function runDocker(dockerHost: string | undefined, args: string[], opts: { input?: string | Buffer; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): string {
  const r = spawnSync('docker', args, {
    env: { ...process.env, ...opts.env, ...(dockerHost ? { DOCKER_HOST: dockerHost } : {}), DOCKER_BUILDKIT: '0' },
    input: opts.input, encoding: 'utf8', maxBuffer: 64 << 20, timeout: opts.timeoutMs ?? 600_000,
  });
  if (r.error) throw new Error(`docker ${args[0]}: ${(r.error as NodeJS.ErrnoException).code === 'ENOENT' ? 'the docker CLI is not installed (apt-get install docker.io)' : r.error.message}`);
  if (r.status !== 0) throw new Error(`docker ${args.slice(0, 2).join(' ')} failed (exit ${r.status}): ${(r.stderr || r.stdout).trim().split('\n').slice(-5).join(' | ')}`);
  return r.stdout;
}

/** Start dockerd with everything under a new temp folder (short path: the socket path is limited to 107 bytes). */
export async function startPrivateDockerEngine(opts: { startTimeoutMs?: number; storageDriver?: 'overlay2' | 'vfs' } = {}): Promise<PrivateDockerEngine> {
  if (!dockerEngineInstalled()) throw new Error('dockerd or docker not found: apt-get install docker.io');
  const drivers = opts.storageDriver ? [opts.storageDriver] : ['overlay2', 'vfs'];
  const failures: string[] = [];
  for (const driver of drivers) {
    try {
      return await startEngineWith(driver, opts.startTimeoutMs ?? 30_000);
    } catch (e) {
      failures.push(`${driver}: ${(e as Error).message}`);
    }
  }
  throw new Error(`private dockerd did not start:\n${failures.join('\n')}`);
}

async function startEngineWith(storageDriver: string, timeoutMs: number): Promise<PrivateDockerEngine> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4dk-'));
  const socket = path.join(dir, 'docker.sock');
  const host = `unix://${socket}`;
  const daemon = startDaemon('dockerd', [
    '--data-root', path.join(dir, 'data'), '--exec-root', path.join(dir, 'exec'), '--pidfile', path.join(dir, 'docker.pid'),
    '--host', host, '--iptables=false', '--ip-masq=false', '--bridge=none', `--storage-driver=${storageDriver}`,
  ], path.join(dir, 'dockerd.log'));
  const deadline = Date.now() + timeoutMs;
  const stop = async () => {
    await daemon.stop('SIGTERM', 20_000);
    // A killed engine can leave overlay and shm mounts under its folder behind.
    spawnSync('sh', ['-c', `grep -o " ${dir}[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l`]);
    fs.rmSync(dir, { recursive: true, force: true });
  };
  for (;;) {
    if (fs.existsSync(socket) && spawnSync('docker', ['version'], { env: { ...process.env, DOCKER_HOST: host } }).status === 0) break;
    if (daemon.child.exitCode !== null || Date.now() > deadline) {
      const tail = daemon.tail(5);
      await stop();
      throw new Error(tail);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return { host, dir, daemon, docker: (args, o) => runDocker(host, args, o), stop };
}

/**
 * An mmdebstrap minbase tarball of `suite` with `include` packages, cached by suite and package list:
 * only the first call downloads (scripts/setup.sh makes it, so tests never reach a mirror).
 */
export function ensureDebianBaseTarball(opts: { suite?: string; include?: string[] } = {}): string {
  const suite = opts.suite ?? 'bookworm';
  const include = [...new Set(opts.include ?? [])].sort();
  const key = crypto.createHash('sha256').update(`${suite}\n${include.join(',')}`).digest('hex').slice(0, 12);
  const tarball = e4opsCacheDir('images', `debian-${suite}-minbase-${key}.tar`);
  if (fs.existsSync(tarball)) return tarball;
  if (spawnSync('sh', ['-c', 'command -v mmdebstrap']).status !== 0) throw new Error('mmdebstrap not found: apt-get install mmdebstrap');
  fs.mkdirSync(path.dirname(tarball), { recursive: true });
  const partial = tarball.replace(/\.tar$/, `.tmp-${process.pid}.tar`); // mmdebstrap writes a tarball when the name ends in .tar
  const r = spawnSync('mmdebstrap', ['--mode=root', '--variant=minbase', ...(include.length ? [`--include=${include.join(',')}`] : []), suite, partial], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) {
    fs.rmSync(partial, { force: true });
    throw new Error(`mmdebstrap ${suite} failed (exit ${r.status}): ${r.stderr.trim().split('\n').slice(-5).join(' | ')}`);
  }
  fs.renameSync(partial, tarball);
  return tarball;
}

/** Tag a Debian base image on an engine, from ensureDebianBaseTarball. */
export function importDebianBaseImage(dockerHost: string, tag: string, opts: { suite?: string; include?: string[] } = {}): void {
  runDocker(dockerHost, ['import', ensureDebianBaseTarball(opts), tag]);
}

/** One Docker Engine API call over the engine's unix socket; JSON in and out, an error naming the call otherwise. */
export async function dockerEngineRequest<T = unknown>(dockerHost: string, method: string, apiPath: string, body?: unknown, opts: { tar?: Buffer; timeoutMs?: number } = {}): Promise<T> {
  const http = await import('node:http');
  const socketPath = dockerHost.replace(/^unix:\/\//, '');
  const payload = opts.tar ?? (body === undefined ? undefined : Buffer.from(JSON.stringify(body)));
  return new Promise<T>((resolve, reject) => {
    const req = http.request({
      socketPath, method, path: `/v1.41${apiPath}`, timeout: opts.timeoutMs ?? 120_000,
      headers: payload ? { 'Content-Type': opts.tar ? 'application/x-tar' : 'application/json', 'Content-Length': payload.length } : {},
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        if ((res.statusCode ?? 500) >= 300) {
          let msg = text;
          try { msg = JSON.parse(text).message ?? text; } catch { /* plain text */ }
          reject(new Error(`Docker API ${method} ${apiPath}: HTTP ${res.statusCode}: ${msg.trim()}`));
          return;
        }
        try { resolve((text ? JSON.parse(text) : undefined) as T); } catch { resolve(text as T); }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`Docker API ${method} ${apiPath}: no answer in ${opts.timeoutMs ?? 120_000} ms`)));
    req.on('error', reject);
    if (payload) req.write(payload);
    req.end();
  });
}

/** A ustar archive of files (owner root, like the Docker provider's uploads), for PUT /containers/{id}/archive. */
export function tarArchive(files: Array<{ path: string; content: Buffer; mode: number }>): Buffer {
  const blocks: Buffer[] = [];
  const field = (h: Buffer, off: number, len: number, v: string) => { h.write(v, off, Math.min(len, Buffer.byteLength(v)), 'utf8'); };
  const octal = (n: number, len: number) => n.toString(8).padStart(len - 1, '0') + '\0';
  const mtime = Math.floor(Date.now() / 1000);
  for (const f of files) {
    let name = f.path.replace(/^\/+/, '');
    let prefix = '';
    if (Buffer.byteLength(name) > 100) {
      const cut = name.lastIndexOf('/', 155);
      if (cut <= 0 || Buffer.byteLength(name.slice(cut + 1)) > 100) throw new Error(`upload path too long for a tar header: ${f.path}`);
      prefix = name.slice(0, cut);
      name = name.slice(cut + 1);
    }
    const h = Buffer.alloc(512);
    field(h, 0, 100, name);
    field(h, 100, 8, octal(f.mode & 0o7777, 8));
    field(h, 108, 8, octal(0, 8));
    field(h, 116, 8, octal(0, 8));
    field(h, 124, 12, octal(f.content.length, 12));
    field(h, 136, 12, octal(mtime, 12));
    h.fill(' ', 148, 156);
    field(h, 156, 1, '0');
    field(h, 257, 6, 'ustar\0');
    field(h, 263, 2, '00');
    field(h, 345, 155, prefix);
    let sum = 0;
    for (const b of h) sum += b;
    field(h, 148, 8, sum.toString(8).padStart(6, '0') + '\0 ');
    blocks.push(h, f.content, Buffer.alloc((512 - (f.content.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}
