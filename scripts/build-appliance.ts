#!/usr/bin/env -S npx tsx
// Build a VM appliance image from appliances/<name>/appliance.yaml. Thin entry: flags here, the
// work in appliances/build-appliance.ts. Exit 0 built (or plan printed), 1 failed, 2 usage error.
import path from 'node:path';
import { argv } from 'zx';
import { loadApplianceDefinition, ApplianceDefinitionError } from '../appliances/appliance-definition.ts';
import { planAppliance, describePlan, buildApplianceImage } from '../appliances/build-appliance.ts';
import { c2BinaryDir, REPO_ROOT } from '../lib/servers/c2.ts';

const USAGE = `usage: npm run build:appliance -- [--dry-run] [--out DIR] [--c2-binary FILE] [appliance.yaml]
  Builds a Debian 12 VM image (mmdebstrap minbase, ext4, qcow2/raw) running C2, PostgreSQL and
  Mosquitto under systemd. Secrets are generated on the VM's first boot, never in the image.
  appliance.yaml   definition (default appliances/c2-minimal/appliance.yaml)
  --dry-run        print the plan (packages, every file and who rendered it) and exit
  --out DIR        output directory (default .cache/appliances/<name>); scratch space goes in DIR/work
  --c2-binary FILE C2 binary (default: the scripts/build-c2.sh cache, ${'$'}E4OPS_C2_BIN_DIR/c2)
Needs root, mmdebstrap, e2fsprogs, qemu-utils (apt-get install -y mmdebstrap qemu-utils).
exit: 0 done, 1 invalid definition or build failure, 2 usage error`;

if (argv.help || argv.h) {
  console.log(USAGE);
  process.exit(0);
}
const known = new Set(['_', 'help', 'h', 'dry-run', 'dryRun', 'out', 'c2-binary', 'c2Binary']);
const unknown = Object.keys(argv).filter((k) => !known.has(k));
if (unknown.length || argv._.length > 1) {
  console.error(`build-appliance: ${unknown.length ? `unknown flag --${unknown[0]}` : 'give at most one appliance.yaml'}\n${USAGE}`);
  process.exit(2);
}
const file = String(argv._[0] ?? path.join(REPO_ROOT, 'appliances', 'c2-minimal', 'appliance.yaml'));
try {
  const appliance = loadApplianceDefinition(file);
  const c2Binary = String(argv['c2-binary'] ?? path.join(c2BinaryDir(), 'c2'));
  const plan = planAppliance(appliance, c2Binary);
  if (argv['dry-run']) {
    console.log(describePlan(plan));
    process.exit(0);
  }
  const outDir = String(argv.out ?? path.join(REPO_ROOT, '.cache', 'appliances', appliance.definition.name));
  const r = await buildApplianceImage(plan, { outDir });
  console.log(JSON.stringify({ image: r.image, kernel: r.kernel, initrd: r.initrd, seconds: Number(r.seconds.toFixed(1)) }));
} catch (err) {
  console.error(err instanceof ApplianceDefinitionError ? err.message : `build-appliance: ${(err as Error).message}`);
  process.exit(1);
}
