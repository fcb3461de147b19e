// Boot a built appliance image with qemu (direct kernel boot, serial console to a file, user
// networking whose forwards listen on 127.0.0.1 only). KVM first; when the guest kernel prints
// nothing on the serial console within kvmProbeSeconds (seen with nested KVM on some hosts: the
// guest hangs before its first message), fall back to TCG software emulation and say so.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { qemuBootArgs } from './build-appliance.ts';

export interface BootOptions {
  image: string;
  kernel: string;
  initrd: string;
  format: 'qcow2' | 'raw';
  serialLog: string;
  forwards: Array<{ hostPort: number; guestPort: number }>;
  memoryMb?: number;
  /** Boot on a throwaway overlay: the image file is not changed. */
  snapshot?: boolean;
  accel?: 'kvm' | 'tcg' | 'auto';
  kvmProbeSeconds?: number;
  progress?: (line: string) => void;
}

export interface BootedAppliance {
  qemu: ChildProcess;
  accel: 'kvm' | 'tcg';
  stderr(): string;
  stop(): Promise<void>;
}

function launch(o: BootOptions, accel: 'kvm' | 'tcg'): { qemu: ChildProcess; err: { text: string } } {
  fs.writeFileSync(o.serialLog, '');
  const qemu = spawn('qemu-system-x86_64', qemuBootArgs(o, { ...o, accel }), { stdio: ['ignore', 'ignore', 'pipe'] });
  const err = { text: '' };
  qemu.stderr!.on('data', (b) => (err.text = (err.text + b).slice(-4000)));
  qemu.on('error', (e) => (err.text += `\n${e.message}`));
  return { qemu, err };
}

async function stopQemu(q: ChildProcess): Promise<void> {
  if (q.exitCode !== null || q.signalCode !== null) return;
  const gone = new Promise<void>((r) => q.once('exit', () => r()));
  q.kill('SIGKILL');
  await gone;
}

export async function bootAppliance(o: BootOptions): Promise<BootedAppliance> {
  const progress = o.progress ?? (() => {});
  const wanted = o.accel ?? 'auto';
  const canKvm = fs.existsSync('/dev/kvm');
  if (wanted === 'kvm' && !canKvm) throw new Error('qemu accel kvm: /dev/kvm does not exist (run as root on a host with KVM, or use accel tcg)');
  let accel: 'kvm' | 'tcg' = wanted === 'tcg' || !canKvm ? 'tcg' : 'kvm';
  let { qemu, err } = launch(o, accel);
  if (accel === 'kvm' && wanted === 'auto') {
    const deadline = Date.now() + (o.kvmProbeSeconds ?? 30) * 1000;
    while (Date.now() < deadline && qemu.exitCode === null && !/Linux version/.test(fs.readFileSync(o.serialLog, 'utf8'))) {
      await new Promise((r) => setTimeout(r, 500));
    }
    if (!/Linux version/.test(fs.readFileSync(o.serialLog, 'utf8'))) {
      progress(`qemu with KVM: the guest kernel printed nothing within ${o.kvmProbeSeconds ?? 30} s${err.text ? ` (${err.text.trim().split('\n')[0]})` : ''}; falling back to TCG (slow)`);
      await stopQemu(qemu);
      accel = 'tcg';
      ({ qemu, err } = launch(o, accel));
    }
  }
  return { qemu, accel, stderr: () => err.text, stop: () => stopQemu(qemu) };
}
