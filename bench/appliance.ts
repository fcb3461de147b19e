// bench:appliance — builds the c2-minimal appliance (Debian trixie) exactly as `e4ops build-appliance`
// does, and boots its qcow2 under TCG (SeaBIOS, no -kernel, a NoCloud seed) until C2 answers over HTTPS.
// Baselines in the same process tree: a bare `mmdebstrap --variant=minbase` of the same packages into a
// tarball (the floor any Debian image builder pays), and, within the same boot, the time until the
// serial console's login prompt (the OS alone, before first boot's RSA key, initdb and C2).
// Targets: qcow2 <= 700 MB, build <= 300 s on 2 cores. Last stdout line: one JSON object.
// BENCH_APPLIANCE_WORK: scratch directory (default $TMPDIR); BENCH_SKIP_BASELINE=1 skips the bare mmdebstrap.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { loadApplianceDefinition } from '../appliances/appliance-definition.ts';
import { planAppliance, buildApplianceImage } from '../appliances/build-appliance.ts';
import { bootAppliance } from '../appliances/boot-appliance.ts';
import { renderUserData, renderMetaData } from '../appliances/cloud-init-seed.ts';
import { c2BinaryDir, pinnedC2Version } from '../lib/servers/c2.ts';
import { C2_HEALTH_PATH } from '../lib/render/c2-replica.ts';
import { freeLoopbackPort } from '../lib/ports.ts';
import { REPO_ROOT } from '../lib/repo-root.ts';

const repo = REPO_ROOT;
const say = (s: string) => process.stderr.write(s + '\n');
const work = fs.mkdtempSync(path.join(process.env.BENCH_APPLIANCE_WORK ?? os.tmpdir(), 'e4ops-bench-appliance-'));

function timed(cmd: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, TMPDIR: work } });
    let err = '';
    child.stderr.on('data', (d) => (err = (err + d).slice(-3000)));
    child.on('close', (code) => (code === 0 ? resolve((Date.now() - t0) / 1000) : reject(new Error(`${cmd} exited ${code}: ${err}`))));
  });
}

const c2Answers = (port: number) => new Promise<boolean>((resolve) => {
  const req = https.get(`https://127.0.0.1:${port}${C2_HEALTH_PATH}`, { rejectUnauthorized: false, timeout: 4000 }, (res) => { res.resume(); resolve(res.statusCode === 200); });
  req.on('error', () => resolve(false));
  req.on('timeout', () => req.destroy());
});

try {
  const appliance = loadApplianceDefinition(path.join(repo, 'appliances', 'c2-minimal', 'appliance.yaml'));
  appliance.definition.image.formats = ['qcow2', 'ova'];
  const plan = planAppliance(appliance, path.join(c2BinaryDir(), 'c2'));

  let baselineSeconds: number | undefined;
  if (!process.env.BENCH_SKIP_BASELINE) {
    say('baseline: bare mmdebstrap minbase of the same packages into a tarball');
    baselineSeconds = await timed('nice', ['-n', '10', 'mmdebstrap', '--mode=root', '--variant=minbase', `--include=${plan.packages.join(',')}`,
      appliance.definition.suite, path.join(work, 'baseline.tar'), appliance.definition.mirror]);
    fs.rmSync(path.join(work, 'baseline.tar'), { force: true });
    say(`baseline: ${baselineSeconds.toFixed(1)} s`);
  }

  say('build: e4ops build-appliance (toolkit, mmdebstrap + hooks, bootable disk, qcow2, OVA)');
  const built = await buildApplianceImage(plan, { outDir: path.join(work, 'out'), workDir: path.join(work, 'build'), c2ModuleVersion: pinnedC2Version(), progress: say });
  const size = (f: string) => built.outputs.find((o) => o.format === f)!.bytes;
  const qcow2 = built.outputs.find((o) => o.format === 'qcow2')!.file;

  const seedDir = path.join(work, 'seed');
  fs.mkdirSync(seedDir);
  const seed = { hostname: 'c2-bench', sshAuthorizedKeys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBenchKeyNotUsedForLogin0000000000000000000 bench'], instanceId: 'iid-bench' };
  fs.writeFileSync(path.join(seedDir, 'user-data'), renderUserData(seed));
  fs.writeFileSync(path.join(seedDir, 'meta-data'), renderMetaData(seed));
  await timed('cloud-localds', [path.join(seedDir, 'seed.img'), path.join(seedDir, 'user-data'), path.join(seedDir, 'meta-data')]);
  const httpPort = await freeLoopbackPort();
  say('boot: qcow2 under TCG, SeaBIOS, until C2 answers');
  const t0 = Date.now();
  const vm = bootAppliance({ image: qcow2, format: 'qcow2', firmware: 'bios', serialLog: path.join(work, 'serial.log'), seed: path.join(seedDir, 'seed.img'), snapshot: true, accel: 'tcg', forwards: [{ hostPort: httpPort, guestPort: 8888 }] });
  let loginSeconds: number | undefined;
  let c2Seconds: number | undefined;
  while (Date.now() - t0 < 900_000 && vm.qemu.exitCode === null) {
    if (loginSeconds === undefined && /login: /.test(vm.serial())) loginSeconds = (Date.now() - t0) / 1000;
    if (await c2Answers(httpPort)) { c2Seconds = (Date.now() - t0) / 1000; break; }
    await new Promise((r) => setTimeout(r, 1000));
  }
  await vm.stop();
  if (c2Seconds === undefined) throw new Error(`C2 did not answer within 900 s; serial tail:\n${vm.serial().slice(-3000)}`);
  const result = {
    bench: 'appliance', suite: appliance.definition.suite, cores: os.cpus().length,
    buildSeconds: Number(built.seconds.toFixed(1)), buildSteps: built.steps,
    baselineMmdebstrapSeconds: baselineSeconds === undefined ? null : Number(baselineSeconds.toFixed(1)),
    buildVsBareMmdebstrap: baselineSeconds === undefined ? null : Number((built.seconds / baselineSeconds).toFixed(2)),
    qcow2Bytes: size('qcow2'), ovaBytes: size('ova'), rootTreeBytes: built.rootTreeBytes,
    bootToLoginSeconds: loginSeconds === undefined ? null : Number(loginSeconds.toFixed(1)),
    bootToC2ServingSeconds: Number(c2Seconds.toFixed(1)),
    c2ServingVsLogin: loginSeconds === undefined ? null : Number((c2Seconds / loginSeconds).toFixed(2)),
    accel: 'tcg',
    targets: { qcow2MaxBytes: 700e6, qcow2Ok: size('qcow2') <= 700e6, buildMaxSeconds: 300, buildOk: built.seconds <= 300 },
  };
  say(`build ${result.buildSeconds} s (bare mmdebstrap ${result.baselineMmdebstrapSeconds} s, x${result.buildVsBareMmdebstrap}); qcow2 ${(result.qcow2Bytes / 1e6).toFixed(0)} MB, OVA ${(result.ovaBytes / 1e6).toFixed(0)} MB; boot to login ${result.bootToLoginSeconds} s, to C2 serving ${result.bootToC2ServingSeconds} s (TCG)`);
  console.log(JSON.stringify(result));
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
