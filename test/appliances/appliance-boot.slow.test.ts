// Slow (E4OPS_SLOW_TESTS=1): build the real c2-minimal image (Debian trixie) with mmdebstrap, look inside
// it for secrets, check its OVA without ovftool, and boot the qcow2 with qemu the way a hypervisor
// does: firmware, then the disk's own GRUB (no -kernel). SeaBIOS and OVMF (UEFI) each boot with a
// cloud-init NoCloud seed (host name, SSH key, settings enabling the backup timer), checked over SSH
// through forwarded loopback ports; a third boot with a bad settings block must keep C2 stopped.
// TCG (software emulation): KVM guests hang on this project's machines.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { validateApplianceDefinition } from '../../appliances/appliance-definition.ts';
import { bootAppliance, OVMF_CODE, type BootedAppliance, type Firmware } from '../../appliances/boot-appliance.ts';
import { planAppliance, buildApplianceImage, APPLIANCE_PATHS, MQTT_PASSWORD_PLACEHOLDER, ADMIN_USER, BACKUP_TIMER, DRILL_SERVICE, DRILL_TIMER, PITR_JOBS, C2_SERVICE, type BuildResult } from '../../appliances/build-appliance.ts';
import { checkOva, readTar } from '../../appliances/ova.ts';
import { renderUserData, renderMetaData, type SeedSettings } from '../../appliances/cloud-init-seed.ts';
import { diskLayout } from '../../appliances/disk-image.ts';
import { c2BinaryDir, c2BinaryAvailable, pinnedC2Version, REPO_ROOT } from '../../lib/servers/c2.ts';
import { C2_HEALTH_PATH } from '../../lib/render/c2-replica.ts';
import { freeLoopbackPort } from '../../lib/ports.ts';

const SLOW = !!process.env.E4OPS_SLOW_TESTS;
const which = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
/** Tool → the Debian package that has it (scripts/setup.sh --slow installs them all). */
const TOOLS: Array<[string, string]> = [
  ['mmdebstrap', 'mmdebstrap'], ['qemu-system-x86_64', 'qemu-system-x86'], ['qemu-img', 'qemu-utils'], ['sfdisk', 'fdisk'],
  ['mkfs.fat', 'dosfstools'], ['mcopy', 'mtools'], ['mke2fs', 'e2fsprogs'], ['debugfs', 'e2fsprogs'], ['cloud-localds', 'cloud-image-utils'],
  ['genisoimage', 'genisoimage'], ['ssh', 'openssh-client'], ['age-keygen', 'age'], ['xmllint', 'libxml2-utils'],
];
function missingPrerequisites(): string[] {
  const m = TOOLS.filter(([t]) => !which(t)).map(([t, p]) => `${t} (package ${p})`);
  if (!fs.existsSync(OVMF_CODE)) m.push(`${OVMF_CODE} (package ovmf)`);
  if (process.getuid?.() !== 0) m.push('root (mmdebstrap --mode=root)');
  if (!c2BinaryAvailable()) m.push('the C2 binary (bash scripts/build-c2.sh)');
  return m;
}

function get(url: string): Promise<{ status: number; body: string; sans: string }> {
  return new Promise((resolve, reject) => {
    // The certificate is made on the VM at first boot, so no CA is known here; the SANs are checked below.
    const req = https.get(url, { rejectUnauthorized: false, timeout: 5000 }, (res) => {
      const sans = (res.socket as TLSSocket).getPeerCertificate().subjectaltname ?? '';
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, sans }));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
  });
}

describe.skipIf(!SLOW)('VM appliance (trixie): real build, OVA checks, BIOS and UEFI boots with cloud-init', () => {
  let work = '';
  let built: BuildResult;
  let sshKey = '';
  let ageRecipient = '';
  const vms: BootedAppliance[] = [];
  const output = (f: 'qcow2' | 'ova') => built.outputs.find((o) => o.format === f)!.file;

  beforeAll(async () => {
    const missing = missingPrerequisites();
    if (missing.length) throw new Error(`the appliance slow test needs: ${missing.join(', ')}. Fix: bash scripts/setup.sh --slow`);
    const base = process.env.E4OPS_APPLIANCE_WORK ?? os.tmpdir();
    work = fs.mkdtempSync(path.join(base, 'e4ops-appliance-boot-'));
    sshKey = path.join(work, 'id_ed25519');
    spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', sshKey], { stdio: 'ignore' });
    const ageOut = spawnSync('age-keygen', ['-o', path.join(work, 'age.key')], { encoding: 'utf8' });
    ageRecipient = /age1[0-9a-z]+/.exec(ageOut.stderr + ageOut.stdout)![0];
    const doc = YAML.parse(fs.readFileSync(path.join(REPO_ROOT, 'appliances', 'c2-minimal', 'appliance.yaml'), 'utf8'));
    doc.image.formats = ['qcow2', 'ova'];
    doc.image.sizeMb = 2560;
    const plan = planAppliance(validateApplianceDefinition(doc), path.join(c2BinaryDir(), 'c2'));
    const reuse = process.env.E4OPS_APPLIANCE_REUSE;
    if (reuse) {
      // A directory kept by an earlier run (E4OPS_KEEP_APPLIANCE=1): boot and check that build again.
      const report = JSON.parse(fs.readFileSync(path.join(reuse, 'out', 'build-report.json'), 'utf8'));
      built = { ...report, outputs: report.outputs.map((o: { file: string }) => ({ ...o, file: path.join(reuse, 'out', o.file) })), raw: path.join(reuse, 'build', 'c2-minimal.raw') };
      console.log(`reusing the build in ${reuse} (built in ${built.seconds.toFixed(1)} s)`);
      return;
    }
    built = await buildApplianceImage(plan, { outDir: path.join(work, 'out'), workDir: path.join(work, 'build'), keepRaw: true, c2ModuleVersion: pinnedC2Version(), progress: (l) => console.log(l) });
    console.log(`appliance built in ${built.seconds.toFixed(1)} s: ${JSON.stringify(built.steps)}; ${built.outputs.map((o) => `${o.format} ${(o.bytes / 2 ** 20).toFixed(0)} MiB`).join(', ')}`);
  }, 3_600_000); // 453 s measured on a quiet 2-core machine, 1357 s with ~20 other jobs running

  afterAll(async () => {
    for (const vm of vms) await vm.stop();
    if (process.env.E4OPS_KEEP_APPLIANCE) console.log(`kept ${work}`);
    else if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  const rootFs = () => `${built.raw}?offset=${diskLayout(2560).root.startMiB * 2 ** 20}`;
  const debugfs = (cmd: string) => spawnSync('debugfs', ['-R', cmd, rootFs()], { encoding: 'utf8' });

  it('the image holds the toolkit and the rendered config with the placeholder, and none of the first-boot secrets', () => {
    const cfg = YAML.parse(debugfs(`cat ${APPLIANCE_PATHS.c2ConfigFile}`).stdout);
    expect(cfg['mqtt-password']).toBe(MQTT_PASSWORD_PLACEHOLDER);
    for (const p of [APPLIANCE_PATHS.c2EnvFile, APPLIANCE_PATHS.mosquittoPasswd, '/opt/e4/configs/c2.key', APPLIANCE_PATHS.firstBootDone, '/etc/ssh/ssh_host_ed25519_key']) {
      const r = debugfs(`stat ${p}`);
      expect(r.stderr + r.stdout, p).toMatch(/File not found/);
    }
    expect(debugfs('ls /var/lib/postgresql/17/main').stderr).toMatch(/File not found/);
    expect(debugfs(`stat ${APPLIANCE_PATHS.toolkitDir}/node_modules/tsx/package.json`).stdout).toMatch(/Inode:/);
    expect(debugfs(`stat ${APPLIANCE_PATHS.toolkitDir}/node_modules/vitest/package.json`).stderr).toMatch(/File not found/); // --omit=dev
    expect(debugfs('cat /etc/machine-id').stdout).toBe('');
  });

  it('each output has a matching .sha256 file; the qcow2 is within 700 MB', () => {
    for (const o of built.outputs) {
      const line = fs.readFileSync(`${o.file}.sha256`, 'utf8');
      expect(line).toBe(`${o.sha256}  ${path.basename(o.file)}\n`);
      expect(spawnSync('sha256sum', ['-c', `${path.basename(o.file)}.sha256`], { cwd: path.dirname(o.file) }).status).toBe(0);
    }
    expect(fs.statSync(output('qcow2')).size).toBeLessThanOrEqual(700e6);
  });

  it('the OVA passes the ovftool-free checks, its OVF validates against the schema, qemu-img reads its VMDK as the disk', () => {
    const r = checkOva(output('ova'), { compareTo: built.raw });
    expect(r.problems).toEqual([]);
    expect(r.members.map((m) => path.extname(m))).toEqual(['.ovf', '.mf', '.vmdk']);
    const ovf = path.join(work, 'appliance.ovf');
    fs.writeFileSync(ovf, r.ovf);
    const lint = spawnSync('xmllint', ['--noout', '--schema', path.join(REPO_ROOT, 'appliances', 'ovf', 'ovf-envelope-subset.xsd'), ovf], { encoding: 'utf8' });
    expect(lint.stderr).toMatch(/validates/);
    expect(lint.status).toBe(0);
    const vmdkMember = readTar(output('ova')).find((m) => m.name.endsWith('.vmdk'))!;
    const vmdk = path.join(work, 'disk.vmdk');
    const fd = fs.openSync(output('ova'), 'r');
    const buf = Buffer.alloc(vmdkMember.size);
    fs.readSync(fd, buf, 0, buf.length, vmdkMember.offset);
    fs.closeSync(fd);
    fs.writeFileSync(vmdk, buf);
    const cmp = spawnSync('qemu-img', ['compare', '-f', 'vmdk', '-F', 'raw', vmdk, built.raw!], { encoding: 'utf8' });
    expect(cmp.stdout + cmp.stderr).toMatch(/Images are identical/);
    fs.rmSync(vmdk);
  });

  async function bootWithSeed(firmware: Firmware, name: string, settings: Record<string, unknown>, files: SeedSettings['files'] = []) {
    const seedDir = path.join(work, `seed-${name}`);
    fs.mkdirSync(seedDir);
    const seed = { hostname: name, sshAuthorizedKeys: [fs.readFileSync(`${sshKey}.pub`, 'utf8')], settings, instanceId: `iid-${name}`, files };
    fs.writeFileSync(path.join(seedDir, 'user-data'), renderUserData(seed));
    fs.writeFileSync(path.join(seedDir, 'meta-data'), renderMetaData(seed));
    const seedImg = path.join(seedDir, 'seed.img');
    const ls = spawnSync('cloud-localds', [seedImg, path.join(seedDir, 'user-data'), path.join(seedDir, 'meta-data')], { encoding: 'utf8' });
    expect(ls.status, ls.stderr).toBe(0);
    const sshPort = await freeLoopbackPort();
    const httpPort = await freeLoopbackPort();
    const serialLog = path.join(work, `serial-${name}.log`);
    const vm = bootAppliance({
      image: output('qcow2'), format: 'qcow2', firmware, serialLog, seed: seedImg, snapshot: true, accel: 'tcg', memoryMb: 1536,
      forwards: [{ hostPort: sshPort, guestPort: 22 }, { hostPort: httpPort, guestPort: 8888 }],
    });
    vms.push(vm);
    // Asynchronous: the three VMs are driven side by side, and a blocked event loop stalls the others' probes.
    const ssh = (cmd: string) => new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn('ssh', ['-i', sshKey, '-p', String(sshPort), '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null',
        '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=20', '-o', 'LogLevel=ERROR', `${ADMIN_USER}@127.0.0.1`, cmd], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      const timer = setTimeout(() => child.kill('SIGKILL'), 900_000); // a backup under TCG on a loaded host took 7 min
      child.on('close', (status) => { clearTimeout(timer); resolve({ status, stdout, stderr }); });
    });
    return { vm, ssh, httpPort, serialLog, t0: Date.now() };
  }

  async function waitFor<T>(what: string, vm: BootedAppliance, seconds: number, probe: () => Promise<T | undefined> | T | undefined): Promise<T> {
    const deadline = Date.now() + seconds * 1000;
    for (;;) {
      if (vm.qemu.exitCode !== null) throw new Error(`qemu exited ${vm.qemu.exitCode}: ${vm.stderr()}\nserial tail:\n${vm.serial().slice(-3000)}`);
      if (/Kernel panic/.test(vm.serial())) throw new Error(`${what}: the guest kernel panicked\nserial tail:\n${vm.serial().slice(-3000)}`);
      const v = await probe();
      if (v !== undefined) return v;
      if (Date.now() > deadline) throw new Error(`${what}: not within ${seconds} s under TCG\nserial tail:\n${vm.serial().slice(-4000)}`);
      await new Promise((r) => setTimeout(r, 2000));
    }
  }

  // Backups with the weekly drill (the identity comes with the seed, as an operator would write it), and PITR.
  const goodSettings = () => ({
    backup: { enabled: true, targets: [{ name: 'local', type: 'local', path: '/var/backups/e4ops' }], ageRecipients: [ageRecipient], drill: { enabled: true } },
    postgres: { pitr: { enabled: true } },
  });
  const drillIdentity = () => [{ path: '/etc/e4ops/secrets/drill-identity.age', content: fs.readFileSync(path.join(work, 'age.key'), 'utf8') }];

  // The three boots are independent (each on its own snapshot overlay and ports): run them side by side.
  for (const firmware of ['bios', 'uefi'] as const) {
    it.concurrent(`${firmware === 'bios' ? 'SeaBIOS' : 'OVMF (UEFI)'}: boots from the disk alone; cloud-init sets host, key and settings; C2 serves; the backup timer runs a backup`, async () => {
      const name = `c2-${firmware}`;
      const { vm, ssh, httpPort, t0 } = await bootWithSeed(firmware, name, goodSettings(), drillIdentity());
      const served = await waitFor('C2 answering over HTTPS', vm, 1800, async () => {
        try {
          const r = await get(`https://127.0.0.1:${httpPort}${C2_HEALTH_PATH}`);
          return r.status === 200 ? r : undefined;
        } catch { return undefined; }
      });
      console.log(`${firmware}: boot to C2 serving ${((Date.now() - t0) / 1000).toFixed(1)} s (TCG)`);
      expect(JSON.parse(served.body)).toHaveProperty('count');
      expect(served.sans).toContain(`DNS:${name}`);
      const serial = vm.serial();
      expect(serial).toMatch(firmware === 'uefi' ? /BdsDxe/ : /SeaBIOS/);
      expect(serial).toContain('GNU GRUB');
      expect(serial).toContain('e4ops-firstboot: done');
      await waitFor('SSH with the seed key', vm, 300, async () => ((await ssh('true')).status === 0 ? true : undefined));
      expect((await ssh('hostname')).stdout.trim()).toBe(name);
      // cloud-init has finished its last stage before the units are judged.
      await ssh('cloud-init status --wait >/dev/null 2>&1 || true');
      const timers = (await ssh('systemctl list-timers --all --no-legend')).stdout;
      for (const t of [BACKUP_TIMER, DRILL_TIMER, ...PITR_JOBS.map((j) => `${j}.timer`)]) expect(timers, t).toContain(t);
      const run = await ssh('sudo systemctl start e4ops-backup.service && echo started');
      expect(run.stdout + run.stderr, (await ssh('sudo journalctl -u e4ops-backup.service --no-pager | tail -n 20')).stdout).toContain('started');
      const list = await ssh(`cd ${APPLIANCE_PATHS.toolkitDir} && sudo node --import tsx scripts/backup.ts list --target /var/backups/e4ops --json`);
      expect(list.status, list.stderr).toBe(0);
      const sets = JSON.parse(list.stdout)[0].sets as Array<{ status: string; inventory: { clients: number } }>;
      expect(sets.map((x) => x.status)).toEqual(['complete']);
      // PITR: first boot created the stanza and started a full backup; starting the oneshot again waits for it.
      const full = await ssh('sudo systemctl start e4ops-pitr-full.service && echo full-ok');
      expect(full.stdout + full.stderr, (await ssh('sudo journalctl -u e4ops-pitr-full.service -u e4ops-firstboot.service --no-pager | grep -i -E "pgbackrest|pitr" | tail -n 20')).stdout).toContain('full-ok');
      const pitrInfo = await ssh(`sudo e4ops pitr info --json --pgbackrest-config ${APPLIANCE_PATHS.pgbackrestConfig} --stanza c2`);
      expect(pitrInfo.status, pitrInfo.stderr).toBe(0);
      expect((JSON.parse(pitrInfo.stdout).sets as Array<{ type: string }>).map((x) => x.type)).toContain('full');
      const pitrCheck = await ssh('sudo systemctl start e4ops-pitr-check.service && echo check-ok');
      expect(pitrCheck.stdout + pitrCheck.stderr, (await ssh('sudo journalctl -u e4ops-pitr-check.service --no-pager | tail -n 20')).stdout).toContain('check-ok');
      if (firmware === 'bios') {
        // The scheduled drill, run now: restores the backup above into scratch servers, every key opens, C2 serves it.
        const drill = await ssh(`sudo systemctl start ${DRILL_SERVICE} && sudo cat ${APPLIANCE_PATHS.drillReport}`);
        expect(drill.status, drill.stderr + (await ssh(`sudo journalctl -u ${DRILL_SERVICE} --no-pager | tail -n 40`)).stdout).toBe(0);
        const report = JSON.parse(drill.stdout);
        expect(report.ok).toBe(true);
        expect(report.checks.map((c: { name: string }) => c.name)).toContain('c2-serves-restored-data');
      }
      const check = await ssh('sudo e4ops appliance upgrade-check');
      expect(check.stdout).toMatch(/PostgreSQL binaries: 17; data: 17/);
      expect(check.stdout).toContain('result: ok');
      const failed = await ssh('systemctl --failed --no-legend --plain');
      expect(failed.stdout.trim()).toBe('');
      expect((await ssh(`systemctl is-active ${C2_SERVICE}`)).stdout.trim()).toBe('active');
      await vm.stop();
    }, 2_400_000);
  }

  it.concurrent('a bad settings block fails first boot naming the key, on the console and in the journal; C2 stays stopped', async () => {
    const bad = { publish: { httpPort: 99999 } };
    const { vm, ssh } = await bootWithSeed('bios', 'c2-bad', bad);
    const serial = await waitFor('first boot reporting the bad block', vm, 1800, () => (/e4ops-firstboot: FAILED/.test(vm.serial()) ? vm.serial() : undefined));
    expect(serial).toContain('settings.publish.httpPort');
    await waitFor('SSH with the seed key', vm, 300, async () => ((await ssh('true')).status === 0 ? true : undefined));
    const journal = await ssh('sudo journalctl -b -u e4ops-firstboot --no-pager');
    expect(journal.stdout).toContain('settings.publish.httpPort');
    expect((await ssh(`systemctl is-active ${C2_SERVICE}`)).stdout.trim()).not.toBe('active');
    expect((await ssh('sudo test -e /etc/e4ops/secrets/c2.env && echo has-secrets || echo no-secrets')).stdout.trim()).toBe('no-secrets');
    await vm.stop();
  }, 2_400_000);
});
