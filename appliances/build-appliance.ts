// Turn an appliance definition into a build plan (packages, every file that goes into the image,
// units to enable) and the plan into disk images that boot by themselves: mmdebstrap (minbase) with
// customize hooks that copy the plan's files, the C2 binary and the toolkit (npm ci --omit=dev), then
// appliances/disk-image.ts (GPT + GRUB for BIOS and UEFI, no loop device), then qcow2 / raw / OVA,
// each with a .sha256 file. The files come from the renderers the stacks use (lib/render/*); nothing
// is rendered a second way here, and first boot re-renders them through the same function
// (renderSettingsFiles) with the cloud-init settings merged in. The image holds no secret.
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { renderC2Config } from '../lib/render/c2-config.ts';
import { c2ReplicaConfigSettings, C2_CERT_FILE, C2_KEY_FILE } from '../lib/render/c2-replica.ts';
import { renderMosquittoConf } from '../lib/render/mosquitto-conf.ts';
import { renderPostgresConf, renderPostBootstrapScript } from '../lib/render/postgres-conf.ts';
import { renderBackupJobConfig } from '../lib/render/backup-job.ts';
import { renderC2ServiceUnit, renderFirstBootServiceUnit, renderDhcpNetwork, renderSystemdUnit, cronToOnCalendar } from '../lib/render/systemd-units.ts';
import { renderSystemdUnits as renderScheduledJobUnits, BACKUP_JOB, DRILL_JOB } from '../backups/schedule.ts';
import { pitrScheduledUnits } from '../backups/pitr/pitr-operations.ts';
import { renderPgBackRestConf, pgBackRestSettingsOf, PGBACKREST_DEFAULTS } from '../lib/render/pgbackrest-conf.ts';
import type { StackSettings } from '../lib/settings/stack-settings.ts';
import { createLogger, type Logger } from '../lib/log.ts';
import { renderFirstBootScript } from './first-boot.ts';
import { assembleBootableDisk, renderGrubConfig, KERNEL_CMDLINE, ROOT_LABEL, run } from './disk-image.ts';
import { writeOva } from './ova.ts';
import { REPO_ROOT } from '../lib/repo-root.ts';
import type { ApplianceDefinition, ValidatedAppliance } from './appliance-definition.ts';

/** Where things live on the appliance. */
export const APPLIANCE_PATHS = {
  c2Binary: '/opt/e4/bin/c2',
  c2ConfigsDir: '/opt/e4/configs',
  c2ConfigFile: '/opt/e4/configs/config.yaml',
  toolkitDir: '/opt/e4ops',
  e4opsCommand: '/usr/local/bin/e4ops',
  /** tsx's transform cache (os.tmpdir()/tsx-0), warmed at build time: /tmp is a tmpfs, and under
   * software emulation transpiling the toolkit at every first-boot step costs minutes. */
  tsxCacheDir: '/var/cache/e4ops',
  definitionFile: '/etc/e4ops/appliance.yaml',
  settingsFile: '/etc/e4ops/settings.yaml',
  imageRelease: '/etc/e4ops/image-release.json',
  runtimeEnv: '/etc/e4ops/firstboot.env',
  secretsDir: '/etc/e4ops/secrets',
  c2EnvFile: '/etc/e4ops/secrets/c2.env',
  backupEnvFile: '/etc/e4ops/secrets/backup.env',
  backupJobConfig: '/etc/e4ops/backup.json',
  /** C2's key passphrase alone (root, 0600), for the drill's --passphrase-file; first boot copies it from c2.env. */
  drillPassphraseFile: '/etc/e4ops/secrets/c2-db-passphrase',
  drillReport: '/var/lib/e4ops/drill-report.json',
  pgbackrestConfig: PGBACKREST_DEFAULTS.configFile,
  pgbackrestIncludeDir: PGBACKREST_DEFAULTS.configIncludePath,
  /** The repository cipher passphrase, made at first boot (postgres, 0600). Escrow it like c2.env. */
  pgbackrestSecretsFile: `${PGBACKREST_DEFAULTS.configIncludePath}/e4ops-secrets.conf`,
  postgresConf: '/etc/e4ops/postgresql.conf',
  postBootstrap: '/etc/e4ops/post-bootstrap.sh',
  firstBootScript: '/usr/local/sbin/e4ops-firstboot',
  firstBootDone: '/var/lib/e4ops/firstboot.done',
  mosquittoConf: '/etc/mosquitto/mosquitto.conf',
  mosquittoPasswd: '/etc/mosquitto/passwd',
  mosquittoData: '/var/lib/mosquitto',
  grubConfig: '/boot/grub/grub.cfg',
} as const;
export const C2_SERVICE = 'e4c2.service';
export const FIRST_BOOT_SERVICE = 'e4ops-firstboot.service';
export const BACKUP_SERVICE = `${BACKUP_JOB.name}.service`;
export const BACKUP_TIMER = `${BACKUP_JOB.name}.timer`;
export const DRILL_SERVICE = `${DRILL_JOB.name}.service`;
export const DRILL_TIMER = `${DRILL_JOB.name}.timer`;
/** The pgBackRest jobs (backups/pitr/pitr-operations.ts pitrScheduledUnits): full, diff, check. */
export const PITR_JOBS = ['e4ops-pitr-full', 'e4ops-pitr-diff', 'e4ops-pitr-check'] as const;
/** The PostgreSQL major each suite ships (the cluster first boot creates; pgBackRest's pg1-path). */
export const SUITE_POSTGRES_MAJOR = { bookworm: 15, trixie: 17 } as const;
export const C2_USER = 'e4c2';
/** The admin account cloud-init puts the SSH keys on (passwordless sudo, no password login). */
export const ADMIN_USER = 'e4admin';
export const MQTT_PASSWORD_PLACEHOLDER = '@E4OPS_MQTT_PASSWORD@';

/** Packages every C2 appliance needs: kernel, init, boot loaders, network, the three services, cloud-init, SSH, the toolkit's runtime. */
export const BASE_PACKAGES = [
  'linux-image-amd64', 'initramfs-tools', 'systemd', 'systemd-sysv', 'systemd-resolved', 'udev', 'dbus', 'e2fsprogs',
  'grub-pc-bin', 'grub-efi-amd64-bin',
  'iproute2', 'netbase', 'ca-certificates', 'openssl', 'procps', 'less',
  'postgresql', 'postgresql-client', 'mosquitto', 'mosquitto-clients',
  'cloud-init', 'openssh-server', 'sudo',
  'nodejs', 'age', 'zstd',
];
/** Only in trixie (the PITR work runs it); bookworm images leave it out. */
const TRIXIE_PACKAGES = ['pgbackrest'];

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

const unitPath = (name: string) => `/etc/systemd/system/${name}`;

/**
 * The files that follow from the settings: C2's config, Mosquitto's, PostgreSQL's, the backup job and
 * its timer. The build renders them from the definition; first boot renders them again, through this
 * same function, from the definition merged with the cloud-init block. Pure.
 */
export function renderSettingsFiles(appliance: ValidatedAppliance): PlannedFile[] {
  const { settings: s } = appliance;
  const P = APPLIANCE_PATHS;
  const pub = s.publish;
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
  const files: PlannedFile[] = [
    { path: P.c2ConfigFile, content: c2Yaml, mode: 0o640, renderedBy: 'lib/render/c2-config.ts (c2-replica.ts settings)' },
    {
      path: P.mosquittoConf, mode: 0o644, renderedBy: 'lib/render/mosquitto-conf.ts',
      content: renderMosquittoConf({ listeners, persistenceDir: P.mosquittoData, allowAnonymous: s.broker.allowAnonymous, passwordFile: P.mosquittoPasswd }),
    },
    {
      path: P.postgresConf, mode: 0o644, renderedBy: 'lib/render/postgres-conf.ts',
      content: renderPostgresConf({ listenAddresses: '127.0.0.1', port: 5432, parameters: s.postgres.parameters, ...(s.postgres.pitr.enabled ? { pitr: { stanza: s.postgres.pitr.stanza, archiveTimeoutSeconds: s.postgres.pitr.archiveTimeoutSeconds } } : {}) }),
    },
    { path: P.postBootstrap, content: renderPostBootstrapScript({ database: s.postgres.database, username: s.postgres.username }), mode: 0o755, renderedBy: 'lib/render/postgres-conf.ts' },
  ];
  if (s.backup.enabled) {
    const b = s.backup;
    files.push({
      path: P.backupJobConfig, mode: 0o644, renderedBy: 'lib/render/backup-job.ts',
      content: renderBackupJobConfig({
        database: { host: '127.0.0.1', port: 5432, name: s.postgres.database, user: s.postgres.username },
        files: [P.c2ConfigFile, path.posix.join(P.c2ConfigsDir, C2_CERT_FILE), path.posix.join(P.c2ConfigsDir, C2_KEY_FILE), P.definitionFile],
        targets: b.targets, ageRecipients: b.ageRecipients, retention: b.retention,
        // First boot writes it: each set records the passphrase's fingerprint, so drills know they hold the right one.
        passphraseFile: P.drillPassphraseFile,
      }),
    });
    const units = renderScheduledJobUnits({
      job: BACKUP_JOB, args: ['run', '--config', P.backupJobConfig], repoDir: P.toolkitDir, nodeBin: '/usr/bin/node',
      onCalendar: cronToOnCalendar(b.schedule),
    });
    files.push(
      { path: unitPath(BACKUP_SERVICE), content: units.service, mode: 0o644, renderedBy: 'backups/schedule.ts (what backup.ts --print-systemd-timer prints)' },
      { path: unitPath(BACKUP_TIMER), content: units.timer, mode: 0o644, renderedBy: 'backups/schedule.ts (settings.backup.schedule via cronToOnCalendar)' },
      toolkitJobDropIn(BACKUP_SERVICE),
    );
    if (b.drill.enabled) {
      // The first local target (the appliance rules require one); the identity is the operator's, written by cloud-init.
      const target = b.targets.find((t) => t.type === 'local')!;
      const drill = renderScheduledJobUnits({
        job: DRILL_JOB, repoDir: P.toolkitDir, nodeBin: '/usr/bin/node', onCalendar: cronToOnCalendar(b.drill.schedule),
        args: ['--target', target.path!, '--identity', b.drill.identityFile, '--passphrase-file', P.drillPassphraseFile, '--report', P.drillReport,
          ...(b.drill.withC2 ? ['--with-c2', '--c2-binary', P.c2Binary] : [])],
      });
      files.push(
        { path: unitPath(DRILL_SERVICE), content: drill.service, mode: 0o644, renderedBy: 'backups/schedule.ts (what drill --print-systemd-timer prints)' },
        { path: unitPath(DRILL_TIMER), content: drill.timer, mode: 0o644, renderedBy: 'backups/schedule.ts (settings.backup.drill.schedule via cronToOnCalendar)' },
        toolkitJobDropIn(DRILL_SERVICE),
      );
    }
  }
  const pitr = s.postgres.pitr;
  if (pitr.enabled) {
    const major = SUITE_POSTGRES_MAJOR[appliance.definition.suite];
    files.push({
      path: P.pgbackrestConfig, mode: 0o640, renderedBy: 'lib/render/pgbackrest-conf.ts',
      // Locks in the spool folder, not /tmp: the timer jobs run with PrivateTmp, so /tmp locks would not see each other.
      content: renderPgBackRestConf({ ...pgBackRestSettingsOf(pitr, { path: `/var/lib/postgresql/${major}/main`, socketPath: '/var/run/postgresql' }), lockPath: `${pitr.spoolPath}/lock` }),
    });
    const units = pitrScheduledUnits({
      configFile: P.pgbackrestConfig, configIncludePath: P.pgbackrestIncludeDir, stanza: pitr.stanza, fullOnCalendar: pitr.fullSchedule, diffOnCalendar: pitr.diffSchedule,
      databaseUrl: `postgres://${s.postgres.username}@127.0.0.1:5432/${s.postgres.database}`, checkEnvironmentFile: P.backupEnvFile,
      repoDir: P.toolkitDir, nodeBin: '/usr/bin/node',
    });
    for (const u of units) {
      files.push(
        { path: unitPath(`${u.name}.service`), content: u.service, mode: 0o644, renderedBy: 'backups/pitr/pitr-operations.ts (what pitr print-systemd-timer prints)' },
        { path: unitPath(`${u.name}.timer`), content: u.timer, mode: 0o644, renderedBy: 'backups/pitr/pitr-operations.ts (postgres.pitr.fullSchedule / diffSchedule)' },
        toolkitJobDropIn(`${u.name}.service`),
      );
    }
  }
  return files;
}

/** Every unit or file renderSettingsFiles may write; apply-settings removes those a new block switched off. */
export function optionalSettingsFilePaths(): string[] {
  const P = APPLIANCE_PATHS;
  const service = (name: string) => [unitPath(name), unitPath(name.replace(/\.service$/, '.timer')), unitPath(`${name}.d/appliance.conf`)];
  return [P.backupJobConfig, ...service(BACKUP_SERVICE), ...service(DRILL_SERVICE), P.pgbackrestConfig, ...PITR_JOBS.flatMap((j) => service(`${j}.service`))];
}

/** The timers first boot enables when their units were rendered (backup, drill, pgBackRest). */
export const SCHEDULED_TIMERS = [BACKUP_TIMER, DRILL_TIMER, ...PITR_JOBS.map((j) => `${j}.timer`)];

/** The timers this plan's files carry (first boot enables them). */
export function scheduledTimersOf(plan: Pick<AppliancePlan, 'files'>): string[] {
  return SCHEDULED_TIMERS.filter((t) => plan.files.some((f) => f.path === unitPath(t)));
}

/** A toolkit job on the appliance: after first boot, with its generated DB password and the warm tsx cache. */
function toolkitJobDropIn(service: string): PlannedFile {
  const P = APPLIANCE_PATHS;
  return {
    path: unitPath(`${service}.d/appliance.conf`), mode: 0o644, renderedBy: 'lib/render/systemd-units.ts',
    content: renderSystemdUnit({
      Unit: { After: [FIRST_BOOT_SERVICE], Requires: [FIRST_BOOT_SERVICE] },
      // The DB password first boot generated, as PGPASSWORD (never on the command line).
      Service: { EnvironmentFile: P.backupEnvFile, Environment: `TMPDIR=${P.tsxCacheDir}` },
    }),
  };
}

export interface ImageRelease {
  name: string;
  version: string;
  suite: string;
  builtAt: string;
  toolkitVersion: string;
  c2: { moduleVersion: string; sha256: string };
}

/** The whole build plan. Pure: the C2 binary path is passed in, nothing is read. */
export function planAppliance(appliance: ValidatedAppliance, c2BinarySource: string): AppliancePlan {
  const { definition: d, settings: s } = appliance;
  const P = APPLIANCE_PATHS;
  const e4ops = P.e4opsCommand;
  const firstBoot = renderFirstBootScript({
    applySettingsCommand: `${e4ops} appliance apply-settings`,
    runtimeEnvFile: P.runtimeEnv, backupEnvFile: P.backupEnvFile, timers: SCHEDULED_TIMERS, drillPassphraseFile: P.drillPassphraseFile,
    backupInitCommand: `${e4ops} backup init --target`,
    pgbackrest: {
      configFile: P.pgbackrestConfig, secretsFile: P.pgbackrestSecretsFile, firstBackupService: 'e4ops-pitr-full.service',
      initCommand: `${e4ops} pitr init --pgbackrest-config ${P.pgbackrestConfig} --config-include-path ${P.pgbackrestIncludeDir} --stanza ${s.postgres.pitr.stanza}`,
    },
    c2User: C2_USER, c2ConfigsDir: P.c2ConfigsDir, c2ConfigFile: P.c2ConfigFile,
    certFile: path.posix.join(P.c2ConfigsDir, C2_CERT_FILE), keyFile: path.posix.join(P.c2ConfigsDir, C2_KEY_FILE),
    mqttPasswordPlaceholder: MQTT_PASSWORD_PLACEHOLDER, mqttUser: 'c2', mosquittoPasswordFile: P.mosquittoPasswd,
    secretsDir: P.secretsDir, c2EnvFile: P.c2EnvFile, postgresConfFile: P.postgresConf, postBootstrapScript: P.postBootstrap,
    database: s.postgres.database, doneMarker: P.firstBootDone,
  });
  const firstBootUnit = renderFirstBootServiceUnit({
    script: P.firstBootScript, doneMarker: P.firstBootDone,
    before: ['mosquitto.service', C2_SERVICE],
    // cloud-init's init stage writes the settings file, the host name and the admin's SSH keys.
    after: ['systemd-remount-fs.service', 'cloud-init-network.service', 'cloud-config.service'],
  });
  const c2Unit = renderC2ServiceUnit({
    binary: P.c2Binary, user: C2_USER, environmentFile: P.c2EnvFile,
    after: [FIRST_BOOT_SERVICE, 'postgresql.service', 'mosquitto.service'],
    requires: [FIRST_BOOT_SERVICE],
    execStartPre: [`${e4ops} appliance upgrade-check --guard`],
  });
  const cloudCfg = [
    '# Rendered by e4ops (appliances/build-appliance.ts).',
    '# NoCloud (a seed disk labelled cidata) or config-drive; None keeps first boot going without either.',
    'datasource_list: [NoCloud, ConfigDrive, None]',
    'manage_etc_hosts: true',
    'preserve_hostname: false',
    'ssh_pwauth: false',
    'disable_root: true',
    'system_info:',
    '  default_user:',
    `    name: ${ADMIN_USER}`,
    '    lock_passwd: true',
    '    gecos: e4ops appliance administrator',
    '    groups: [adm, systemd-journal]',
    '    sudo: ["ALL=(ALL) NOPASSWD:ALL"]',
    '    shell: /bin/bash',
    '',
  ].join('\n');
  const files: PlannedFile[] = [
    ...renderSettingsFiles(appliance),
    { path: P.definitionFile, content: `# The definition this image was built from (settings merged with ${P.settingsFile} at first boot).\n${YAML.stringify(d)}`, mode: 0o644, renderedBy: 'appliances/build-appliance.ts' },
    { path: P.firstBootScript, content: firstBoot, mode: 0o755, renderedBy: 'appliances/first-boot.ts' },
    {
      path: e4ops, mode: 0o755, renderedBy: 'appliances/build-appliance.ts',
      content: `#!/bin/sh\n# e4ops on the appliance: one Node process with tsx's loader; its transform cache is ${P.tsxCacheDir}\n# (warmed when the image was built).\nexport TMPDIR=${P.tsxCacheDir}\nexec /usr/bin/node --import file://${P.toolkitDir}/node_modules/tsx/dist/loader.mjs ${P.toolkitDir}/scripts/e4ops.ts "$@"\n`,
    },
    { path: unitPath(FIRST_BOOT_SERVICE), content: firstBootUnit, mode: 0o644, renderedBy: 'lib/render/systemd-units.ts' },
    { path: unitPath(C2_SERVICE), content: c2Unit, mode: 0o644, renderedBy: 'lib/render/systemd-units.ts' },
    {
      path: unitPath('mosquitto.service.d/e4ops.conf'), mode: 0o644, renderedBy: 'lib/render/systemd-units.ts',
      // Mosquitto's password file and config come from first boot: no broker on half-applied settings.
      content: renderSystemdUnit({ Unit: { After: [FIRST_BOOT_SERVICE], Requires: [FIRST_BOOT_SERVICE] } }),
    },
    {
      path: unitPath('ssh.service.d/e4ops-host-keys.conf'), mode: 0o644, renderedBy: 'lib/render/systemd-units.ts',
      // The image ships no host keys (every VM would share them); make this VM's if cloud-init did not.
      content: renderSystemdUnit({ Service: { ExecStartPre: ['-/usr/bin/ssh-keygen -A'] } }),
    },
    { path: '/etc/systemd/network/80-e4ops-dhcp.network', content: renderDhcpNetwork(), mode: 0o644, renderedBy: 'lib/render/systemd-units.ts' },
    { path: '/etc/cloud/cloud.cfg.d/99-e4ops.cfg', content: cloudCfg, mode: 0o644, renderedBy: 'appliances/build-appliance.ts' },
    { path: '/etc/ssh/sshd_config.d/50-e4ops.conf', content: 'PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin no\n', mode: 0o644, renderedBy: 'appliances/build-appliance.ts' },
    { path: '/etc/hostname', content: `${d.hostname}\n`, mode: 0o644, renderedBy: 'appliances/build-appliance.ts' },
    { path: '/etc/hosts', content: `127.0.0.1 localhost\n127.0.1.1 ${d.hostname}\n::1 localhost ip6-localhost ip6-loopback\n`, mode: 0o644, renderedBy: 'appliances/build-appliance.ts' },
    { path: '/etc/fstab', content: `LABEL=${ROOT_LABEL} / ext4 errors=remount-ro 0 1\n`, mode: 0o644, renderedBy: 'appliances/build-appliance.ts' },
    {
      path: P.grubConfig, mode: 0o644, renderedBy: 'appliances/disk-image.ts',
      content: renderGrubConfig({ title: `e4ops ${d.name} (Debian ${d.suite})`, kernel: '/vmlinuz', initrd: '/initrd.img', cmdline: KERNEL_CMDLINE }),
    },
  ];
  const packages = [...new Set([...BASE_PACKAGES, ...(d.suite === 'trixie' ? TRIXIE_PACKAGES : []), ...d.extraPackages])];
  return {
    definition: d, settings: s, packages, files,
    enableUnits: [FIRST_BOOT_SERVICE, C2_SERVICE, 'systemd-networkd.service', 'systemd-resolved.service', 'mosquitto.service', 'ssh.service'],
    c2BinarySource,
  };
}

/** Human-readable plan (e4ops build-appliance --dry-run). */
export function describePlan(plan: AppliancePlan): string {
  const d = plan.definition;
  return [
    `appliance ${d.name}: Debian ${d.suite} ${d.architecture}, ${d.image.sizeMb} MiB root file system, host name ${d.hostname} (cloud-init may change it)`,
    `outputs: ${d.image.formats.map((f) => `${d.name}.${f}`).join(', ')} (each with .sha256); boots by itself: GPT, GRUB for BIOS (MBR + BIOS boot partition) and UEFI (EFI/BOOT/BOOTX64.EFI)`,
    `packages (${plan.packages.length}): ${plan.packages.join(' ')}`,
    `C2 binary: ${plan.c2BinarySource} -> ${APPLIANCE_PATHS.c2Binary}`,
    `toolkit: this checkout (npm ci --omit=dev) -> ${APPLIANCE_PATHS.toolkitDir}, ${APPLIANCE_PATHS.e4opsCommand}`,
    'files:',
    ...plan.files.map((f) => `  ${f.path} (mode ${f.mode.toString(8)}, ${f.content.length} bytes) <- ${f.renderedBy}`),
    `enabled units: ${plan.enableUnits.join(' ')}${scheduledTimersOf(plan).length ? ` (+ ${scheduledTimersOf(plan).join(' ')} at first boot)` : ''}`,
    `first boot: validates ${APPLIANCE_PATHS.settingsFile} (cloud-init) merged over the definition, renders the files above again, then generates ${APPLIANCE_PATHS.c2EnvFile} (DB password, C2 passphrase, MQTT password), ${APPLIANCE_PATHS.c2ConfigsDir}/${C2_CERT_FILE} + ${C2_KEY_FILE}, ${APPLIANCE_PATHS.mosquittoPasswd}, the PostgreSQL cluster`,
  ].join('\n');
}

/** Write files into dir as a tree (the overlay the customize hook copies into the image). */
export function writeFilesUnder(files: PlannedFile[], dir: string): void {
  for (const f of files) {
    const target = path.join(dir, f.path);
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.writeFileSync(target, f.content, { mode: f.mode });
    fs.chmodSync(target, f.mode);
  }
}

/** The plan's files and the C2 binary as an overlay tree. */
export function stagePlanFiles(plan: AppliancePlan, dir: string): void {
  writeFilesUnder(plan.files, dir);
  const bin = path.join(dir, APPLIANCE_PATHS.c2Binary);
  fs.mkdirSync(path.dirname(bin), { recursive: true });
  fs.copyFileSync(plan.c2BinarySource, bin);
  fs.chmodSync(bin, 0o755);
}

/** Copy this checkout's tracked files (no tests, benches or caches) and install its production dependencies. */
export async function stageToolkit(repoRoot: string, dest: string, env: NodeJS.ProcessEnv): Promise<void> {
  const ls = spawnSync('git', ['-C', repoRoot, 'ls-files', '--cached', '--others', '--exclude-standard', '-z'], { encoding: 'utf8' });
  if (ls.status !== 0) throw new Error(`git ls-files in ${repoRoot} failed: ${ls.stderr}`);
  // node_modules is often a symlink to a shared tree (git lists a symlink as an untracked file):
  // copying the link would let npm ci below empty the shared tree. Only regular files are copied.
  const skip = /^(test|bench|\.scratch|\.cache|node_modules)(\/|$)/;
  for (const rel of ls.stdout.split('\0').filter((f) => f && !skip.test(f))) {
    const src = path.join(repoRoot, rel);
    if (!fs.existsSync(src) || !fs.lstatSync(src).isFile()) continue; // deleted in the work tree, or a link
    fs.mkdirSync(path.dirname(path.join(dest, rel)), { recursive: true });
    fs.cpSync(src, path.join(dest, rel), { verbatimSymlinks: true });
  }
  const nm = path.join(dest, 'node_modules');
  if (fs.existsSync(nm) && fs.lstatSync(nm).isSymbolicLink()) throw new Error(`${nm} is a symlink; refusing to run npm ci into it (it would empty the tree it points to)`);
  await run('npm', ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'], { env: { ...env, npm_config_cache: env.npm_config_cache ?? process.env.npm_config_cache }, cwd: dest, pkg: 'npm' });
}

/** mmdebstrap arguments: minbase + packages, hooks that copy the overlay, add C2's user, enable units, clean per-machine state. */
export function mmdebstrapArgs(plan: AppliancePlan, overlayDir: string, rootDir: string): string[] {
  const d = plan.definition;
  const P = APPLIANCE_PATHS;
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  return [
    '--mode=root', '--variant=minbase', `--architectures=${d.architecture}`,
    // No manuals, docs or translations on an appliance (copyright files stay).
    '--dpkgopt=path-exclude=/usr/share/man/*', '--dpkgopt=path-exclude=/usr/share/doc/*', '--dpkgopt=path-include=/usr/share/doc/*/copyright',
    '--dpkgopt=path-exclude=/usr/share/locale/*', '--dpkgopt=path-include=/usr/share/locale/locale.alias',
    `--include=${plan.packages.join(',')}`,
    // No packaged cluster: first boot creates it, so every VM gets its own system identifier.
    '--customize-hook=for v in $(ls "$1/usr/lib/postgresql"); do chroot "$1" pg_dropcluster "$v" main 2>/dev/null || true; done',
    `--customize-hook=chroot "$1" useradd --system --home-dir /opt/e4 --no-create-home --shell /usr/sbin/nologin ${C2_USER}`,
    `--customize-hook=cp -a ${q(overlayDir)}/. "$1/"`,
    `--customize-hook=chroot "$1" chown root:${C2_USER} ${q(P.c2ConfigFile)} && chroot "$1" install -d -m 0755 /var/lib/e4ops ${q(P.tsxCacheDir)}`,
    // Transpile the toolkit once here, at native speed, into the cache the VM's commands read.
    `--customize-hook=chroot "$1" ${q(P.e4opsCommand)} appliance upgrade-check --root /nonexistent >/dev/null 2>&1; cd "$1${P.toolkitDir}" && chroot "$1" env TMPDIR=${q(P.tsxCacheDir)} sh -c 'cd ${P.toolkitDir} && node --import tsx scripts/backup.ts --help' >/dev/null; ls "$1${P.tsxCacheDir}" >/dev/null`,
    `--customize-hook=chroot "$1" systemctl enable ${plan.enableUnits.join(' ')}`,
    // Serial console for the operator (and the boot log the tests read).
    '--customize-hook=chroot "$1" systemctl enable serial-getty@ttyS0.service',
    // GRUB's modules beside grub.cfg, so `insmod` works for anything not built into the boot images.
    '--customize-hook=mkdir -p "$1/boot/grub" && for p in i386-pc x86_64-efi; do cp -a "$1/usr/lib/grub/$p" "$1/boot/grub/"; done',
    // Per-machine state must not be in an image: SSH host keys, machine id, cloud-init's instance record.
    '--customize-hook=rm -f "$1"/etc/ssh/ssh_host_*_key "$1"/etc/ssh/ssh_host_*_key.pub && rm -rf "$1/var/lib/cloud/instances" "$1/var/lib/cloud/instance"',
    '--customize-hook=rm -f "$1/etc/machine-id" "$1/var/lib/dbus/machine-id" && touch "$1/etc/machine-id"',
    d.suite, rootDir, d.mirror,
  ];
}

export interface BuildOptions {
  /** Output directory: <name>.<format> (+ .sha256), plan.txt, build-report.json. */
  outDir: string;
  /** Scratch space (local disk); default <outDir>/work. */
  workDir?: string;
  /** Checkout whose toolkit goes into the image (default: this one). */
  repoRoot?: string;
  logger?: Logger;
  /** Progress lines for people (default: stderr). */
  progress?: (line: string) => void;
  /** Keep the raw disk even when raw is not among the formats (the tests read it with debugfs). */
  keepRaw?: boolean;
}

export interface BuildOutput { format: 'qcow2' | 'raw' | 'ova'; file: string; bytes: number; sha256: string }

export interface BuildResult {
  outputs: BuildOutput[];
  /** The raw disk (an output, or kept with keepRaw); undefined when neither. */
  raw?: string;
  seconds: number;
  steps: Record<string, number>;
  /** Bytes of the root tree. */
  rootTreeBytes: number;
}

function sha256File(file: string): string {
  const h = crypto.createHash('sha256');
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.alloc(4 << 20);
  try {
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0;) h.update(buf.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}

function treeBytes(dir: string): number {
  const r = spawnSync('du', ['-sxb', dir], { encoding: 'utf8' });
  return Number(r.stdout.split('\t')[0]) || 0;
}

/** The toolkit version from a checkout's package.json. */
export function toolkitVersion(repoRoot: string): string {
  return (JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;
}

/** Build the disk images. Needs root (mmdebstrap --mode=root, files owned by root in the image). */
export async function buildApplianceImage(plan: AppliancePlan, opts: BuildOptions & { c2ModuleVersion: string }): Promise<BuildResult> {
  const t0 = Date.now();
  const log = opts.logger ?? createLogger({ component: 'build-appliance' });
  const progress = opts.progress ?? ((l: string) => process.stderr.write(l + '\n'));
  const d = plan.definition;
  if (process.getuid?.() !== 0) throw new Error('build-appliance: needs root (mmdebstrap --mode=root and files owned by root in the image); run it as root');
  if (!fs.existsSync(plan.c2BinarySource)) throw new Error(`C2 binary ${plan.c2BinarySource} does not exist: build it with bash scripts/build-c2.sh`);
  const repoRoot = opts.repoRoot ?? REPO_ROOT;
  const outDir = path.resolve(opts.outDir);
  const work = path.resolve(opts.workDir ?? path.join(outDir, 'work'));
  fs.mkdirSync(outDir, { recursive: true });
  fs.rmSync(work, { recursive: true, force: true });
  fs.mkdirSync(path.join(work, 'tmp'), { recursive: true });
  const overlay = path.join(work, 'overlay');
  const root = path.join(work, 'rootfs');
  const env = { ...process.env, TMPDIR: path.join(work, 'tmp') };
  const steps: Record<string, number> = {};
  const step = async <T>(name: string, label: string, fn: () => Promise<T> | T): Promise<T> => {
    progress(label);
    const s0 = Date.now();
    const r = await fn();
    steps[name] = (Date.now() - s0) / 1000;
    return r;
  };
  const total = 4 + d.image.formats.length;
  stagePlanFiles(plan, overlay);
  const release: ImageRelease = {
    name: d.name, version: d.version ?? toolkitVersion(repoRoot), suite: d.suite, builtAt: new Date().toISOString(),
    toolkitVersion: toolkitVersion(repoRoot), c2: { moduleVersion: opts.c2ModuleVersion, sha256: sha256File(plan.c2BinarySource) },
  };
  writeFilesUnder([{ path: APPLIANCE_PATHS.imageRelease, content: JSON.stringify(release, null, 2) + '\n', mode: 0o644, renderedBy: '' }], overlay);
  fs.writeFileSync(path.join(outDir, 'plan.txt'), describePlan(plan) + '\n');
  log.info('build.start', { appliance: d.name, suite: d.suite, packages: plan.packages.length, outDir });

  await step('toolkit', `[1/${total}] toolkit: this checkout + npm ci --omit=dev -> ${APPLIANCE_PATHS.toolkitDir}`,
    () => stageToolkit(repoRoot, path.join(overlay, APPLIANCE_PATHS.toolkitDir), env));
  await step('mmdebstrap', `[2/${total}] mmdebstrap ${d.suite} minbase + ${plan.packages.length} packages into ${root}`,
    () => run('nice', ['-n', '10', 'mmdebstrap', ...mmdebstrapArgs(plan, overlay, root)], { env, pkg: 'mmdebstrap' }));
  const rootTreeBytes = treeBytes(root);
  const raw = path.join(work, `${d.name}.raw`);
  const rootUuid = crypto.randomUUID();
  await step('disk', `[3/${total}] bootable disk (GPT, GRUB BIOS + UEFI, ext4 ${d.image.sizeMb} MiB, root UUID ${rootUuid}), no loop device`,
    () => assembleBootableDisk({ rootDir: root, output: raw, rootSizeMiB: d.image.sizeMb, rootUuid, env, progress }));
  fs.rmSync(root, { recursive: true, force: true });
  fs.rmSync(overlay, { recursive: true, force: true });

  const outputs: BuildOutput[] = [];
  let n = 4;
  for (const format of ['qcow2', 'ova', 'raw'] as const) {
    if (!d.image.formats.includes(format)) continue;
    const file = path.join(outDir, `${d.name}.${format}`);
    fs.rmSync(file, { force: true });
    await step(format, `[${n++}/${total}] ${format} -> ${file}`, async () => {
      if (format === 'qcow2') await run('nice', ['-n', '10', 'qemu-img', 'convert', '-c', '-W', '-f', 'raw', '-O', 'qcow2', raw, file], { env, pkg: 'qemu-utils' });
      else if (format === 'ova') writeOva({ rawDisk: raw, ova: file, workDir: work, ovf: { name: d.name, description: d.description ?? `e4ops appliance ${d.name}`, cpus: d.image.cpus, memoryMb: d.image.memoryMb, vmwareOsType: 'debian12_64Guest' } });
      else if (opts.keepRaw) fs.copyFileSync(raw, file); // sparse copy; the work copy stays for keepRaw
      else fs.renameSync(raw, file);
    });
    const sha256 = sha256File(file);
    fs.writeFileSync(`${file}.sha256`, `${sha256}  ${path.basename(file)}\n`);
    outputs.push({ format, file, bytes: fs.statSync(file).size, sha256 });
  }
  await step('checksums', `[${total}/${total}] SHA-256 files written`, () => undefined);
  const keptRaw = d.image.formats.includes('raw') ? path.join(outDir, `${d.name}.raw`) : opts.keepRaw ? raw : undefined;
  if (!opts.keepRaw) fs.rmSync(raw, { force: true });
  if (!keptRaw) fs.rmSync(work, { recursive: true, force: true });
  const seconds = (Date.now() - t0) / 1000;
  const report = { appliance: d.name, suite: d.suite, seconds, steps, rootTreeBytes, outputs: outputs.map((o) => ({ ...o, file: path.basename(o.file) })) };
  fs.writeFileSync(path.join(outDir, 'build-report.json'), JSON.stringify(report, null, 2) + '\n');
  log.info('build.done', { appliance: d.name, seconds, outputs: outputs.map((o) => `${path.basename(o.file)} ${o.bytes}`) });
  progress(`built ${outputs.map((o) => `${path.basename(o.file)} (${(o.bytes / 2 ** 20).toFixed(0)} MiB)`).join(', ')} in ${seconds.toFixed(1)} s`);
  return { outputs, raw: keptRaw, seconds, steps, rootTreeBytes };
}
