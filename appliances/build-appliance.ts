// Turn an appliance definition into a build plan (packages, every file that goes into the image,
// units to enable) and the plan into a bootable disk image: mmdebstrap (minbase) with customize
// hooks that copy the plan's files and the C2 binary, then mkfs.ext4 -d (no mount needed) and
// qemu-img. The files come from the renderers the stacks use (lib/render/*); nothing is rendered a
// second way here. The image holds no secret: first boot makes them (appliances/first-boot.ts).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { renderC2Config } from '../lib/render/c2-config.ts';
import { c2ReplicaConfigSettings, c2CertificateSans, C2_CERT_FILE, C2_KEY_FILE } from '../lib/render/c2-replica.ts';
import { renderMosquittoConf } from '../lib/render/mosquitto-conf.ts';
import { renderPostgresConf, renderPostBootstrapScript } from '../lib/render/postgres-conf.ts';
import { renderC2ServiceUnit, renderFirstBootServiceUnit, renderDhcpNetwork } from '../lib/render/systemd-units.ts';
import type { StackSettings } from '../lib/settings/stack-settings.ts';
import { createLogger, type Logger } from '../lib/log.ts';
import { renderFirstBootScript } from './first-boot.ts';
import type { ApplianceDefinition, ValidatedAppliance } from './appliance-definition.ts';

/** Where things live on the appliance. */
export const APPLIANCE_PATHS = {
  c2Binary: '/opt/e4/bin/c2',
  c2ConfigsDir: '/opt/e4/configs',
  c2ConfigFile: '/opt/e4/configs/config.yaml',
  secretsDir: '/etc/e4ops/secrets',
  c2EnvFile: '/etc/e4ops/secrets/c2.env',
  postgresConf: '/etc/e4ops/postgresql.conf',
  postBootstrap: '/etc/e4ops/post-bootstrap.sh',
  firstBootScript: '/usr/local/sbin/e4ops-firstboot',
  firstBootDone: '/var/lib/e4ops/firstboot.done',
  mosquittoConf: '/etc/mosquitto/mosquitto.conf',
  mosquittoPasswd: '/etc/mosquitto/passwd',
  mosquittoData: '/var/lib/mosquitto',
} as const;
export const C2_SERVICE = 'e4c2.service';
export const FIRST_BOOT_SERVICE = 'e4ops-firstboot.service';
export const C2_USER = 'e4c2';
export const MQTT_PASSWORD_PLACEHOLDER = '@E4OPS_MQTT_PASSWORD@';

/** Packages every C2 appliance needs (kernel, init, network, the three services, openssl for first boot). */
export const BASE_PACKAGES = [
  'linux-image-amd64', 'initramfs-tools', 'systemd', 'systemd-sysv', 'udev', 'dbus', 'e2fsprogs',
  'iproute2', 'netbase', 'ca-certificates', 'openssl', 'procps',
  'postgresql', 'postgresql-client', 'mosquitto', 'mosquitto-clients',
];

export interface PlannedFile {
  /** Absolute path on the appliance. */
  path: string;
  content: string;
  mode: number;
  /** Which code rendered it (for the dry-run listing and reviews). */
  renderedBy: string;
}

export interface AppliancePlan {
  definition: ApplianceDefinition;
  settings: StackSettings;
  packages: string[];
  files: PlannedFile[];
  /** Units enabled in the image (systemctl enable in the chroot). */
  enableUnits: string[];
  /** Host path of the C2 binary copied to APPLIANCE_PATHS.c2Binary. */
  c2BinarySource: string;
}

/** The whole build plan. Pure apart from reading nothing: the C2 binary path is passed in. */
export function planAppliance(appliance: ValidatedAppliance, c2BinarySource: string): AppliancePlan {
  const { definition: d, settings: s } = appliance;
  const P = APPLIANCE_PATHS;
  const pub = s.publish;
  const sans = c2CertificateSans(d.hostname);
  const c2Yaml = renderC2Config(c2ReplicaConfigSettings(s, 0, {
    dbHost: '127.0.0.1',
    brokerUrl: `tcp://127.0.0.1:${pub.brokerPort}`,
    brokerPassword: MQTT_PASSWORD_PLACEHOLDER,
    grpcHostPort: `${pub.c2Address}:${pub.grpcPort}`,
    httpHostPort: `${pub.c2Address}:${pub.httpPort}`,
  }));
  // C2 logs in to the broker on 127.0.0.1; devices use publish.brokerAddress.
  const listeners = pub.brokerAddress === '0.0.0.0' || pub.brokerAddress === '127.0.0.1'
    ? [{ port: pub.brokerPort, ...(pub.brokerAddress === '127.0.0.1' ? { address: '127.0.0.1' } : {}) }]
    : [{ port: pub.brokerPort, address: pub.brokerAddress }, { port: pub.brokerPort, address: '127.0.0.1' }];
  const mosquittoConf = renderMosquittoConf({
    listeners, persistenceDir: P.mosquittoData, allowAnonymous: s.broker.allowAnonymous, passwordFile: P.mosquittoPasswd,
  });
  const postgresConf = renderPostgresConf({ listenAddresses: '127.0.0.1', port: 5432, parameters: s.postgres.parameters });
  const postBootstrap = renderPostBootstrapScript({ database: s.postgres.database, username: s.postgres.username });
  const firstBoot = renderFirstBootScript({
    hostname: d.hostname, dnsNames: sans.dnsNames, ipAddresses: sans.ipAddresses, c2User: C2_USER,
    c2ConfigsDir: P.c2ConfigsDir, c2ConfigFile: P.c2ConfigFile,
    certFile: path.posix.join(P.c2ConfigsDir, C2_CERT_FILE), keyFile: path.posix.join(P.c2ConfigsDir, C2_KEY_FILE),
    mqttPasswordPlaceholder: MQTT_PASSWORD_PLACEHOLDER, mqttUser: 'c2', mosquittoPasswordFile: P.mosquittoPasswd,
    secretsDir: P.secretsDir, c2EnvFile: P.c2EnvFile, postgresConfFile: P.postgresConf, postBootstrapScript: P.postBootstrap,
    database: s.postgres.database, doneMarker: P.firstBootDone,
  });
  const firstBootUnit = renderFirstBootServiceUnit({
    script: P.firstBootScript, doneMarker: P.firstBootDone,
    before: ['mosquitto.service', C2_SERVICE],
    after: ['systemd-remount-fs.service'],
  });
  const c2Unit = renderC2ServiceUnit({
    binary: P.c2Binary, user: C2_USER, environmentFile: P.c2EnvFile,
    after: [FIRST_BOOT_SERVICE, 'postgresql.service', 'mosquitto.service'],
    requires: [FIRST_BOOT_SERVICE],
  });
  const files: PlannedFile[] = [
    { path: P.c2ConfigFile, content: c2Yaml, mode: 0o640, renderedBy: 'lib/render/c2-config.ts (c2-replica.ts settings)' },
    { path: P.mosquittoConf, content: mosquittoConf, mode: 0o644, renderedBy: 'lib/render/mosquitto-conf.ts' },
    { path: P.postgresConf, content: postgresConf, mode: 0o644, renderedBy: 'lib/render/postgres-conf.ts' },
    { path: P.postBootstrap, content: postBootstrap, mode: 0o755, renderedBy: 'lib/render/postgres-conf.ts' },
    { path: P.firstBootScript, content: firstBoot, mode: 0o755, renderedBy: 'appliances/first-boot.ts' },
    { path: `/etc/systemd/system/${FIRST_BOOT_SERVICE}`, content: firstBootUnit, mode: 0o644, renderedBy: 'lib/render/systemd-units.ts' },
    { path: `/etc/systemd/system/${C2_SERVICE}`, content: c2Unit, mode: 0o644, renderedBy: 'lib/render/systemd-units.ts' },
    { path: '/etc/systemd/network/80-e4ops-dhcp.network', content: renderDhcpNetwork(), mode: 0o644, renderedBy: 'lib/render/systemd-units.ts' },
    { path: '/etc/hostname', content: `${d.hostname}\n`, mode: 0o644, renderedBy: 'appliances/build-appliance.ts' },
    { path: '/etc/hosts', content: `127.0.0.1 localhost\n127.0.1.1 ${d.hostname}\n::1 localhost ip6-localhost ip6-loopback\n`, mode: 0o644, renderedBy: 'appliances/build-appliance.ts' },
    { path: '/etc/fstab', content: 'LABEL=e4root / ext4 errors=remount-ro 0 1\n', mode: 0o644, renderedBy: 'appliances/build-appliance.ts' },
  ];
  const packages = [...new Set([...BASE_PACKAGES, ...d.extraPackages])];
  return {
    definition: d, settings: s, packages, files,
    enableUnits: [FIRST_BOOT_SERVICE, C2_SERVICE, 'systemd-networkd.service', 'mosquitto.service'],
    c2BinarySource,
  };
}

/** Human-readable plan (scripts/build-appliance.ts --dry-run). */
export function describePlan(plan: AppliancePlan): string {
  const d = plan.definition;
  return [
    `appliance ${d.name}: Debian ${d.suite} ${d.architecture}, ${d.image.format} image, ${d.image.sizeMb} MiB root file system, host name ${d.hostname}`,
    `packages (${plan.packages.length}): ${plan.packages.join(' ')}`,
    `C2 binary: ${plan.c2BinarySource} -> ${APPLIANCE_PATHS.c2Binary}`,
    'files:',
    ...plan.files.map((f) => `  ${f.path} (mode ${f.mode.toString(8)}, ${f.content.length} bytes) <- ${f.renderedBy}`),
    `enabled units: ${plan.enableUnits.join(' ')}`,
    `first boot generates: ${APPLIANCE_PATHS.c2EnvFile} (DB password, C2 passphrase, MQTT password), ${APPLIANCE_PATHS.c2ConfigsDir}/${C2_CERT_FILE} + ${C2_KEY_FILE}, ${APPLIANCE_PATHS.mosquittoPasswd}, the PostgreSQL cluster`,
  ].join('\n');
}

/** Write the plan's files into dir as a tree (the overlay the customize hook copies into the image). */
export function stagePlanFiles(plan: AppliancePlan, dir: string): void {
  for (const f of plan.files) {
    const target = path.join(dir, f.path);
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.writeFileSync(target, f.content, { mode: f.mode });
    fs.chmodSync(target, f.mode);
  }
  const bin = path.join(dir, APPLIANCE_PATHS.c2Binary);
  fs.mkdirSync(path.dirname(bin), { recursive: true });
  fs.copyFileSync(plan.c2BinarySource, bin);
  fs.chmodSync(bin, 0o755);
}

/** mmdebstrap arguments: minbase + packages, hooks that copy the overlay, add C2's user, enable units. */
export function mmdebstrapArgs(plan: AppliancePlan, overlayDir: string, rootDir: string): string[] {
  const d = plan.definition;
  const P = APPLIANCE_PATHS;
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  return [
    '--mode=root', '--variant=minbase', `--architectures=${d.architecture}`,
    `--include=${plan.packages.join(',')}`,
    // No packaged cluster: first boot creates it, so every VM gets its own system identifier.
    '--customize-hook=for v in $(ls "$1/usr/lib/postgresql"); do chroot "$1" pg_dropcluster "$v" main 2>/dev/null || true; done',
    `--customize-hook=chroot "$1" useradd --system --home-dir /opt/e4 --no-create-home --shell /usr/sbin/nologin ${C2_USER}`,
    `--customize-hook=cp -a ${q(overlayDir)}/. "$1/"`,
    `--customize-hook=chroot "$1" chown root:${C2_USER} ${q(P.c2ConfigFile)} && chroot "$1" install -d -m 0755 /var/lib/e4ops`,
    `--customize-hook=chroot "$1" systemctl enable ${plan.enableUnits.join(' ')}`,
    // Serial console for the operator (and the boot log the tests read).
    '--customize-hook=chroot "$1" systemctl enable serial-getty@ttyS0.service',
    '--customize-hook=rm -f "$1/etc/machine-id" && touch "$1/etc/machine-id"',
    d.suite, rootDir, d.mirror,
  ];
}

export interface BuildOptions {
  /** Output directory: <name>.<format>, vmlinuz, initrd.img, plan.txt. */
  outDir: string;
  /** Scratch space (local disk); default <outDir>/work. */
  workDir?: string;
  logger?: Logger;
  /** Progress lines for people (default: stderr). */
  progress?: (line: string) => void;
}

export interface BuildResult {
  image: string;
  kernel: string;
  initrd: string;
  seconds: number;
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, progress: (l: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let tail = '';
    const take = (b: Buffer) => {
      const text = b.toString();
      tail = (tail + text).slice(-4000);
      for (const line of text.split('\n')) if (/^I: |^E: |^W: /.test(line)) progress(`  ${cmd}: ${line}`);
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    child.on('error', (err) => reject((err as NodeJS.ErrnoException).code === 'ENOENT'
      ? new Error(`${cmd} is not installed: flock /tmp/e4ops-apt.lock apt-get install -y mmdebstrap qemu-utils e2fsprogs`)
      : err));
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} exited with ${code}:\n${tail}`))));
  });
}

/** Build the disk image. Needs root (mmdebstrap --mode=root), mmdebstrap, e2fsprogs and qemu-utils. */
export async function buildApplianceImage(plan: AppliancePlan, opts: BuildOptions): Promise<BuildResult> {
  const t0 = Date.now();
  const log = opts.logger ?? createLogger({ component: 'build-appliance' });
  const progress = opts.progress ?? ((l: string) => process.stderr.write(l + '\n'));
  const d = plan.definition;
  if (process.getuid?.() !== 0) throw new Error('build-appliance: needs root (mmdebstrap --mode=root and files owned by root in the image); run it as root');
  if (!fs.existsSync(plan.c2BinarySource)) throw new Error(`C2 binary ${plan.c2BinarySource} does not exist: build it with bash scripts/build-c2.sh`);
  const outDir = path.resolve(opts.outDir);
  const work = path.resolve(opts.workDir ?? path.join(outDir, 'work'));
  fs.rmSync(work, { recursive: true, force: true });
  fs.mkdirSync(path.join(work, 'tmp'), { recursive: true });
  const overlay = path.join(work, 'overlay');
  const root = path.join(work, 'rootfs');
  const env = { ...process.env, TMPDIR: path.join(work, 'tmp') };
  stagePlanFiles(plan, overlay);
  fs.writeFileSync(path.join(outDir, 'plan.txt'), describePlan(plan) + '\n');
  log.info('build.start', { appliance: d.name, packages: plan.packages.length, outDir });

  progress(`[1/3] mmdebstrap ${d.suite} minbase + ${plan.packages.length} packages into ${root}`);
  await run('mmdebstrap', mmdebstrapArgs(plan, overlay, root), env, progress);

  const kernels = fs.readdirSync(path.join(root, 'boot')).filter((f) => f.startsWith('vmlinuz-')).sort();
  if (!kernels.length) throw new Error(`no kernel in ${root}/boot: is linux-image-amd64 in the package list?`);
  const version = kernels[kernels.length - 1].slice('vmlinuz-'.length);
  const kernel = path.join(outDir, 'vmlinuz');
  const initrd = path.join(outDir, 'initrd.img');
  fs.copyFileSync(path.join(root, 'boot', `vmlinuz-${version}`), kernel);
  fs.copyFileSync(path.join(root, 'boot', `initrd.img-${version}`), initrd);

  progress(`[2/3] mkfs.ext4 -d: ${d.image.sizeMb} MiB ext4 file system from the tree`);
  const raw = path.join(work, `${d.name}.raw`);
  await run('mkfs.ext4', ['-q', '-F', '-L', 'e4root', '-d', root, raw, `${d.image.sizeMb}M`], env, progress);

  const image = path.join(outDir, `${d.name}.${d.image.format}`);
  if (d.image.format === 'qcow2') {
    progress(`[3/3] qemu-img convert -O qcow2 -> ${image}`);
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, image], env, progress);
  } else {
    progress(`[3/3] raw image -> ${image}`);
    fs.renameSync(raw, image);
  }
  fs.rmSync(work, { recursive: true, force: true });
  const seconds = (Date.now() - t0) / 1000;
  log.info('build.done', { appliance: d.name, image, seconds });
  progress(`built ${image} in ${seconds.toFixed(1)} s (kernel ${version}); boot: see README "VM appliance"`);
  return { image, kernel, initrd, seconds };
}

/** qemu arguments for a direct kernel boot of a built image, with loopback-only port forwards. */
export function qemuBootArgs(r: { image: string; kernel: string; initrd: string; format: 'qcow2' | 'raw' }, opts: {
  memoryMb?: number; serialLog: string; forwards: Array<{ hostPort: number; guestPort: number }>; snapshot?: boolean;
  /** kvm (default) or tcg (software emulation: slow, but works where nested KVM does not). */
  accel?: 'kvm' | 'tcg';
}): string[] {
  const fwd = opts.forwards.map((f) => `,hostfwd=tcp:127.0.0.1:${f.hostPort}-:${f.guestPort}`).join('');
  return [
    '-accel', opts.accel ?? 'kvm', '-smp', '2', '-m', String(opts.memoryMb ?? 1024),
    '-nographic', '-serial', `file:${opts.serialLog}`, '-monitor', 'none',
    '-kernel', r.kernel, '-initrd', r.initrd,
    '-append', 'root=LABEL=e4root rw console=ttyS0 systemd.show_status=true',
    '-drive', `file=${r.image},format=${r.format},if=virtio${opts.snapshot ? ',snapshot=on' : ''}`,
    '-netdev', `user,id=n0,restrict=off${fwd}`, '-device', 'virtio-net-pci,netdev=n0',
  ];
}
