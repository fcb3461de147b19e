// First boot's settings step, the upgrade check and the backup schedule, on scratch roots (the VM run
// is the slow test): a cloud-init block merged over the image's settings renders through the build's
// renderers; a bad block exits 2 naming the key and writes nothing; PostgreSQL data without its
// binaries is refused (exit 9), which is what keeps C2 stopped.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { loadApplianceDefinition } from '../../appliances/appliance-definition.ts';
import { planAppliance, writeFilesUnder, APPLIANCE_PATHS, BACKUP_SERVICE, BACKUP_TIMER, DRILL_SERVICE, DRILL_TIMER, PITR_JOBS } from '../../appliances/build-appliance.ts';
import { renderUserData, renderMetaData } from '../../appliances/cloud-init-seed.ts';
import { mergeSettings } from '../../appliances/apply-settings.ts';
import { cronToOnCalendar } from '../../lib/render/systemd-units.ts';
import { runCommand } from '../../lib/cli/command.ts';
import { command as applianceCommand } from '../../scripts/appliance.ts';
import { REPO_ROOT } from '../../lib/servers/c2.ts';

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-firstboot-'));
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));
const DEFINITION = path.join(REPO_ROOT, 'appliances', 'c2-minimal', 'appliance.yaml');
const AGE = 'age12dxr4kurhj0dk2asld78q4mx9r8rrg3kz56s2qt9gef982d00gjs6r5stk'; // a real public key (its secret key was not kept): recipients are checked to their bech32 checksum

/** A root holding what the image holds (its planned files), as first boot finds it. */
function imageRoot(name: string): string {
  const root = path.join(scratch, name);
  writeFilesUnder(planAppliance(loadApplianceDefinition(DEFINITION), '/bin/true').files, root);
  return root;
}

async function e4ops(...argv: string[]) {
  let stdout = '';
  let stderr = '';
  const code = await runCommand(applianceCommand, argv, { stdout: (t) => void (stdout += t), stderr: (t) => void (stderr += t) });
  return { code, stdout, stderr };
}

const cloudInitBlock = (root: string, block: unknown) => {
  // What cloud-init's write_files makes of the seed's user-data.
  const userData = YAML.parse(renderUserData({ hostname: 'c2-lab', sshAuthorizedKeys: ['ssh-ed25519 AAAAC3Nza test'], settings: block as Record<string, unknown>, instanceId: 'iid-1' }));
  const wf = userData.write_files[0];
  fs.writeFileSync(path.join(root, wf.path), wf.content);
};

describe('e4ops appliance apply-settings (first boot)', () => {
  it('merges the cloud-init block over the image settings and renders the configs and the backup timer', async () => {
    const root = imageRoot('good');
    cloudInitBlock(root, { publish: { httpPort: 8443 }, backup: { enabled: true, schedule: '30 1 * * *', targets: [{ name: 'local', type: 'local', path: '/var/backups/e4ops' }], ageRecipients: [AGE] } });
    const r = await e4ops('apply-settings', '--root', root, '--hostname', 'c2-lab');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const c2 = YAML.parse(fs.readFileSync(path.join(root, APPLIANCE_PATHS.c2ConfigFile), 'utf8'));
    expect(c2['http-host-port']).toBe('0.0.0.0:8443');
    expect(c2['db-database']).toBe('e4'); // from the image's settings, untouched by the block
    const job = JSON.parse(fs.readFileSync(path.join(root, APPLIANCE_PATHS.backupJobConfig), 'utf8'));
    expect(job.targets).toEqual([{ name: 'local', type: 'local', path: '/var/backups/e4ops' }]);
    expect(job.ageRecipients).toEqual([AGE]);
    expect(fs.readFileSync(path.join(root, `etc/systemd/system/${BACKUP_TIMER}`), 'utf8')).toContain('OnCalendar=*-*-* 01:30:00');
    expect(fs.readFileSync(path.join(root, `etc/systemd/system/${BACKUP_SERVICE}`), 'utf8')).toContain('ExecStart=/usr/bin/node --max-semi-space-size=1 --expose-gc --import tsx /opt/e4ops/scripts/backup.ts run --config /etc/e4ops/backup.json');
    expect(fs.readFileSync(path.join(root, APPLIANCE_PATHS.runtimeEnv), 'utf8')).toBe("E4OPS_HOSTNAME='c2-lab'\nE4OPS_CERT_SAN='DNS:c2-lab,DNS:c2,DNS:localhost,IP:127.0.0.1'\nE4OPS_LOCAL_BACKUP_TARGETS='/var/backups/e4ops'\n");
    expect(r.stdout).toContain('settings ok (cloud-init block merged over the image definition)');
  });

  it('a bad block exits 2 naming every bad key and the file, and changes no file', async () => {
    const root = imageRoot('bad');
    cloudInitBlock(root, { publish: { httpPort: 99999 }, c2: { logLevel: 'loud' } });
    const before = fs.readFileSync(path.join(root, APPLIANCE_PATHS.c2ConfigFile), 'utf8');
    const r = await e4ops('apply-settings', '--root', root, '--hostname', 'c2-lab');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`settings block ${path.join(root, APPLIANCE_PATHS.settingsFile)}`);
    expect(r.stderr).toMatch(/settings\.publish\.httpPort: must be <= 65535/);
    expect(r.stderr).toMatch(/settings\.c2\.logLevel: must be one of/);
    expect(fs.readFileSync(path.join(root, APPLIANCE_PATHS.c2ConfigFile), 'utf8')).toBe(before);
    expect(fs.existsSync(path.join(root, APPLIANCE_PATHS.runtimeEnv))).toBe(false);
  });

  it('an appliance rule is enforced at first boot too (a relative backup path), and YAML that is not a mapping is named', async () => {
    const root = imageRoot('rule');
    cloudInitBlock(root, { backup: { enabled: true, targets: [{ name: 'l', type: 'local', path: 'backups' }], ageRecipients: [AGE] } });
    const r = await e4ops('apply-settings', '--root', root);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/settings\.backup\.targets\[0\]\.path: .*absolute/);
    fs.writeFileSync(path.join(root, APPLIANCE_PATHS.settingsFile), '- just\n- a list\n');
    const l = await e4ops('apply-settings', '--root', root);
    expect(l.code).toBe(2);
    expect(l.stderr).toMatch(/\(top level\) is not a mapping/);
  });

  it('without a cloud-init block the image settings apply as built; a block switching backups off removes the timer', async () => {
    const root = imageRoot('plain');
    const r = await e4ops('apply-settings', '--root', root, '--hostname', 'e4c2');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('image definition only');
    fs.writeFileSync(path.join(root, `etc/systemd/system/${BACKUP_TIMER}`), 'stale');
    cloudInitBlock(root, { backup: { enabled: false } });
    const off = await e4ops('apply-settings', '--root', root, '--hostname', 'e4c2');
    expect(off.code).toBe(0);
    expect(off.stdout).toContain(`removed /etc/systemd/system/${BACKUP_TIMER}`);
    expect(fs.existsSync(path.join(root, `etc/systemd/system/${BACKUP_TIMER}`))).toBe(false);
  });

  it('a block enabling the drill and PITR renders their units and pgbackrest.conf; switching them off removes every one', async () => {
    const root = imageRoot('jobs');
    const backup = { enabled: true, targets: [{ name: 'local', type: 'local', path: '/var/backups/e4ops' }], ageRecipients: [AGE] };
    cloudInitBlock(root, { backup: { ...backup, drill: { enabled: true, schedule: '5 6 * * 1' } }, postgres: { pitr: { enabled: true, archiveTimeoutSeconds: 30 } } });
    const r = await e4ops('apply-settings', '--root', root, '--hostname', 'c2-lab');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const read = (p: string) => fs.readFileSync(path.join(root, p), 'utf8');
    expect(read(`etc/systemd/system/${DRILL_TIMER}`)).toContain('OnCalendar=Mon *-*-* 06:05:00');
    expect(read(`etc/systemd/system/${DRILL_SERVICE}`)).toMatch(/^ExecStart=\/usr\/bin\/node --import tsx \/opt\/e4ops\/scripts\/restore-drill\.ts --target \/var\/backups\/e4ops --identity \/etc\/e4ops\/secrets\/drill-identity\.age --passphrase-file \/etc\/e4ops\/secrets\/c2-db-passphrase --report \S+ --with-c2 --c2-binary \/opt\/e4\/bin\/c2$/m);
    expect(read(`etc/systemd/system/${DRILL_SERVICE}.d/appliance.conf`)).toContain(`Requires=e4ops-firstboot.service`);
    const conf = read(APPLIANCE_PATHS.pgbackrestConfig);
    expect(conf).toMatch(/^pg1-path=\/var\/lib\/postgresql\/17\/main$/m);
    expect(conf).toMatch(/^repo1-cipher-type=aes-256-cbc$/m);
    expect(conf).not.toMatch(/^repo1-cipher-pass=/m); // made at first boot, in conf.d
    expect(read(APPLIANCE_PATHS.postgresConf)).toMatch(/^archive_timeout = 30$/m);
    expect(read(APPLIANCE_PATHS.postgresConf)).toMatch(/^archive_command = '.*pgbackrest .*archive-push %p'$/m);
    for (const j of PITR_JOBS) expect(read(`etc/systemd/system/${j}.service`)).toContain('/opt/e4ops/scripts/pitr.ts');
    expect(read('etc/systemd/system/e4ops-pitr-check.service')).toContain('EnvironmentFile=-/etc/e4ops/secrets/backup.env');
    cloudInitBlock(root, { backup: { ...backup, drill: { enabled: false } }, postgres: { pitr: { enabled: false } } });
    const off = await e4ops('apply-settings', '--root', root, '--hostname', 'c2-lab');
    expect(off.code).toBe(0);
    for (const p of [`/etc/systemd/system/${DRILL_TIMER}`, APPLIANCE_PATHS.pgbackrestConfig, ...PITR_JOBS.map((j) => `/etc/systemd/system/${j}.timer`)]) {
      expect(off.stdout).toContain(`removed ${p}`);
      expect(fs.existsSync(path.join(root, p))).toBe(false);
    }
    expect(fs.existsSync(path.join(root, `etc/systemd/system/${BACKUP_TIMER}`))).toBe(true); // backups stay on
    expect(read(APPLIANCE_PATHS.postgresConf)).not.toMatch(/archive_command/);
  });

  it('merges mappings key by key and replaces lists', () => {
    expect(mergeSettings({ a: { b: 1, c: [1, 2] }, d: 1 }, { a: { c: [3] } })).toEqual({ a: { b: 1, c: [3] }, d: 1 });
  });

  it('the seed carries host name, key and settings in the shape cloud-init reads', () => {
    const s = { hostname: 'c2-lab', sshAuthorizedKeys: ['ssh-ed25519 AAAA k\n'], settings: { c2: { logLevel: 'debug' } }, instanceId: 'iid-7' };
    const u = renderUserData(s);
    expect(u.startsWith('#cloud-config\n')).toBe(true);
    const doc = YAML.parse(u);
    expect(doc).toMatchObject({ hostname: 'c2-lab', ssh_authorized_keys: ['ssh-ed25519 AAAA k'] });
    expect(doc.write_files[0]).toMatchObject({ path: '/etc/e4ops/settings.yaml', permissions: '0640' });
    expect(YAML.parse(doc.write_files[0].content)).toEqual({ c2: { logLevel: 'debug' } });
    expect(renderMetaData(s)).toBe('instance-id: iid-7\nlocal-hostname: c2-lab\n');
    expect(() => renderUserData({ ...s, hostname: 'Bad_Name' })).toThrow(/seed hostname/);
  });
});

describe('e4ops appliance upgrade-check', () => {
  function fakeRoot(name: string, o: { binaries: number[]; data?: number }): string {
    const root = path.join(scratch, name);
    fs.mkdirSync(path.join(root, 'etc/e4ops'), { recursive: true });
    fs.mkdirSync(path.join(root, 'opt/e4/bin'), { recursive: true });
    fs.writeFileSync(path.join(root, APPLIANCE_PATHS.c2Binary), 'c2 binary');
    fs.writeFileSync(path.join(root, APPLIANCE_PATHS.imageRelease), JSON.stringify({
      name: 'c2-minimal', version: '0.1.0', suite: 'trixie', builtAt: '2026-12-02T20:00:00Z', toolkitVersion: '0.1.0',
      c2: { moduleVersion: 'v0.0.0-20190913090940-33c5be11fcd2', sha256: '9b1ec3e1a2d1d0f9a8d0b0c0a0e0f0d0c0b0a09080706050403020100f0e0d0c' },
    }));
    for (const v of o.binaries) {
      fs.mkdirSync(path.join(root, `usr/lib/postgresql/${v}/bin`), { recursive: true });
      fs.writeFileSync(path.join(root, `usr/lib/postgresql/${v}/bin/postgres`), '');
    }
    if (o.data) {
      fs.mkdirSync(path.join(root, `var/lib/postgresql/${o.data}/main`), { recursive: true });
      fs.writeFileSync(path.join(root, `var/lib/postgresql/${o.data}/main/PG_VERSION`), `${o.data}\n`);
    }
    return root;
  }

  it('reports the image, the C2 build and a matching PostgreSQL', async () => {
    const r = await e4ops('upgrade-check', '--root', fakeRoot('match', { binaries: [17], data: 17 }));
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('image: c2-minimal 0.1.0 (Debian trixie');
    expect(r.stdout).toContain('C2: v0.0.0-20190913090940-33c5be11fcd2');
    expect(r.stdout).toContain("(NOT the image's binary)"); // the fake binary is not the recorded one
    expect(r.stdout).toContain('PostgreSQL binaries: 17; data: 17 (/var/lib/postgresql/17/main)');
    expect(r.stdout).toContain('result: ok');
  });

  it('refuses (exit 9) data whose major version has no binaries, naming the versions and the fix; --guard prints only that', async () => {
    const root = fakeRoot('mismatch', { binaries: [17], data: 15 });
    const r = await e4ops('upgrade-check', '--root', root);
    expect(r.code).toBe(9);
    expect(r.stdout).toContain('REFUSED: PostgreSQL data /var/lib/postgresql/15/main is major 15, but only 17 binaries are installed');
    expect(r.stderr).toMatch(/pg_upgradecluster 15 main/);
    const g = await e4ops('upgrade-check', '--root', root, '--guard');
    expect(g.code).toBe(9);
    expect(g.stdout).toBe('');
    const j = await e4ops('upgrade-check', '--root', root, '--json');
    expect(JSON.parse(j.stdout).postgres).toEqual({ binaries: [17], clusters: [{ major: 15, name: 'main', dataDir: '/var/lib/postgresql/15/main' }] });
  });

  it('old data with its binaries still installed runs, with a note to upgrade; no cluster yet is fine', async () => {
    const both = await e4ops('upgrade-check', '--root', fakeRoot('both', { binaries: [15, 17], data: 15 }));
    expect(both.code).toBe(0);
    expect(both.stdout).toContain('note: PostgreSQL data /var/lib/postgresql/15/main is major 15; 17 is installed too');
    const fresh = await e4ops('upgrade-check', '--root', fakeRoot('fresh', { binaries: [17] }));
    expect(fresh.code).toBe(0);
    expect(fresh.stdout).toContain('no PostgreSQL cluster yet');
  });
});

describe('backup schedule as a systemd timer', () => {
  it('turns the cron schedule setting into OnCalendar values systemd accepts', () => {
    const cases: Array<[string, string]> = [
      ['17 3 * * *', '*-*-* 03:17:00'], ['*/15 * * * *', '*-*-* *:00/15:00'], ['0 4 * * 0', 'Sun *-*-* 04:00:00'],
      ['30 2 1,15 * *', '*-*-01,15 02:30:00'], ['0 9-17 * * 1-5', 'Mon..Fri *-*-* 09..17:00:00'],
    ];
    const haveAnalyze = spawnSync('systemd-analyze', ['--version']).status === 0;
    for (const [cron, cal] of cases) {
      expect(cronToOnCalendar(cron)).toBe(cal);
      if (haveAnalyze) expect(spawnSync('systemd-analyze', ['calendar', cal]).status, cal).toBe(0);
    }
    expect(() => cronToOnCalendar('0 3 1 * 1')).toThrow(/restricts both day-of-month and day-of-week/);
    expect(() => cronToOnCalendar('0 25 * * *')).toThrow(/hour 25 is outside 0-23/);
    expect(() => cronToOnCalendar('@daily')).toThrow(/needs 5 cron fields/);
  });
});
