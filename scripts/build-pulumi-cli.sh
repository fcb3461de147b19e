#!/usr/bin/env bash
# Build the Pulumi CLI (github.com/pulumi/pulumi/pkg/v3/cmd/pulumi) from the Go module proxy into a cache
# directory outside the repository, for machines where the Pulumi installer cannot be downloaded:
#   ${E4OPS_CACHE:-$HOME/.cache/e4ops}/pulumi-cli/<version>/bin/pulumi   (the installer's layout: PATH=<dir>/bin)
# The version is pinned by the wrapper module test/pulumi-cli-build/go.mod (and its committed go.sum).
# Idempotent: when the binary exists for the pinned version (same go.mod/go.sum), nothing is rebuilt.
# About 10 minutes cold on 2 cores; seconds when cached. Prints the binary's path on stdout; progress on stderr.
#
# Only the CLI: the nodejs language host (pulumi-language-nodejs) is a separate Go module that the module
# proxy does not serve, so programs run through the Automation API's inline programs (the Node process is
# its own language host; see docs/operate/deploy.md, "Pulumi CLI without the installer").
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/build-pulumi-cli.sh [--force] [--print-path]
  Builds the Pulumi CLI pinned in test/pulumi-cli-build/go.mod with CGO_ENABLED=0 into
  ${E4OPS_CACHE:-$HOME/.cache/e4ops}/pulumi-cli/<version>/bin/pulumi (skipped when already built).
  --force       rebuild even when cached
  --print-path  only print where the binary for the pinned version goes (no build)
Then: E4OPS_PULUMI_CLI=$(bash scripts/build-pulumi-cli.sh) npx vitest run test/stacks/pulumi-engine.slow.test.ts
env: E4OPS_CACHE (cache root), GOFLAGS/GOPROXY as usual for the go command
USAGE
}

force=0
print_only=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    --print-path) print_only=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "build-pulumi-cli: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

repo="$(cd "$(dirname "$0")/.." && pwd)"
. "$repo/scripts/lib/go-wrapper-build.sh"
mod_dir="$repo/test/pulumi-cli-build"
version="$(go_wrapper_version build-pulumi-cli "$mod_dir" github.com/pulumi/pulumi/pkg/v3)"

cache_root="${E4OPS_CACHE:-$HOME/.cache/e4ops}"
out="$cache_root/pulumi-cli/$version"
if [ "$print_only" = 1 ]; then echo "$out/bin/pulumi"; exit 0; fi
go_wrapper_require_go build-pulumi-cli "$mod_dir"

stamp="$(go_wrapper_stamp "$mod_dir")"
if [ "$force" = 0 ] && [ -x "$out/bin/pulumi" ] && [ "$(cat "$out/.stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "build-pulumi-cli: cached $out/bin/pulumi (Pulumi CLI $version; --force rebuilds)" >&2
  echo "$out/bin/pulumi"
  exit 0
fi

mkdir -p "$out/bin"
tmp="$(mktemp -d "$out/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
echo "build-pulumi-cli: building Pulumi CLI $version with $(go version | awk '{print $3}') into $out (about 10 min cold on 2 cores)" >&2
# The version stamp is what `pulumi version` prints and what the Automation API checks against its minimum.
go_wrapper_build "$mod_dir" "$tmp" "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$version" \
  github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
[ "$("$tmp/pulumi" version)" = "$version" ] || { echo "build-pulumi-cli: the built binary reports version '$("$tmp/pulumi" version)', expected $version" >&2; exit 1; }
mv -f "$tmp/pulumi" "$out/bin/pulumi"
echo "$stamp" > "$out/.stamp"
echo "build-pulumi-cli: built in $(( $(date +%s) - start )) s" >&2
echo "$out/bin/pulumi"
