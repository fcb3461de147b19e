#!/usr/bin/env -S npx tsx
// `e4ops build-appliance`: build a VM appliance from appliances/<name>/appliance.yaml. Thin entry:
// flags here, the work in appliances/build-appliance.ts.
import path from 'node:path';
import { defineCommand, runIfMain } from '../lib/cli/command.ts';
import { EXIT } from '../lib/cli/exit-codes.ts';
import { UsageError } from '../lib/cli/flags.ts';
import { loadApplianceDefinition, ApplianceDefinitionError } from '../appliances/appliance-definition.ts';
import { planAppliance, describePlan, buildApplianceImage } from '../appliances/build-appliance.ts';
import { c2BinaryDir, pinnedC2Version, REPO_ROOT } from '../lib/servers/c2.ts';

export const command = defineCommand({
  name: 'build-appliance',
  summary: 'build the C2 VM appliance (Debian trixie): qcow2, raw and OVA disks that boot by themselves',
  description: `Builds a disk image running C2, PostgreSQL and Mosquitto under systemd, with the toolkit in
/opt/e4ops (Node.js 20 from Debian) and the backup timer: mmdebstrap minbase, then a GPT disk with GRUB
for BIOS and UEFI assembled in a plain file (sfdisk, mkfs.fat, mke2fs -d; no loop device), then the
formats the definition lists, each with a .sha256 file. cloud-init (NoCloud or config-drive) sets the
host name, the e4admin SSH keys and a settings block at first boot. No secret is in the image: first
boot generates them. Needs root, mmdebstrap, qemu-utils, fdisk, dosfstools, mtools
(bash scripts/setup.sh --slow installs them) and the C2 binary (bash scripts/build-c2.sh).`,
  flags: {
    'dry-run': { type: 'boolean', help: 'print the plan (packages, every file and which renderer made it, units) and exit' },
    out: { type: 'string', placeholder: 'DIR', help: 'output directory (default .cache/appliances/<name>)' },
    'work-dir': { type: 'string', placeholder: 'DIR', help: 'scratch space on a local disk with ~3x the image size free (default <out>/work)' },
    'c2-binary': { type: 'string', placeholder: 'FILE', help: 'C2 binary (default: the scripts/build-c2.sh cache, $E4OPS_C2_BIN_DIR/c2)' },
  },
  positionals: [{ name: 'appliance.yaml', help: 'definition (default appliances/c2-minimal/appliance.yaml)' }],
  examples: [
    'e4ops build-appliance --dry-run',
    'e4ops build-appliance appliances/c2-minimal/appliance.yaml --out /var/tmp/e4c2 --work-dir /var/tmp/e4c2-work',
  ],
  async run({ flags, positionals }, ctx) {
    const file = positionals[0] ?? path.join(REPO_ROOT, 'appliances', 'c2-minimal', 'appliance.yaml');
    let appliance;
    try {
      appliance = loadApplianceDefinition(file);
    } catch (e) {
      if (e instanceof ApplianceDefinitionError) throw new UsageError(e.message);
      throw e;
    }
    const plan = planAppliance(appliance, flags['c2-binary'] ?? path.join(c2BinaryDir(), 'c2'));
    if (flags['dry-run']) {
      ctx.stdout(describePlan(plan) + '\n');
      return EXIT.ok;
    }
    const outDir = flags.out ?? path.join(REPO_ROOT, '.cache', 'appliances', appliance.definition.name);
    const r = await buildApplianceImage(plan, { outDir, workDir: flags['work-dir'], c2ModuleVersion: pinnedC2Version(), progress: (l) => ctx.stderr(l + '\n') });
    ctx.stdout(JSON.stringify({ seconds: Number(r.seconds.toFixed(1)), steps: r.steps, outputs: r.outputs }) + '\n');
    return EXIT.ok;
  },
});

await runIfMain(import.meta.url, command);
