// The container images the stacks deploy, built on a private Docker engine with no registry:
// - C2 (stacks/docker/c2.Dockerfile) on a host without a Go image: the c2 and c2cli that
//   scripts/build-c2.sh built go into a small "binaries" image, which the Dockerfile takes as GO_IMAGE
//   (it compiles nothing when /out/c2 is there). Same Dockerfile, same runtime stage as a deployment.
// - The HA profile's other services from Debian packages (stacks/docker/debian-services.Dockerfile,
//   patroni.Dockerfile, toolkit.Dockerfile), all on one cached mmdebstrap base that already carries the
//   packages, so a build downloads nothing.
// Every build is labelled with a hash of what went into it (Dockerfile, arguments, context files, base
// image id): an engine that already has the tag with that hash skips the build, and builds marked
// `cache` are also kept as `docker save` tarballs beside the base tarballs for the next engine.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { c2BinaryDir, pinnedC2Version } from './c2.ts';
import { REPO_ROOT } from '../repo-root.ts';
import { e4opsCacheDir } from '../cache-dir.ts';
import { ensureDebianBaseTarball, runDocker } from './docker-engine.ts';

export const C2_DOCKERFILE = path.join(REPO_ROOT, 'stacks', 'docker', 'c2.Dockerfile');
const DOCKER_DIR = path.join(REPO_ROOT, 'stacks', 'docker');
const CONTENT_LABEL = 'e4ops.content-hash';

/** What c2.Dockerfile's runtime stage needs from its base (curl for the health check; useradd is in passwd). */
export const C2_IMAGE_BASE_PACKAGES = ['ca-certificates', 'curl', 'passwd'];

/** The cached Debian tarball C2 images are built on here (scripts/setup.sh makes it ahead of the tests). */
export function ensureC2ImageBaseTarball(): string {
  return ensureDebianBaseTarball({ include: C2_IMAGE_BASE_PACKAGES });
}

/**
 * Everything the HA profile's images need, in one base: C2's runtime, PostgreSQL 15 + Patroni +
 * pgBackRest, etcd, HAProxy, Mosquitto, Prometheus and exporters, the toolkit's tools (its Node comes
 * from this machine, see buildNodeBaseImage). About 1 GB as a tarball; layers are shared, so every
 * image built on it costs only its own small layer (overlay2).
 */
export const STACK_IMAGE_BASE_PACKAGES = [
  ...C2_IMAGE_BASE_PACKAGES, 'wget', 'procps',
  'postgresql-15', 'postgresql-client-15', 'patroni', 'python3-etcd', 'pgbackrest',
  'etcd-server', 'etcd-client', 'haproxy', 'mosquitto', 'mosquitto-clients',
  'prometheus', 'prometheus-blackbox-exporter', 'prometheus-node-exporter', 'prometheus-postgres-exporter',
  'cron', 'zstd', 'age', 'rclone', 'libstdc++6',
];

export function ensureStackImageBaseTarball(): string {
  return ensureDebianBaseTarball({ include: STACK_IMAGE_BASE_PACKAGES });
}

export interface BuildImageOptions {
  tag: string;
  /** Dockerfile path, or its text (then `context` may be omitted: an empty context). */
  dockerfile: string | { text: string };
  context?: string;
  args?: Record<string, string>;
  target?: string;
  /** Files of the context the Dockerfile copies (relative to context), hashed into the content hash. */
  contextFiles?: string[];
  /** Keep a `docker save` tarball in the cache for the next engine (slow builds: npm ci ...). */
  cache?: boolean;
}

function imageLabel(dockerHost: string | undefined, tag: string): string | undefined {
  try {
    return runDocker(dockerHost, ['image', 'inspect', '--format', `{{index .Config.Labels "${CONTENT_LABEL}"}}`, tag]).trim();
  } catch {
    return undefined;
  }
}

function imageId(dockerHost: string | undefined, ref: string): string {
  try {
    return runDocker(dockerHost, ['image', 'inspect', '--format', '{{.Id}}', ref]).trim();
  } catch {
    return '';
  }
}

/** What identifies an image's content across engines: its content label when it has one, else its id. */
function imageIdentity(dockerHost: string | undefined, ref: string): string {
  return imageLabel(dockerHost, ref) || imageId(dockerHost, ref);
}

/** Hash of what an image is made of: Dockerfile text, args, target, context files, FROM images present. */
export function imageContentHash(dockerHost: string | undefined, o: BuildImageOptions): string {
  const h = crypto.createHash('sha256');
  const text = typeof o.dockerfile === 'string' ? fs.readFileSync(o.dockerfile, 'utf8') : o.dockerfile.text;
  h.update(text).update('\0').update(JSON.stringify([o.args ?? {}, o.target ?? '']));
  for (const f of [...(o.contextFiles ?? [])].sort()) h.update(`\0${f}\0`).update(fs.readFileSync(path.join(o.context!, f)));
  // Base images by content: a rebuilt base changes every image on it. (Not by id: an imported base gets
  // a new id on every engine, which made every cached build miss.)
  for (const v of Object.values(o.args ?? {})) h.update(`\0${imageIdentity(dockerHost, v)}`);
  for (const m of text.matchAll(/^FROM\s+(\S+)/gm)) if (!m[1].includes('$')) h.update(`\0${imageIdentity(dockerHost, m[1])}`);
  return h.digest('hex').slice(0, 16);
}

/** Build (or reuse) an image on an engine with the classic builder; returns the tag. */
export function buildImage(dockerHost: string | undefined, o: BuildImageOptions): string {
  const hash = imageContentHash(dockerHost, o);
  if (imageLabel(dockerHost, o.tag) === hash) return o.tag;
  const cached = e4opsCacheDir('images', `built-${o.tag.replace(/[^A-Za-z0-9_.-]+/g, '_')}-${hash}.tar`);
  if (o.cache && fs.existsSync(cached)) {
    runDocker(dockerHost, ['load', '-q', '-i', cached]);
    if (imageLabel(dockerHost, o.tag) === hash) return o.tag;
  }
  const emptyCtx = o.context ? undefined : fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-image-ctx-'));
  try {
    const args = ['build', '--network', 'host', '-q', '-t', o.tag, '--label', `${CONTENT_LABEL}=${hash}`,
      ...Object.entries(o.args ?? {}).flatMap(([k, v]) => ['--build-arg', `${k}=${v}`]),
      ...(o.target ? ['--target', o.target] : []),
      '-f', typeof o.dockerfile === 'string' ? o.dockerfile : '-', o.context ?? emptyCtx!];
    runDocker(dockerHost, args, { input: typeof o.dockerfile === 'string' ? undefined : o.dockerfile.text, timeoutMs: 1_800_000 });
  } finally {
    if (emptyCtx) fs.rmSync(emptyCtx, { recursive: true, force: true });
  }
  if (o.cache) {
    fs.mkdirSync(path.dirname(cached), { recursive: true });
    const partial = `${cached}.tmp-${process.pid}`;
    runDocker(dockerHost, ['save', '-o', partial, o.tag]);
    fs.renameSync(partial, cached);
    // One tarball per tag (each holds the whole base, about 1 GB): older builds of it go.
    const stem = path.basename(cached).replace(/-[0-9a-f]{16}\.tar$/, '-');
    for (const f of fs.readdirSync(path.dirname(cached))) {
      if (f.startsWith(stem) && /^[0-9a-f]{16}\.tar$/.test(f.slice(stem.length)) && f !== path.basename(cached)) fs.rmSync(path.join(path.dirname(cached), f), { force: true });
    }
  }
  return o.tag;
}

export interface BuildC2ImageOptions {
  /** Image tag to build, e.g. e4ops/c2:test. */
  tag: string;
  /** Base image for both stages (a Debian image that has curl and CA certificates needs no network). */
  baseImage: string;
  /** Folder holding c2 and c2cli (default: the build-c2.sh cache). */
  binDir?: string;
}

/** Build the C2 image from prebuilt binaries; returns the tag. */
export function buildC2ImageFromBinaries(dockerHost: string | undefined, opts: BuildC2ImageOptions): string {
  const binDir = opts.binDir ?? c2BinaryDir();
  for (const b of ['c2', 'c2cli']) {
    if (!fs.existsSync(path.join(binDir, b))) throw new Error(`${path.join(binDir, b)} does not exist: run bash scripts/build-c2.sh`);
  }
  const binariesTag = `${opts.tag.replace(/:[^/:]*$/, '')}-binaries:${pinnedC2Version().slice(-12)}`;
  buildImage(dockerHost, {
    tag: binariesTag, dockerfile: { text: `FROM ${opts.baseImage}\nCOPY c2 c2cli /out/\n` },
    context: binDir, contextFiles: ['c2', 'c2cli'],
  });
  return buildImage(dockerHost, {
    tag: opts.tag, dockerfile: C2_DOCKERFILE, context: DOCKER_DIR,
    args: { GO_IMAGE: binariesTag, RUNTIME_IMAGE: opts.baseImage },
  });
}

/** Tags of the images buildStackImages makes, by the stack setting they stand in for. */
export interface StackImages {
  /** The mmdebstrap base (patroni.Dockerfile's BASE_IMAGE: postgres.patroniImageBase). */
  base: string;
  /** The base plus this machine's Node 20 and npm (toolkit.Dockerfile's BASE_IMAGE: backup.baseImage). */
  nodeBase: string;
  c2: string;
  etcd: string;
  haproxy: string;
  mosquitto: string;
  prometheus: string;
  blackboxExporter: string;
  nodeExporter: string;
  postgresExporter: string;
}

const SERVICE_TARGETS = {
  etcd: 'etcd', haproxy: 'haproxy', mosquitto: 'mosquitto', prometheus: 'prometheus',
  blackboxExporter: 'blackbox-exporter', nodeExporter: 'node-exporter', postgresExporter: 'postgres-exporter',
} as const;

/**
 * Node 20 for the toolkit image: Debian 12 ships Node 18, so the node binary and npm this machine
 * runs (the project's own Node) are copied onto the base.
 */
export function buildNodeBaseImage(dockerHost: string | undefined, baseImage: string, tag: string): string {
  const node = process.execPath;
  const npmDir = [path.join(path.dirname(node), '..', 'lib', 'node_modules', 'npm'), '/usr/lib/node_modules/npm', '/usr/local/lib/node_modules/npm']
    .find((d) => fs.existsSync(path.join(d, 'bin', 'npm-cli.js')));
  if (!npmDir) throw new Error(`npm not found next to ${node}: install npm for Node ${process.version}`);
  const ctx = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-node-base-'));
  try {
    fs.copyFileSync(node, path.join(ctx, 'node'));
    fs.cpSync(npmDir, path.join(ctx, 'npm'), { recursive: true });
    // npm in the build (toolkit.Dockerfile's npm ci) trusts what this machine's npm trusts (a proxy's CA).
    fs.copyFileSync(hostCaBundle(), path.join(ctx, 'npm-ca.crt'));
    return buildImage(dockerHost, {
      tag,
      dockerfile: { text: [
        `FROM ${baseImage}`,
        'COPY node /usr/local/bin/node',
        'COPY npm /usr/local/lib/node_modules/npm',
        'COPY npm-ca.crt /usr/local/etc/npm-ca.crt',
        'RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm && echo cafile=/usr/local/etc/npm-ca.crt > /usr/local/etc/npmrc && node --version',
        '',
      ].join('\n') },
      context: ctx,
      // The node binary identifies the copy; npm's version comes with it.
      args: { NODE_VERSION: process.version },
    });
  } finally {
    fs.rmSync(ctx, { recursive: true, force: true });
  }
}

function hostCaBundle(): string {
  const f = [process.env.NODE_EXTRA_CA_CERTS, process.env.SSL_CERT_FILE, '/etc/ssl/certs/ca-certificates.crt'].find((x) => x && fs.existsSync(x));
  if (!f) throw new Error('no CA bundle on this machine for npm in the image build: apt-get install ca-certificates');
  return f;
}

/** Import the stack base and build every image the realized HA profile runs; returns their tags. */
export function buildStackImages(dockerHost: string | undefined, opts: { prefix?: string } = {}): StackImages {
  const prefix = opts.prefix ?? 'e4ops-local';
  const tarball = ensureStackImageBaseTarball();
  const base = `${prefix}/stack-base:${path.basename(tarball, '.tar').slice(-12)}`;
  // Labelled with the tarball's name (its package list): images built on it hash the same on every engine.
  if (!imageId(dockerHost, base)) runDocker(dockerHost, ['import', '--change', `LABEL ${CONTENT_LABEL}=${path.basename(tarball, '.tar')}`, tarball, base], { timeoutMs: 1_200_000 });
  const service = Object.fromEntries(Object.entries(SERVICE_TARGETS).map(([key, target]) => [key, buildImage(dockerHost, {
    tag: `${prefix}/${target}:debian12`, dockerfile: path.join(DOCKER_DIR, 'debian-services.Dockerfile'), context: DOCKER_DIR,
    args: { BASE_IMAGE: base }, target,
  })])) as Record<keyof typeof SERVICE_TARGETS, string>;
  return {
    base,
    nodeBase: buildNodeBaseImage(dockerHost, base, `${prefix}/node20-base:debian12`),
    c2: buildC2ImageFromBinaries(dockerHost, { tag: `${prefix}/c2:${pinnedC2Version().slice(-12)}`, baseImage: base }),
    ...service,
  };
}
