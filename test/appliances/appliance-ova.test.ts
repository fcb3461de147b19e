// The OVA writer and its ovftool-free checks on a tiny disk (no qemu needed), and the BIOS boot-sector
// patching the disk builder does in place of grub-install.
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeOva, checkOva, readTar, checkStreamOptimizedVmdk, writeStreamOptimizedVmdk, renderOvf } from '../../appliances/ova.ts';
import { patchBiosBoot, renderSfdiskScript, diskLayout, PART_TYPES } from '../../appliances/disk-image.ts';
import { REPO_ROOT } from '../../lib/servers/c2.ts';

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-ova-'));
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));
const MiB = 2 ** 20;

/** A 40 MiB "disk": random data at the start, a partial grain in the middle, a tail; zeros between. */
function tinyDisk(): string {
  const raw = path.join(scratch, `disk-${crypto.randomUUID()}.raw`);
  const b = Buffer.alloc(40 * MiB);
  crypto.randomFillSync(b, 0, 300_000);
  b.write('e4ops grain in the middle', 33 * MiB + 100);
  b.fill(0x5a, 39 * MiB, 40 * MiB); // compresses well
  fs.writeFileSync(raw, b);
  return raw;
}

const ovfFields = { name: 'tiny', description: 'tiny <test> & disk', cpus: 2, memoryMb: 1024 };

describe('OVA (OVF 1.0 + manifest + streamOptimized VMDK)', () => {
  const raw = tinyDisk();
  const ova = path.join(scratch, 'tiny.ova');
  const built = writeOva({ rawDisk: raw, ova, workDir: scratch, ovf: ovfFields });

  it('archives OVF first, then the manifest, then the disk; every check passes and every grain reads back as the disk', () => {
    const r = checkOva(ova, { compareTo: raw });
    expect(r.problems).toEqual([]);
    expect(r.members).toEqual(['tiny.ovf', 'tiny.mf', 'tiny-disk1.vmdk']);
    expect(r.vmdk!.capacityBytes).toBe(40 * MiB);
    // Zero grains are left out: 300 000 random bytes (5 grains), 1 grain in the middle, 16 grains of 0x5a.
    expect(r.vmdk!.grains).toBe(5 + 1 + 16);
    expect(built.vmdk.bytes).toBeLessThan(1 * MiB);
    expect(r.ovf).toContain('ovf:capacity="41943040"');
    expect(r.ovf).toContain(`ovf:size="${built.vmdk.bytes}"`);
    expect(r.ovf).toContain('tiny &lt;test&gt; &amp; disk');
    expect(spawnSync('tar', ['tf', ova], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean)).toEqual(r.members);
  });

  // xmllint comes from libxml2-utils (scripts/install-deps.sh): a missing tool fails rather than skips.
  it('the OVF validates against the envelope schema; a descriptor missing its DiskSection does not', () => {
    const xsd = path.join(REPO_ROOT, 'appliances', 'ovf', 'ovf-envelope-subset.xsd');
    const good = path.join(scratch, 'good.ovf');
    fs.writeFileSync(good, checkOva(ova).ovf);
    const ok = spawnSync('xmllint', ['--noout', '--schema', xsd, good], { encoding: 'utf8' });
    expect(ok.stderr).toContain('validates');
    expect(ok.status).toBe(0);
    const bad = path.join(scratch, 'bad.ovf');
    fs.writeFileSync(bad, renderOvf({ ...ovfFields, disk: { file: 'd.vmdk', fileBytes: 1, capacityBytes: 2, populatedBytes: 1 } }).replace(/<DiskSection>[\s\S]*<\/DiskSection>/, ''));
    const no = spawnSync('xmllint', ['--noout', '--schema', xsd, bad], { encoding: 'utf8' });
    expect(no.status).not.toBe(0);
    expect(no.stderr).toMatch(/NetworkSection.*not expected|Expected is.*DiskSection/);
  });

  it('a changed byte in the disk member fails its manifest digest and its grain', () => {
    const damaged = path.join(scratch, 'damaged.ova');
    fs.copyFileSync(ova, damaged);
    const vmdk = readTar(damaged).find((m) => m.name.endsWith('.vmdk'))!;
    const fd = fs.openSync(damaged, 'r+');
    const at = vmdk.offset + 128 * 512 + 40; // inside the first grain's deflate stream
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, at);
    b[0] ^= 0xff;
    fs.writeSync(fd, b, 0, 1, at);
    fs.closeSync(fd);
    const r = checkOva(damaged, { compareTo: raw });
    expect(r.problems).toContainEqual('tiny-disk1.vmdk: SHA-256 differs from the manifest');
    expect(r.problems.some((p) => /tiny-disk1\.vmdk: grain at .*(deflate stream damaged|content differs)/.test(p))).toBe(true);
  });

  it('a truncated VMDK is reported as truncated', () => {
    const v = path.join(scratch, 'whole.vmdk');
    writeStreamOptimizedVmdk(raw, v);
    const cut = path.join(scratch, 'cut.vmdk');
    fs.writeFileSync(cut, fs.readFileSync(v).subarray(0, fs.statSync(v).size - 3 * 512));
    expect(checkStreamOptimizedVmdk(cut).problems).toContainEqual('no footer marker: the stream is truncated');
    expect(checkStreamOptimizedVmdk(v, raw).problems).toEqual([]);
  });

  it('an OVF size that does not match the member is reported', () => {
    const members = readTar(ova);
    const text = checkOva(ova).ovf.replace(`ovf:size="${built.vmdk.bytes}"`, `ovf:size="${built.vmdk.bytes + 512}"`);
    const dir = path.join(scratch, 'resized');
    fs.mkdirSync(dir);
    const fd = fs.openSync(ova, 'r');
    const files = members.map((m) => {
      const buf = Buffer.alloc(m.size);
      fs.readSync(fd, buf, 0, m.size, m.offset);
      const file = path.join(dir, m.name);
      fs.writeFileSync(file, m.name.endsWith('.ovf') ? text : buf);
      return { name: m.name, file };
    });
    fs.closeSync(fd);
    const out = path.join(scratch, 'resized.ova');
    spawnSync('tar', ['-C', dir, '-cf', out, ...files.map((f) => f.name)]);
    const p = checkOva(out).problems;
    expect(p).toContainEqual(`OVF says tiny-disk1.vmdk has ${built.vmdk.bytes + 512} bytes; the archive member has ${built.vmdk.bytes}`);
    expect(p).toContainEqual('tiny.ovf: SHA-256 differs from the manifest');
  });
});

describe('bootable disk layout', () => {
  it('GPT with a BIOS boot partition, an ESP and the root, in MiB steps', () => {
    const l = diskLayout(2048);
    expect(l.root.startMiB).toBe(66);
    expect(l.totalBytes).toBe((66 + 2048 + 1) * MiB);
    const script = renderSfdiskScript(l);
    expect(script).toContain(`start=2048, size=2048, type=${PART_TYPES.biosBoot}`);
    expect(script).toContain(`start=4096, size=131072, type=${PART_TYPES.esp}`);
    expect(script).toContain(`start=135168, size=4194304, type=${PART_TYPES.rootX86_64}, name="e4root"`);
  });

  it('patches boot.img and core.img the way grub-bios-setup does, keeping the partition table', () => {
    const mbr = Buffer.alloc(512);
    mbr.fill(0xee, 0x1be, 0x1ce); // the protective MBR entry sfdisk wrote
    mbr[510] = 0x55; mbr[511] = 0xaa;
    const boot = Buffer.alloc(512, 0x11);
    const core = Buffer.alloc(512 * 60 + 100, 0x22);
    const r = patchBiosBoot(mbr, boot, core, 2048, 2048);
    expect(r.mbr.readBigUInt64LE(0x5c)).toBe(2048n); // boot.img loads core.img's first sector from here
    expect(r.mbr.subarray(0x66, 0x68)).toEqual(Buffer.from([0x90, 0x90])); // drive check off for a hard disk
    expect(r.mbr.subarray(0x1b8)).toEqual(mbr.subarray(0x1b8)); // disk signature + partition table kept
    expect(r.core.length).toBe(61 * 512);
    expect(r.core.readBigUInt64LE(500)).toBe(2049n); // the rest of core.img follows its first sector
    expect(r.core.readUInt16LE(508)).toBe(60);
    expect(r.core.readUInt16LE(510)).toBe(0x820);
    expect(() => patchBiosBoot(mbr, boot, Buffer.alloc(512 * 3000), 2048, 2048)).toThrow(/core\.img needs 3000 sectors; the BIOS boot partition has 2048/);
  });
});
