// A disk that boots by itself on BIOS and UEFI firmware, assembled in a plain file: no loop device,
// no mount, no root-only kernel feature. sfdisk writes the GPT, mkfs.fat --offset and mtools fill
// the EFI system partition, mke2fs -E offset= -d writes the root file system straight from the
// tree, and GRUB's own images (made by grub-mkimage inside the image's chroot, so the boot loader
// is the Debian release's) go where grub-install would put them: boot.img in the MBR, core.img in
// the BIOS boot partition, BOOTX64.EFI at the removable-media path (no NVRAM entry needed).
// grub-install itself wants a block device, which is why its two writes are done here by hand.
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';

export const SECTOR = 512;
const MiB = 1024 * 1024;

/** Partition layout in MiB from the start of the disk. */
export interface DiskLayout {
  biosBoot: { startMiB: number; sizeMiB: number };
  esp: { startMiB: number; sizeMiB: number };
  root: { startMiB: number; sizeMiB: number };
  /** Whole disk, including the backup GPT at the end. */
  totalBytes: number;
}

export const ROOT_LABEL = 'e4root';
export const ESP_LABEL = 'E4ESP';
/** GPT partition type GUIDs (UEFI spec; root: Discoverable Partitions Specification, x86-64 root). */
export const PART_TYPES = {
  biosBoot: '21686148-6449-6E6F-744E-656564454649',
  esp: 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B',
  rootX86_64: '4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709',
} as const;

export function diskLayout(rootSizeMiB: number, espSizeMiB = 64): DiskLayout {
  const biosBoot = { startMiB: 1, sizeMiB: 1 };
  const esp = { startMiB: 2, sizeMiB: espSizeMiB };
  const root = { startMiB: esp.startMiB + espSizeMiB, sizeMiB: rootSizeMiB };
  return { biosBoot, esp, root, totalBytes: (root.startMiB + rootSizeMiB + 1) * MiB };
}

/** sfdisk script for the layout. Pure. */
export function renderSfdiskScript(l: DiskLayout): string {
  const sec = (mib: number) => (mib * MiB) / SECTOR;
  return [
    'label: gpt',
    `first-lba: ${sec(1)}`,
    `start=${sec(l.biosBoot.startMiB)}, size=${sec(l.biosBoot.sizeMiB)}, type=${PART_TYPES.biosBoot}, name="bios-boot"`,
    `start=${sec(l.esp.startMiB)}, size=${sec(l.esp.sizeMiB)}, type=${PART_TYPES.esp}, name="esp"`,
    `start=${sec(l.root.startMiB)}, size=${sec(l.root.sizeMiB)}, type=${PART_TYPES.rootX86_64}, name="${ROOT_LABEL}"`,
    '',
  ].join('\n');
}

/**
 * GRUB's first commands, built into core.img and BOOTX64.EFI: find the root file system by its label
 * (so the disk boots whatever the firmware calls it) and read /boot/grub/grub.cfg from there.
 */
export const GRUB_EARLY_CONFIG = `search --no-floppy --label ${ROOT_LABEL} --set=root
set prefix=($root)/boot/grub
`;

/** Modules built into both GRUB images: enough to reach and run grub.cfg without the modules dir. */
export const GRUB_MODULES = {
  common: ['part_gpt', 'part_msdos', 'ext2', 'fat', 'search', 'search_label', 'normal', 'configfile', 'linux', 'echo', 'test', 'gzio', 'serial', 'terminal', 'sleep', 'ls', 'cat', 'reboot', 'halt'],
  'i386-pc': ['biosdisk'],
  'x86_64-efi': ['efi_gop', 'efi_uga', 'all_video'],
} as const;

/** /boot/grub/grub.cfg on the root file system. The /vmlinuz and /initrd.img links follow kernel upgrades. Pure. */
export function renderGrubConfig(o: { title: string; kernel: string; initrd: string; cmdline: string; timeoutSeconds?: number }): string {
  return `# Rendered by e4ops (appliances/disk-image.ts); the boot loader reads it on BIOS and UEFI.
set timeout=${o.timeoutSeconds ?? 2}
serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
if [ "$grub_platform" = efi ]; then insmod all_video; fi
menuentry '${o.title.replace(/'/g, '')}' {
  search --no-floppy --label ${ROOT_LABEL} --set=root
  linux ${o.kernel} root=LABEL=${ROOT_LABEL} ${o.cmdline}
  initrd ${o.initrd}
}
`;
}

// no_timer_check: the kernel's IO-APIC timer check fails on slow (emulated, loaded) hosts and panics; cloud images set it too.
export const KERNEL_CMDLINE = 'ro console=tty0 console=ttyS0,115200n8 no_timer_check systemd.show_status=true';

/** Offsets inside GRUB's i386-pc images (grub-core/boot/i386/pc/boot.S, util/setup.c). */
const BOOT_KERNEL_SECTOR = 0x5c;
const BOOT_DRIVE_CHECK = 0x66;
const BOOT_BPB_START = 0x03;
const BOOT_BPB_END = 0x5a;
const MBR_CODE_END = 0x1b8; // disk signature and partition table follow: sfdisk's, kept
const CORE_BLOCKLIST = SECTOR - 12; // last blocklist entry of diskboot.img: start u64, len u16, segment u16
const CORE_LOAD_SEGMENT = 0x820;

/**
 * What grub-bios-setup does for a core.img embedded in a BIOS boot partition: boot.img into the MBR
 * (pointing at core.img's first sector, drive check off for a hard disk), core.img into the
 * partition (its first sector's block list pointing at the rest). Pure: buffers in, buffers out.
 */
export function patchBiosBoot(mbr: Buffer, bootImg: Buffer, coreImg: Buffer, coreLba: number, partitionSectors: number): { mbr: Buffer; core: Buffer } {
  if (bootImg.length !== SECTOR) throw new Error(`boot.img is ${bootImg.length} bytes; GRUB's i386-pc boot.img is ${SECTOR}`);
  const coreSectors = Math.ceil(coreImg.length / SECTOR);
  if (coreSectors > partitionSectors) throw new Error(`core.img needs ${coreSectors} sectors; the BIOS boot partition has ${partitionSectors}`);
  const out = Buffer.from(mbr);
  bootImg.copy(out, 0, 0, BOOT_BPB_START);
  bootImg.copy(out, BOOT_BPB_END, BOOT_BPB_END, MBR_CODE_END);
  out.writeBigUInt64LE(BigInt(coreLba), BOOT_KERNEL_SECTOR);
  out[BOOT_DRIVE_CHECK] = 0x90;
  out[BOOT_DRIVE_CHECK + 1] = 0x90;
  const core = Buffer.alloc(coreSectors * SECTOR);
  coreImg.copy(core);
  core.writeBigUInt64LE(BigInt(coreLba + 1), CORE_BLOCKLIST);
  core.writeUInt16LE(coreSectors - 1, CORE_BLOCKLIST + 8);
  core.writeUInt16LE(CORE_LOAD_SEGMENT, CORE_BLOCKLIST + 10);
  core.fill(0, CORE_BLOCKLIST - 12, CORE_BLOCKLIST); // terminator of the block list
  return { mbr: out, core };
}

export function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string; pkg?: string; cwd?: string } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b) => (out += b));
    child.stderr.on('data', (b) => (err = (err + b).slice(-4000)));
    child.on('error', (e) => reject((e as NodeJS.ErrnoException).code === 'ENOENT'
      ? new Error(`${cmd} is not installed${opts.pkg ? `: apt-get install -y ${opts.pkg} (or bash scripts/setup.sh --slow)` : ''}`)
      : e));
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(' ')} exited with ${code}:\n${err}`))));
    // A command that reads no input may exit before its stdin closes: its exit code tells, not EPIPE.
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}

export interface AssembleOptions {
  /** The image's root tree (mmdebstrap output), with /boot/grub/grub.cfg in it. */
  rootDir: string;
  /** Raw disk image to write. */
  output: string;
  rootSizeMiB: number;
  /** Root file system UUID (fixed per build so /etc/fstab and reports can name it). */
  rootUuid: string;
  env?: NodeJS.ProcessEnv;
  progress?: (line: string) => void;
}

/** Make the GRUB images with the image's own grub-mkimage (run in the chroot). */
async function makeGrubImages(rootDir: string, env?: NodeJS.ProcessEnv): Promise<{ bootImg: Buffer; coreImg: Buffer; efiImg: Buffer }> {
  const early = '/tmp/e4ops-grub-early.cfg';
  fs.writeFileSync(path.join(rootDir, early), GRUB_EARLY_CONFIG);
  const mk = async (platform: 'i386-pc' | 'x86_64-efi', out: string) => {
    const mods = [...GRUB_MODULES.common, ...GRUB_MODULES[platform]];
    await run('chroot', [rootDir, 'grub-mkimage', '-O', platform, '-d', `/usr/lib/grub/${platform}`, '-c', early, '-p', '/boot/grub', '-o', out, ...mods], { env, pkg: platform === 'i386-pc' ? 'grub-pc-bin' : 'grub-efi-amd64-bin' });
    const file = path.join(rootDir, out);
    const buf = fs.readFileSync(file);
    fs.rmSync(file);
    return buf;
  };
  const coreImg = await mk('i386-pc', '/tmp/e4ops-core.img');
  const efiImg = await mk('x86_64-efi', '/tmp/e4ops-bootx64.efi');
  fs.rmSync(path.join(rootDir, early));
  const bootImg = fs.readFileSync(path.join(rootDir, 'usr/lib/grub/i386-pc/boot.img'));
  return { bootImg, coreImg, efiImg };
}

/** Assemble the bootable raw disk. Steps are named as they print. */
export async function assembleBootableDisk(o: AssembleOptions): Promise<DiskLayout> {
  const progress = o.progress ?? (() => {});
  const l = diskLayout(o.rootSizeMiB);
  const env = o.env;
  progress(`  disk: GRUB ${GRUB_MODULES.common.length}+ modules into core.img (BIOS) and BOOTX64.EFI (UEFI), from the image's grub`);
  const grub = await makeGrubImages(o.rootDir, env);

  progress(`  disk: ${l.totalBytes / MiB} MiB file, GPT by sfdisk (bios-boot, esp ${l.esp.sizeMiB} MiB, ${ROOT_LABEL} ${l.root.sizeMiB} MiB)`);
  fs.rmSync(o.output, { force: true });
  fs.writeFileSync(o.output, '');
  fs.truncateSync(o.output, l.totalBytes);
  await run('sfdisk', ['--no-reread', '--no-tell-kernel', '-q', o.output], { env, input: renderSfdiskScript(l), pkg: 'fdisk' });

  progress('  disk: EFI system partition (mkfs.fat --offset, mtools)');
  const espSector = (l.esp.startMiB * MiB) / SECTOR;
  await run('mkfs.fat', ['-F', '32', '-s', '1', '-n', ESP_LABEL, '--offset', String(espSector), o.output, String(l.esp.sizeMiB * 1024)], { env, pkg: 'dosfstools' });
  const espImage = `${o.output}@@${l.esp.startMiB * MiB}`;
  const efiFile = path.join(path.dirname(o.output), 'BOOTX64.EFI');
  fs.writeFileSync(efiFile, grub.efiImg);
  await run('mmd', ['-i', espImage, '::/EFI', '::/EFI/BOOT'], { env, pkg: 'mtools' });
  await run('mcopy', ['-i', espImage, efiFile, '::/EFI/BOOT/BOOTX64.EFI'], { env, pkg: 'mtools' });
  fs.rmSync(efiFile);

  progress(`  disk: root file system (mke2fs -t ext4 -E offset=${l.root.startMiB * MiB} -d ${o.rootDir})`);
  await run('mke2fs', ['-q', '-F', '-t', 'ext4', '-L', ROOT_LABEL, '-U', o.rootUuid, '-E', `offset=${l.root.startMiB * MiB}`, '-d', o.rootDir, o.output, `${o.rootSizeMiB}M`], { env, pkg: 'e2fsprogs' });

  progress('  disk: GRUB boot.img into the MBR, core.img into the BIOS boot partition');
  const fd = fs.openSync(o.output, 'r+');
  try {
    const mbr = Buffer.alloc(SECTOR);
    fs.readSync(fd, mbr, 0, SECTOR, 0);
    const coreLba = (l.biosBoot.startMiB * MiB) / SECTOR;
    const patched = patchBiosBoot(mbr, grub.bootImg, grub.coreImg, coreLba, (l.biosBoot.sizeMiB * MiB) / SECTOR);
    fs.writeSync(fd, patched.mbr, 0, SECTOR, 0);
    fs.writeSync(fd, patched.core, 0, patched.core.length, coreLba * SECTOR);
  } finally {
    fs.closeSync(fd);
  }
  return l;
}
