# Sourced by scripts/build-c2.sh and scripts/build-pulumi-cli.sh: both build Go programs pinned by a wrapper
# module under test/ into ${E4OPS_CACHE:-$HOME/.cache/e4ops}, skip the build when go.mod/go.sum are unchanged,
# and never let the go command change go.sum. Each function takes the calling script's name for its messages.

# go_wrapper_version NAME MOD_DIR MODULE: the version of MODULE that MOD_DIR/go.mod requires.
go_wrapper_version() {
  local name=$1 mod_dir=$2 module=$3 version
  [ -f "$mod_dir/go.mod" ] || { echo "$name: $mod_dir/go.mod is missing: restore it from git" >&2; return 1; }
  version="$(awk -v m="$module" '$1 == m { print $2 } $2 == m { print $3 }' "$mod_dir/go.mod" | head -n1)"
  [ -n "$version" ] || { echo "$name: no '$module <version>' requirement in $mod_dir/go.mod" >&2; return 1; }
  echo "$version"
}

# go_wrapper_require_go NAME MOD_DIR: the go command on PATH (the go-svc machines keep it in /usr/local/go,
# which CI's PATH may lack).
go_wrapper_require_go() {
  local name=$1 mod_dir=$2
  if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then PATH="/usr/local/go/bin:$PATH"; fi
  command -v go >/dev/null 2>&1 || {
    echo "$name: the go command is not on PATH (Go >= $(awk '$1 == "go" { print $2 }' "$mod_dir/go.mod") needed; /usr/local/go/bin?)" >&2
    return 1
  }
}

# go_wrapper_stamp MOD_DIR: what a cached build was made from (the files' contents, not their path: every checkout
# of the same pins shares one build).
go_wrapper_stamp() {
  cat "$1/go.mod" "$1/go.sum" | sha256sum | cut -c1-16
}

# go_wrapper_build MOD_DIR OUT_DIR LDFLAGS PACKAGE...: static build into OUT_DIR. -mod=readonly: the committed
# go.sum must already cover everything (no silent upgrades in CI).
go_wrapper_build() {
  local mod_dir=$1 out_dir=$2 ldflags=$3
  shift 3
  (cd "$mod_dir" && CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=readonly -buildvcs=false" \
    go build -trimpath -ldflags "-s -w $ldflags" -o "$out_dir/" "$@")
}
