#!/usr/bin/env bash
# One-command set-up on a fresh Debian 12 machine (as root): Debian packages, npm packages from the
# lock file, and the real C2 binaries built from the Go module proxy (cached in ~/.cache/e4ops).
# --slow also installs what the slow suite (E4OPS_SLOW_TESTS=1, npm run test:slow) needs to build and
# boot the VM appliance; without it the slow appliance test fails naming the missing package.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
SLOW=0
for arg in "$@"; do
  case "$arg" in
    --slow) SLOW=1 ;;
    -h|--help) echo "usage: bash scripts/setup.sh [--slow]   (--slow: also the appliance build/boot packages)"; exit 0 ;;
    *) echo "setup: unknown argument $arg (usage: bash scripts/setup.sh [--slow])" >&2; exit 2 ;;
  esac
done
# The appliance slow test: mmdebstrap builds the tree; sfdisk, mkfs.fat, mtools and mke2fs make the disk
# without loop devices; qemu-img writes qcow2; qemu + SeaBIOS/OVMF boot it; cloud-localds makes the
# NoCloud seed; ssh, age and xmllint check the booted VM and the OVA.
SLOW_PACKAGES=(
  mmdebstrap qemu-system-x86 qemu-utils ovmf seabios grub-pc-bin grub-efi-amd64-bin grub2-common
  fdisk dosfstools mtools e2fsprogs cloud-image-utils genisoimage openssh-client age libxml2-utils
)
if [ "$SLOW" = 1 ]; then
  missing=()
  for p in "${SLOW_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || { echo "setup --slow: need root to apt-get install ${missing[*]}" >&2; exit 1; }
    apt-get update -qq
    flock /tmp/e4ops-apt.lock apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi
# Go (for the C2 build and the e4go vector program) lives in /usr/local/go on these machines.
if [ -x /usr/local/go/bin/go ]; then export PATH="/usr/local/go/bin:$PATH"; fi
bash scripts/install-deps.sh
npm ci --no-audit --no-fund
bash scripts/build-c2.sh >/dev/null
# `e4ops` on PATH (package.json "bin").
ln -sf "$PWD/bin/e4ops" /usr/local/bin/e4ops
# The Debian base the C2 image tests build on (mmdebstrap, cached): tests then never reach a mirror.
npx tsx -e "import('./lib/servers/c2-image.ts').then((m) => console.error('setup: base tarball', m.ensureC2ImageBaseTarball()))"
# The slow suite's realized ha profile (test/stacks/ha-realized.slow.test.ts, bench:failover) builds every
# image on one base that already holds the Debian packages (about 1 GB, 2 minutes once).
if [ "$SLOW" = 1 ]; then
  npx tsx -e "import('./lib/servers/c2-image.ts').then((m) => console.error('setup: stack base tarball', m.ensureStackImageBaseTarball()))"
fi
echo "setup: done. Test with: npm test$([ "$SLOW" = 1 ] && echo "; the slow suite: npm run test:slow")"
