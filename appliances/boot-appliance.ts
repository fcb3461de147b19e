// Boot a built appliance disk with qemu the way a hypervisor does: firmware first (SeaBIOS, or OVMF
// for UEFI), the boot loader from the disk itself, no -kernel. Serial console to a file, user
// networking whose forwards listen on 127.0.0.1 only, an optional cloud-init seed disk. KVM when
// asked for and usable; on this project's machines KVM guests hang (nested KVM), so tests use TCG.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export type Firmware = 'bios' | 'uefi';
/** Debian's OVMF (package ovmf): code read-only, a copy of the variable store per VM. */
export const OVMF_CODE = '/usr/share/OVMF/OVMF_CODE_4M.fd';
export const OVMF_VARS = '/usr/share/OVMF/OVMF_VARS_4M.fd';

export interface BootOptions {
  image: string;
  format: 'qcow2' | 'raw';
  firmware: Firmware;
  serialLog: string;
  forwards: Array<{ hostPort: number; guestPort: number }>;
  /** cloud-init NoCloud seed (vfat or iso9660 labelled cidata), attached read-only. */
  seed?: string;
  memoryMb?: number;
  cpus?: number;
  /** Boot on a throwaway overlay: the image file is not changed. */
  snapshot?: boolean;
  accel?: 'kvm' | 'tcg';
  /** Where the UEFI variable store copy goes (default: beside the serial log). */
  workDir?: string;
}

/** qemu arguments. Pure apart from naming the variable store copy. */
export function qemuBootArgs(o: BootOptions): string[] {
  const fwd = o.forwards.map((f) => `,hostfwd=tcp:127.0.0.1:${f.hostPort}-:${f.guestPort}`).join('');
  const args = [
    '-accel', o.accel ?? 'tcg', '-smp', String(o.cpus ?? 2), '-m', String(o.memoryMb ?? 1536),
    '-nographic', '-serial', `file:${o.serialLog}`, '-monitor', 'none',
  ];
  if (o.firmware === 'uefi') {
    const vars = path.join(o.workDir ?? path.dirname(o.serialLog), `${path.basename(o.serialLog)}.OVMF_VARS.fd`);
    args.push('-drive', `if=pflash,format=raw,unit=0,readonly=on,file=${OVMF_CODE}`, '-drive', `if=pflash,format=raw,unit=1,file=${vars}`);
  }
  args.push('-drive', `file=${o.image},format=${o.format},if=virtio${o.snapshot ? ',snapshot=on' : ''}`);
  if (o.seed) args.push('-drive', `file=${o.seed},format=raw,if=virtio,readonly=on`);
  args.push('-netdev', `user,id=n0,restrict=off${fwd}`, '-device', 'virtio-net-pci,netdev=n0');
  return args;
}

export interface BootedAppliance {
  qemu: ChildProcess;
  stderr(): string;
  serial(): string;
  stop(): Promise<void>;
}

export function bootAppliance(o: BootOptions): BootedAppliance {
  fs.writeFileSync(o.serialLog, '');
  const args = qemuBootArgs(o);
  if (o.firmware === 'uefi') {
    if (!fs.existsSync(OVMF_CODE)) throw new Error(`${OVMF_CODE} missing: apt-get install -y ovmf (or bash scripts/setup.sh --slow)`);
    const vars = args[args.indexOf(`if=pflash,format=raw,unit=0,readonly=on,file=${OVMF_CODE}`) + 2].replace(/^.*file=/, '');
    fs.copyFileSync(OVMF_VARS, vars);
  }
  const qemu = spawn('nice', ['-n', '10', 'qemu-system-x86_64', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  qemu.stderr!.on('data', (b) => (err = (err + b).slice(-4000)));
  qemu.on('error', (e) => (err += `\n${e.message}`));
  return {
    qemu,
    stderr: () => err,
    serial: () => fs.readFileSync(o.serialLog, 'utf8').replace(/\x1b\[[0-9;?]*[a-zA-Z]/g, ''),
    stop: async () => {
      if (qemu.exitCode !== null || qemu.signalCode !== null) return;
      const gone = new Promise<void>((r) => qemu.once('exit', () => r()));
      qemu.kill('SIGKILL');
      await gone;
    },
  };
}
