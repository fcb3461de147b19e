#!/usr/bin/env bash
# Build the real C2 server (cmd/c2) and its CLI (cmd/c2cli) from the Go module proxy, statically
# (CGO_ENABLED=0), into a cache directory outside the repository:
#   ${E4OPS_CACHE:-$HOME/.cache/e4ops}/c2/<version>/{c2,c2cli}
# Idempotent: when both binaries exist for the pinned version (and the same go.sum), nothing is rebuilt.
# The version is pinned by the wrapper module test/c2-build/go.mod (see README, section "Real C2 in tests").
# Prints the cache directory on stdout; progress goes to stderr.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/build-c2.sh [--force] [--print-dir]
  Builds github.com/teserakt-io/c2 cmd/c2 and cmd/c2cli with CGO_ENABLED=0 into
  ${E4OPS_CACHE:-$HOME/.cache/e4ops}/c2/<version>/ (skipped when already built).
  --force      rebuild even when cached
  --print-dir  only print the cache directory for the pinned version (no build)
env: E4OPS_CACHE (cache root), GOFLAGS/GOPROXY as usual for the go command
USAGE
}

force=0
print_only=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    --print-dir) print_only=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "build-c2: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

repo="$(cd "$(dirname "$0")/.." && pwd)"
. "$repo/scripts/lib/go-wrapper-build.sh"
mod_dir="$repo/test/c2-build"
version="$(go_wrapper_version build-c2 "$mod_dir" github.com/teserakt-io/c2)"

cache_root="${E4OPS_CACHE:-$HOME/.cache/e4ops}"
out="$cache_root/c2/$version"
if [ "$print_only" = 1 ]; then echo "$out"; exit 0; fi
go_wrapper_require_go build-c2 "$mod_dir"

stamp="$(go_wrapper_stamp "$mod_dir")"
if [ "$force" = 0 ] && [ -x "$out/c2" ] && [ -x "$out/c2cli" ] && [ "$(cat "$out/.stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "build-c2: cached $out (C2 $version)" >&2
  echo "$out"
  exit 0
fi

mkdir -p "$out"
tmp="$(mktemp -d "$out/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
echo "build-c2: building C2 $version with $(go version | awk '{print $3}') into $out" >&2
go_wrapper_build "$mod_dir" "$tmp" "" github.com/teserakt-io/c2/cmd/c2 github.com/teserakt-io/c2/cmd/c2cli
mv -f "$tmp/c2" "$out/c2"
mv -f "$tmp/c2cli" "$out/c2cli"
echo "$stamp" > "$out/.stamp"
echo "build-c2: built in $(( $(date +%s) - start )) s" >&2
echo "$out"
