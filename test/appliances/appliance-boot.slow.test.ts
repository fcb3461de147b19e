// Slow (E4OPS_SLOW_TESTS=1): build the real c2-minimal image with mmdebstrap, look inside it for
// secrets, boot it with qemu + KVM (direct kernel boot, user networking forwarded to 127.0.0.1
// only) and check that first boot ran and PostgreSQL, Mosquitto and C2 serve.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import type { TLSSocket } from 'node:tls';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { validateApplianceDefinition } from '../../appliances/appliance-definition.ts';
import { bootAppliance, type BootedAppliance } from '../../appliances/boot-appliance.ts';
import { planAppliance, buildApplianceImage, APPLIANCE_PATHS, MQTT_PASSWORD_PLACEHOLDER, type BuildResult } from '../../appliances/build-appliance.ts';
import { c2BinaryDir, c2BinaryAvailable, REPO_ROOT } from '../../lib/servers/c2.ts';
import { C2_HEALTH_PATH } from '../../lib/render/c2-replica.ts';
import { freeLoopbackPort } from '../../lib/ports.ts';

const which = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const missing = [
  !process.env.E4OPS_SLOW_TESTS && 'E4OPS_SLOW_TESTS=1',
  process.getuid?.() !== 0 && 'root',
  ...['mmdebstrap', 'qemu-system-x86_64', 'qemu-img', 'mkfs.ext4', 'debugfs'].filter((c) => !which(c)),
  !c2BinaryAvailable() && 'C2 binary (bash scripts/build-c2.sh)',
].filter(Boolean);

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

function mqttConnect(port: number, opts: { username?: string; password?: string }): Promise<string> {
  return new Promise((resolve) => {
    const c = mqtt.connect(`mqtt://127.0.0.1:${port}`, { ...opts, reconnectPeriod: 0, connectTimeout: 5000, clientId: `e4ops-test-${process.pid}-${Math.random()}` });
    c.once('connect', () => { c.end(true); resolve('connected'); });
    c.once('error', (err) => { c.end(true); resolve(`error: ${err.message}`); });
  });
}

describe.skipIf(missing.length > 0)(`VM appliance, real build and boot${missing.length ? ` (needs ${missing.join(', ')})` : ''}`, () => {
  let work = '';
  let serialLog = '';
  let built: BuildResult;
  let vm: BootedAppliance | undefined;
  let httpPort = 0;
  let mqttPort = 0;
  let bootSeconds = 0;

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-appliance-boot-'));
    serialLog = path.join(work, 'serial.log');
    const doc = YAML.parse(fs.readFileSync(path.join(REPO_ROOT, 'appliances', 'c2-minimal', 'appliance.yaml'), 'utf8'));
    doc.image.format = 'raw'; // debugfs reads raw ext4 directly
    doc.image.sizeMb = 2048;
    const plan = planAppliance(validateApplianceDefinition(doc), path.join(c2BinaryDir(), 'c2'));
    const lines: string[] = [];
    built = await buildApplianceImage(plan, { outDir: work, progress: (l) => lines.push(l) });
    console.log(`appliance image built in ${built.seconds.toFixed(1)} s`);
  }, 900_000);

  afterAll(async () => {
    await vm?.stop();
    if (process.env.E4OPS_KEEP_APPLIANCE) console.log(`kept ${work}`);
    else if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  const debugfsCat = (p: string) => spawnSync('debugfs', ['-R', `cat ${p}`, built.image], { encoding: 'utf8' });

  it('the image holds the rendered config with the placeholder and none of the first-boot secrets', () => {
    const cfg = YAML.parse(debugfsCat(APPLIANCE_PATHS.c2ConfigFile).stdout);
    expect(cfg['mqtt-password']).toBe(MQTT_PASSWORD_PLACEHOLDER);
    for (const p of [APPLIANCE_PATHS.c2EnvFile, APPLIANCE_PATHS.mosquittoPasswd, '/opt/e4/configs/c2.key', APPLIANCE_PATHS.firstBootDone]) {
      const r = spawnSync('debugfs', ['-R', `stat ${p}`, built.image], { encoding: 'utf8' });
      expect(r.stderr + r.stdout, p).toMatch(/File not found/);
    }
    // No packaged PostgreSQL cluster: first boot makes one per VM.
    expect(spawnSync('debugfs', ['-R', 'ls /var/lib/postgresql/15/main', built.image], { encoding: 'utf8' }).stderr).toMatch(/File not found/);
    expect(debugfsCat(APPLIANCE_PATHS.c2Binary).stdout.length).toBeGreaterThan(1_000_000);
  });

  it('boots; first boot makes the secrets; PostgreSQL, Mosquitto and C2 come up', async () => {
    httpPort = await freeLoopbackPort();
    mqttPort = await freeLoopbackPort();
    const t0 = Date.now();
    vm = await bootAppliance({
      ...built, format: 'raw', serialLog, memoryMb: 1024, snapshot: true,
      forwards: [{ hostPort: httpPort, guestPort: 8888 }, { hostPort: mqttPort, guestPort: 1883 }],
      accel: (process.env.E4OPS_QEMU_ACCEL as 'kvm' | 'tcg' | undefined) ?? 'auto',
      progress: (l) => console.log(l),
    });
    const qemu = vm.qemu;
    // TCG (no usable KVM) boots and makes the RSA key about 10x slower than KVM.
    const limitSeconds = vm.accel === 'kvm' ? 300 : 600;
    const deadline = Date.now() + limitSeconds * 1000;
    let last = '';
    for (;;) {
      if (qemu.exitCode !== null) throw new Error(`qemu exited ${qemu.exitCode}: ${vm.stderr()}\nserial log tail:\n${fs.readFileSync(serialLog, 'utf8').slice(-3000)}`);
      try {
        const r = await get(`https://127.0.0.1:${httpPort}${C2_HEALTH_PATH}`);
        last = `${r.status} ${r.body}`;
        if (r.status === 200) {
          expect(JSON.parse(r.body)).toHaveProperty('count');
          expect(r.sans).toContain('DNS:e4c2');
          expect(r.sans).toContain('IP Address:127.0.0.1');
          break;
        }
      } catch (err) {
        last = (err as Error).message;
      }
      if (Date.now() > deadline) {
        throw new Error(`C2 did not answer ${C2_HEALTH_PATH} within ${limitSeconds} s with ${vm.accel} (last: ${last})\nserial log tail:\n${fs.readFileSync(serialLog, 'utf8').slice(-4000)}`);
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
    bootSeconds = (Date.now() - t0) / 1000;
    console.log(`appliance boot to C2 ready: ${bootSeconds.toFixed(1)} s (qemu accel ${vm.accel})`);
    const serial = fs.readFileSync(serialLog, 'utf8');
    expect(serial).toContain('e4ops-firstboot: done');
    // C2's answer above already went gateway -> gRPC -> PostgreSQL; no unit failed on the way.
    expect(serial.replace(/\x1b\[[0-9;?]*[a-zA-Z]/g, '')).not.toMatch(/\[FAILED\]/);
    // Mosquitto: devices connect anonymously (allowAnonymous default); C2's user needs the password made on the VM.
    expect(await mqttConnect(mqttPort, {})).toBe('connected');
    expect(await mqttConnect(mqttPort, { username: 'c2', password: 'not-the-generated-one' })).toMatch(/^error: .*(Not authorized|Bad username or password)/i);
  }, 700_000);
});
