#!/usr/bin/env bash
# One-command set-up on a fresh Debian 12 machine (as root): Debian packages, npm packages from the
# lock file, and the real C2 binaries built from the Go module proxy (cached in ~/.cache/e4ops).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
# Go (for the C2 build and the e4go vector program) lives in /usr/local/go on these machines.
if [ -x /usr/local/go/bin/go ]; then export PATH="/usr/local/go/bin:$PATH"; fi
bash scripts/install-deps.sh
npm ci --no-audit --no-fund
bash scripts/build-c2.sh >/dev/null
# `e4ops` on PATH (package.json "bin").
ln -sf "$PWD/bin/e4ops" /usr/local/bin/e4ops
# The Debian base the C2 image tests build on (mmdebstrap, cached): tests then never reach a mirror.
npx tsx -e "import('./lib/servers/c2-image.ts').then((m) => console.error('setup: base tarball', m.ensureC2ImageBaseTarball()))"
echo "setup: done. Test with: npm test"
