// The appliance definition, its build plan and its systemd units, without building an image.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import {
  loadApplianceDefinition, validateApplianceDefinition, ApplianceDefinitionError,
} from '../../appliances/appliance-definition.ts';
import {
  planAppliance, stagePlanFiles, mmdebstrapArgs, renderSettingsFiles, writeFilesUnder, APPLIANCE_PATHS, MQTT_PASSWORD_PLACEHOLDER, C2_SERVICE, FIRST_BOOT_SERVICE,
  BACKUP_SERVICE, BACKUP_TIMER, DRILL_SERVICE, DRILL_TIMER, PITR_JOBS,
} from '../../appliances/build-appliance.ts';
import { validateStackSettings, StackSettingsError } from '../../lib/settings/stack-settings.ts';
import { renderSystemdUnit } from '../../lib/render/systemd-units.ts';
import { REPO_ROOT } from '../../lib/servers/c2.ts';

const DEFINITION = path.join(REPO_ROOT, 'appliances', 'c2-minimal', 'appliance.yaml');
const raw = () => YAML.parse(fs.readFileSync(DEFINITION, 'utf8')) as Record<string, any>;
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-appliance-'));
const AGE = 'age12dxr4kurhj0dk2asld78q4mx9r8rrg3kz56s2qt9gef982d00gjs6r5stk'; // a real public key (its secret key was not kept): recipients are checked to their bech32 checksum
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

function problemsOf(doc: unknown): string[] {
  try {
    validateApplianceDefinition(doc, 'test.yaml');
  } catch (err) {
    if (err instanceof ApplianceDefinitionError) return err.problems;
    throw err;
  }
  return [];
}

describe('appliance definition', () => {
  it('accepts the shipped c2-minimal definition and fills defaults', () => {
    const { definition, settings } = loadApplianceDefinition(DEFINITION);
    expect(definition.name).toBe('c2-minimal');
    expect(settings.profile).toBe('minimal');
    expect(settings.postgres.database).toBe('e4');
    const d = raw();
    delete d.image;
    delete d.hostname;
    const v = validateApplianceDefinition(d);
    expect(v.definition.image).toEqual({ formats: ['qcow2', 'raw', 'ova'], sizeMb: 3072, cpus: 2, memoryMb: 2048 });
    expect(v.definition.hostname).toBe('e4c2');
    delete d.suite;
    expect(validateApplianceDefinition(d).definition.suite).toBe('trixie');
  });

  it('rejects bad appliance keys, naming the field', () => {
    const d = raw();
    d.image.formats = ['vmdk'];
    d.image.sizeMb = 100;
    d.suite = 'sid';
    d.hostnme = 'x';
    const p = problemsOf(d);
    expect(p.some((x) => x.startsWith('image.formats[0]: must be one of "qcow2", "raw", "ova"'))).toBe(true);
    expect(p.some((x) => x.startsWith('image.sizeMb:') && x.includes('1024'))).toBe(true);
    expect(p.some((x) => x.startsWith('suite:'))).toBe(true);
    expect(p.some((x) => x.startsWith('hostnme: unknown key'))).toBe(true);
    expect(problemsOf({ name: 'x1' })).toEqual(['settings: missing. Fix: add it']);
  });

  it('refuses secrets in the definition', () => {
    const d = raw();
    d.secrets = { c2DbPassphrase: 'x'.repeat(32) };
    expect(problemsOf(d)).toEqual([expect.stringMatching(/^secrets: unknown key \(an appliance holds no secrets.*generated on first boot\)/)]);
  });

  it('checks settings with the stack rules, prefixed settings.', () => {
    const d = raw();
    d.settings.c2.replicas = 2;
    d.settings.c2.logLevel = 'loud';
    const p = problemsOf(d);
    expect(p.some((x) => x.startsWith('settings.c2.logLevel: must be one of'))).toBe(true);
  });

  it('refuses what one VM does not run, naming the field and the fix', () => {
    const d = raw();
    d.settings.publish.c2Address = '10.1.2.3';
    d.settings.elasticsearch = { enabled: true };
    const p = problemsOf(d);
    expect(p).toContainEqual(expect.stringMatching(/^settings\.publish\.c2Address: is 10\.1\.2\.3.*Fix: use 0\.0\.0\.0/));
    expect(p).toContainEqual(expect.stringMatching(/^settings\.elasticsearch\.enabled: .*Fix: set it to false/));
    const ha = raw();
    ha.settings.profile = 'ha';
    expect(problemsOf(ha).length).toBeGreaterThan(0);
  });

  it('takes a backup schedule on trixie, with targets and age recipients; refuses it on bookworm (Node 18)', () => {
    const d = raw();
    d.settings.backup = { enabled: true, targets: [{ name: 'l', type: 'local', path: '/var/backups/e4ops' }], ageRecipients: [AGE] };
    expect(problemsOf(d)).toEqual([]);
    d.suite = 'bookworm';
    expect(problemsOf(d)).toContainEqual(expect.stringMatching(/^settings\.backup\.enabled: .*Node\.js 20.*Fix: build with suite trixie/));
    const e = raw();
    e.settings.backup = { enabled: true, targets: [{ name: 'r', type: 'rclone', remote: 's3:bucket' }, { name: 'l', type: 'local', path: 'relative' }] };
    expect(problemsOf(e)).toContainEqual(expect.stringMatching(/^settings\.backup\.ageRecipients: is empty/));
    e.settings.backup.ageRecipients = [AGE];
    const p = problemsOf(e);
    expect(p).toContainEqual(expect.stringMatching(/^settings\.backup\.targets\[0\]: an rclone target needs rclone in the image\. Fix: add rclone to extraPackages/));
    expect(p).toContainEqual(expect.stringMatching(/^settings\.backup\.targets\[1\]\.path: .*absolute/));
  });

  it('takes a scheduled drill and point-in-time recovery on trixie; refuses what the VM cannot do, naming the key', () => {
    const d = raw();
    d.settings.backup = { enabled: true, targets: [{ name: 'l', type: 'local', path: '/var/backups/e4ops' }], ageRecipients: [AGE], drill: { enabled: true } };
    d.settings.postgres = { pitr: { enabled: true } };
    expect(problemsOf(d)).toEqual([]);
    const noLocal = structuredClone(d);
    noLocal.extraPackages = ['rclone'];
    noLocal.settings.backup.targets = [{ name: 'r', type: 'rclone', remote: 's3:bucket' }];
    expect(problemsOf(noLocal)).toContainEqual(expect.stringMatching(/^settings\.backup\.drill\.enabled: .*no(ne)?.*Fix: add a local target/));
    const noBackup = structuredClone(d);
    noBackup.settings.backup.enabled = false;
    expect(problemsOf(noBackup)).toContainEqual(expect.stringMatching(/^settings\.backup\.drill\.enabled: drills the backups, but backup\.enabled is false/));
    const badCron = structuredClone(d);
    badCron.settings.backup.drill.schedule = '99 99 * * *';
    expect(problemsOf(badCron)).toContainEqual(expect.stringMatching(/^settings\.backup\.drill\.schedule: "99 99 \* \* \*" is not a 5-field cron expression/));
    const bookworm = structuredClone(d);
    bookworm.suite = 'bookworm';
    expect(problemsOf(bookworm)).toContainEqual(expect.stringMatching(/^settings\.postgres\.pitr\.enabled: .*Fix: build with suite trixie/));
    const sftp = structuredClone(d);
    sftp.settings.postgres.pitr.repo = { type: 'sftp', sftpHost: 'h', sftpUser: 'u', sftpPrivateKeyFile: '/k' };
    expect(problemsOf(sftp)).toContainEqual(expect.stringMatching(/^settings\.postgres\.pitr\.repo\.type: sftp .*Fix: use posix/));
  });

  it('a Pulumi stack refuses the scheduled drill instead of ignoring it, naming the key and the host-timer fix', () => {
    let problems: string[] = [];
    try { validateStackSettings({ profile: 'minimal', backup: { drill: { enabled: true } } }); } catch (e) { problems = (e as StackSettingsError).problems; }
    expect(problems).toContainEqual(expect.stringMatching(/^backup\.drill\.enabled: a Pulumi stack does not run the scheduled drill .*Fix: .*e4ops drill --print-systemd-timer/));
    expect(() => validateStackSettings({ profile: 'minimal' })).not.toThrow();
  });

  it('names the file when it cannot be read', () => {
    expect(() => loadApplianceDefinition(path.join(scratch, 'missing.yaml'))).toThrow(/missing\.yaml: cannot be read \(ENOENT\)/);
  });
});

describe('appliance build plan', () => {
  const appliance = loadApplianceDefinition(DEFINITION);
  const plan = planAppliance(appliance, '/bin/true');
  const file = (p: string) => {
    const f = plan.files.find((x) => x.path === p);
    if (!f) throw new Error(`plan has no ${p}`);
    return f.content;
  };

  it('lists the packages the three services, the kernel and first boot need', () => {
    for (const p of ['postgresql', 'mosquitto', 'openssl', 'linux-image-amd64', 'systemd-sysv', 'grub-pc-bin', 'grub-efi-amd64-bin', 'cloud-init', 'openssh-server', 'nodejs', 'age', 'zstd', 'pgbackrest']) expect(plan.packages).toContain(p);
    const d = raw();
    d.extraPackages = ['htop', 'postgresql'];
    const withExtra = planAppliance(validateApplianceDefinition(d), '/bin/true');
    expect(withExtra.packages).toContain('htop');
    expect(withExtra.packages.filter((p) => p === 'postgresql')).toHaveLength(1);
    expect(mmdebstrapArgs(withExtra, '/o', '/r')).toContain(`--include=${withExtra.packages.join(',')}`);
  });

  it('lists every file that goes into the image, from the shared renderers', () => {
    expect(plan.files.map((f) => f.path).sort()).toEqual([
      '/boot/grub/grub.cfg', '/etc/cloud/cloud.cfg.d/99-e4ops.cfg',
      '/etc/e4ops/appliance.yaml', '/etc/e4ops/post-bootstrap.sh', '/etc/e4ops/postgresql.conf', '/etc/fstab', '/etc/hostname', '/etc/hosts',
      '/etc/mosquitto/mosquitto.conf', '/etc/ssh/sshd_config.d/50-e4ops.conf', '/etc/systemd/network/80-e4ops-dhcp.network',
      `/etc/systemd/system/${C2_SERVICE}`, `/etc/systemd/system/${FIRST_BOOT_SERVICE}`,
      '/etc/systemd/system/mosquitto.service.d/e4ops.conf', '/etc/systemd/system/ssh.service.d/e4ops-host-keys.conf',
      '/opt/e4/configs/config.yaml', '/usr/local/bin/e4ops', '/usr/local/sbin/e4ops-firstboot',
    ]);
    expect(file(APPLIANCE_PATHS.grubConfig)).toMatch(/linux \/vmlinuz root=LABEL=e4root ro console=tty0 console=ttyS0/);
    expect(file('/etc/cloud/cloud.cfg.d/99-e4ops.cfg')).toContain('datasource_list: [NoCloud, ConfigDrive, None]');
    expect(file(`/etc/systemd/system/${C2_SERVICE}`)).toContain('ExecStartPre=+/usr/local/bin/e4ops appliance upgrade-check --guard');
    expect(file(`/etc/systemd/system/${FIRST_BOOT_SERVICE}`)).toMatch(/^After=.*cloud-config\.service/m);
    const c2 = YAML.parse(file(APPLIANCE_PATHS.c2ConfigFile));
    expect(c2['db-host']).toBe('127.0.0.1');
    expect(c2['db-database']).toBe('e4');
    expect(c2['mqtt-broker']).toBe('tcp://127.0.0.1:1883');
    expect(c2['http-host-port']).toBe('0.0.0.0:8888');
    expect(c2['http-grpc-host-port']).toBe('127.0.0.1:5555');
    expect(c2['grpc-cert']).toBe('c2.crt');
    expect(file(APPLIANCE_PATHS.mosquittoConf)).toMatch(/^listener 1883$/m);
    expect(file(APPLIANCE_PATHS.mosquittoConf)).toContain(`password_file ${APPLIANCE_PATHS.mosquittoPasswd}`);
    expect(file(APPLIANCE_PATHS.postgresConf)).toContain("listen_addresses = '127.0.0.1'");
    expect(file(`/etc/systemd/system/${C2_SERVICE}`)).toContain(`EnvironmentFile=${APPLIANCE_PATHS.c2EnvFile}`);
    expect(plan.enableUnits).toEqual(expect.arrayContaining([C2_SERVICE, FIRST_BOOT_SERVICE, 'mosquitto.service']));
  });

  it('puts no secret into the image: first boot makes them', () => {
    const c2 = YAML.parse(file(APPLIANCE_PATHS.c2ConfigFile));
    expect(c2['mqtt-password']).toBe(MQTT_PASSWORD_PLACEHOLDER);
    expect(c2).not.toHaveProperty('db-password');
    expect(c2).not.toHaveProperty('db-encryption-passphrase');
    const paths = plan.files.map((f) => f.path);
    for (const generated of [APPLIANCE_PATHS.c2EnvFile, APPLIANCE_PATHS.mosquittoPasswd, '/opt/e4/configs/c2.key', '/opt/e4/configs/c2.crt']) {
      expect(paths).not.toContain(generated);
    }
    for (const f of plan.files) {
      expect(f.content, f.path).not.toMatch(/-----BEGIN [A-Z ]*PRIVATE KEY-----/);
      expect(f.content, f.path).not.toMatch(/\$7\$101\$/); // a mosquitto password hash
      expect(f.content, f.path).not.toMatch(/(PASSWORD|PASSPHRASE)=[A-Za-z0-9+]{8,}/); // an assignment of a literal value
      expect(f.content, f.path).not.toMatch(/\b[0-9a-f]{32,}\b/); // hex secrets like the ones first boot makes
    }
    const fb = file(APPLIANCE_PATHS.firstBootScript);
    expect(fb).toContain('E4C2_DB_ENCRYPTION_PASSPHRASE=$(secret 32)'); // 32 random bytes, >= 16 as C2 requires
    expect(fb).toContain(`s/${MQTT_PASSWORD_PLACEHOLDER}/$MQTT_PASSWORD/`);
  });

  it('the first-boot script is valid sh', () => {
    const f = path.join(scratch, 'firstboot.sh');
    fs.writeFileSync(f, file(APPLIANCE_PATHS.firstBootScript));
    const r = spawnSync('sh', ['-n', f], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  const haveAnalyze = spawnSync('systemd-analyze', ['--version']).status === 0;
  it.skipIf(!haveAnalyze)('rendered units pass systemd-analyze verify (in a root with the host units)', () => {
    const root = path.join(scratch, 'root');
    stagePlanFiles(plan, root);
    fs.mkdirSync(path.join(root, 'usr/lib/systemd'), { recursive: true });
    fs.cpSync('/lib/systemd/system', path.join(root, 'usr/lib/systemd/system'), { recursive: true, verbatimSymlinks: true });
    const units = [`etc/systemd/system/${C2_SERVICE}`, `etc/systemd/system/${FIRST_BOOT_SERVICE}`];
    // The backup pair as first boot renders it when the settings enable it.
    const d = raw();
    d.settings.backup = { enabled: true, targets: [{ name: 'l', type: 'local', path: '/var/backups/e4ops' }], ageRecipients: [AGE], drill: { enabled: true } };
    d.settings.postgres = { pitr: { enabled: true } };
    writeFilesUnder(renderSettingsFiles(validateApplianceDefinition(d)), root);
    units.push(`etc/systemd/system/${BACKUP_SERVICE}`, `etc/systemd/system/${BACKUP_TIMER}`, `etc/systemd/system/${DRILL_SERVICE}`, `etc/systemd/system/${DRILL_TIMER}`,
      ...PITR_JOBS.flatMap((j) => [`etc/systemd/system/${j}.service`, `etc/systemd/system/${j}.timer`]));
    // What the packages and the toolkit put there in the real image.
    for (const exe of ['usr/local/bin/e4ops', 'usr/bin/node']) {
      fs.mkdirSync(path.dirname(path.join(root, exe)), { recursive: true });
      fs.writeFileSync(path.join(root, exe), '#!/bin/sh\n', { mode: 0o755 });
    }
    const ok = spawnSync('systemd-analyze', ['verify', '--man=no', `--root=${root}`, ...units], { cwd: root, encoding: 'utf8' });
    expect(ok.stderr).toBe('');
    expect(ok.status).toBe(0);
    // The same check fails on a broken unit: it is not a rubber stamp.
    fs.writeFileSync(path.join(root, 'etc/systemd/system/broken.service'),
      renderSystemdUnit({ Service: { ExecStart: '/opt/nowhere/c2', Bogus: 1 } }));
    const bad = spawnSync('systemd-analyze', ['verify', '--man=no', `--root=${root}`, 'etc/systemd/system/broken.service'], { cwd: root, encoding: 'utf8' });
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/Unknown key 'Bogus'/);
  });

  it('the unit renderer refuses values that would inject directives', () => {
    expect(() => renderSystemdUnit({ Service: { ExecStart: '/bin/c2\nUser=root' } })).toThrow(/\[Service\] ExecStart: value contains a newline/);
  });
});
