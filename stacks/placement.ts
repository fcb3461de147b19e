import * as pulumi from '@pulumi/pulumi';
import * as docker from '@pulumi/docker';
import path from 'node:path';
import type { StackSettings } from '../lib/settings/stack-settings.ts';

// Where things run: one docker.Provider per host, two networks per host (an internal one with no
// way out, and an edge one that published ports need), member placement round-robin over hosts,
// and how one member addresses another (container name on one host; the host's private address
// and a published peer port across hosts).

export interface Member {
  /** Container name, also its DNS name on the host's networks: c2-0, pg-1, etcd-2 ... */
  name: string;
  index: number;
  host: number;
}

export const INTERNAL_NETWORK = 'e4ops-internal';
export const EDGE_NETWORK = 'e4ops-edge';

/** Peer ports that would collide with the balancer's published ports get moved up by 10000. */
export function peerPort(service: string, port: number): number {
  return (service === 'c2' && (port === 5555 || port === 8888)) || (service === 'emqx' && port === 1883) ? port + 10000 : port;
}

export class Placement {
  readonly providers: docker.Provider[];
  readonly internal: docker.Network[];
  readonly edge: docker.Network[];
  readonly multiHost: boolean;
  private readonly remoteImages = new Map<string, docker.RemoteImage>();
  private readonly builtImages = new Map<string, docker.Image>();

  constructor(readonly settings: StackSettings, readonly parent: pulumi.Resource | undefined, readonly repoRoot: string) {
    this.multiHost = settings.hosts.length > 1;
    this.providers = settings.hosts.map((h) => new docker.Provider(`host-${h.name}`, { host: h.url }, { parent }));
    this.internal = settings.hosts.map((h, i) => new docker.Network(`${INTERNAL_NETWORK}-${h.name}`, {
      name: INTERNAL_NETWORK, internal: true, driver: 'bridge', labels: [{ label: 'e4ops.stack', value: pulumi.getStack() }],
    }, { parent, provider: this.providers[i] }));
    this.edge = settings.hosts.map((h, i) => new docker.Network(`${EDGE_NETWORK}-${h.name}`, {
      name: EDGE_NETWORK, internal: false, driver: 'bridge', labels: [{ label: 'e4ops.stack', value: pulumi.getStack() }],
    }, { parent, provider: this.providers[i] }));
  }

  /** count members named prefix-0..n-1, round-robin over the hosts. */
  members(prefix: string, count: number): Member[] {
    return Array.from({ length: count }, (_, i) => ({ name: `${prefix}-${i}`, index: i, host: i % this.settings.hosts.length }));
  }

  /** One member per host (balancers, log shippers, node exporters, OpenCensus agents). */
  perHost(prefix: string): Member[] {
    return this.settings.hosts.map((h, i) => ({ name: `${prefix}-${h.name}`, index: i, host: i }));
  }

  hostName(m: Member): string { return this.settings.hosts[m.host].name; }

  provider(m: Member | number): docker.Provider { return this.providers[typeof m === 'number' ? m : m.host]; }

  /** host:port at which `from`'s host reaches member `to` (container DNS on one host, else host address). */
  address(to: Member, service: string, port: number): string {
    if (!this.multiHost) return `${to.name}:${port}`;
    return `${this.settings.hosts[to.host].address}:${peerPort(service, port)}`;
  }

  /** Just the host part of address(). */
  hostOf(to: Member): string {
    return this.multiHost ? this.settings.hosts[to.host].address! : to.name;
  }

  /** Published peer ports on the host's private address (multi-host only; none on one host). */
  peerPorts(m: Member, service: string, ports: number[]): docker.types.input.ContainerPort[] {
    if (!this.multiHost) return [];
    return ports.map((p) => ({ internal: p, external: peerPort(service, p), ip: this.settings.hosts[m.host].address, protocol: 'tcp' }));
  }

  /** Networks for a member: internal always; edge when it publishes ports. */
  networks(m: Member, publishes: boolean, aliases: string[] = []): docker.types.input.ContainerNetworksAdvanced[] {
    const out: docker.types.input.ContainerNetworksAdvanced[] = [{ name: this.internal[m.host].name, aliases: [m.name, ...aliases] }];
    if (publishes || this.multiHost) out.push({ name: this.edge[m.host].name, aliases: [m.name] });
    return out;
  }

  /** A registry image pulled onto a member's host (once per host and reference). Returns the image id. */
  remoteImage(m: Member | number, ref: string): pulumi.Output<string> {
    const host = typeof m === 'number' ? m : m.host;
    const key = `${host}|${ref}`;
    let img = this.remoteImages.get(key);
    if (!img) {
      const short = ref.replace(/^.*\//, '').replace(/[^A-Za-z0-9]+/g, '-');
      img = new docker.RemoteImage(`img-${short}-${this.settings.hosts[host].name}`, { name: ref, keepLocally: true }, { parent: this.parent, provider: this.providers[host] });
      this.remoteImages.set(key, img);
    }
    return img.imageId;
  }

  /** An image built on a member's host from a Dockerfile in stacks/docker (no registry push). */
  builtImage(m: Member | number, name: string, dockerfile: string, args: Record<string, string>, contextIsRepoRoot = false): pulumi.Output<string> {
    const host = typeof m === 'number' ? m : m.host;
    const tag = Object.values(args).join('-').replace(/[^A-Za-z0-9_.-]+/g, '-').slice(0, 100) || 'latest';
    const key = `${host}|${name}|${tag}`;
    let img = this.builtImages.get(key);
    if (!img) {
      img = new docker.Image(`build-${name}-${this.settings.hosts[host].name}`, {
        imageName: `e4ops/${name}:${tag}`,
        skipPush: true,
        build: {
          context: contextIsRepoRoot ? this.repoRoot : path.join(this.repoRoot, 'stacks', 'docker'),
          dockerfile: path.join(this.repoRoot, 'stacks', 'docker', dockerfile),
          args,
          platform: 'linux/amd64',
        },
      }, { parent: this.parent, provider: this.providers[host] });
      this.builtImages.set(key, img);
    }
    return img.imageName;
  }

  /** Resource options for a member's resources. */
  opts(m: Member | number, parent: pulumi.Resource, extra: pulumi.CustomResourceOptions = {}): pulumi.CustomResourceOptions {
    return { parent, provider: this.provider(m), ...extra };
  }
}

/** Docker memory limit (its `memory` field is in MiB), when one is set. */
export function memory(mb: number | undefined): { memory?: number } {
  return mb ? { memory: mb } : {};
}

export const RESTART = 'unless-stopped';

/** resolv.conf options: a name that does not resolve (a container that is down) fails in about 1 s. */
export const FAST_DNS_FAILURE = ['timeout:1', 'attempts:1'];

/**
 * A container command that gives `paths` (uploaded files: the Docker provider writes them owned by
 * root, so a 0600 secret is unreadable by a service user) to `user`, then runs `argv` as that user.
 * The container itself must start as root; setpriv is util-linux (in every Debian image).
 */
export function dropPrivilegesCommand(user: string, paths: string[], argv: string[]): string[] {
  const q = (a: string) => (/^[A-Za-z0-9_./:=-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`);
  // HOME follows the user (Patroni writes ~/.pgpass); the rest of the environment (secrets) is kept.
  return ['sh', '-c', `chown -R ${user}: ${paths.map(q).join(' ')} && export HOME="$(getent passwd ${user} | cut -d: -f6)" && exec setpriv --reuid=${user} --regid=${user} --init-groups ${argv.map(q).join(' ')}`];
}
