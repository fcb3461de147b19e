#!/usr/bin/env bash
# Debian packages that e4ops and its tests use. Idempotent: apt-get skips what is installed.
set -euo pipefail
PACKAGES=(
  postgresql postgresql-client   # throwaway servers, pg_dump/pg_restore
  mosquitto mosquitto-clients    # broker under test
  haproxy                        # haproxy -c on rendered configs
  prometheus                     # promtool
  age rclone zstd                # backup encryption, off-site targets, compression
  pgbackrest                     # point-in-time recovery: WAL archive, physical backups, PITR drills
  patroni etcd-server rsyslog rsyslog-elasticsearch prometheus-blackbox-exporter  # validate rendered stack configs
  openssl ca-certificates curl git
  systemd                        # systemd-analyze verify on the appliance's rendered units
  libxml2-utils                  # xmllint: the appliance's OVF descriptor against its schema
  docker.io mmdebstrap           # a private Docker engine for the C2 image tests; their Debian base from mmdebstrap
)
missing=()
for p in "${PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "install-deps: need root to apt-get install ${missing[*]}" >&2; exit 1; }
  apt-get update -qq
  # Tests start their own servers; keep package scripts from starting etcd, prometheus, haproxy ... on
  # their default ports (policy-rc.d exit 101 = "action forbidden"), unless the machine already has a policy.
  own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && own_policy=1
  fi
  rc=0
  apt-get install -y -qq --no-install-recommends "${missing[@]}" || rc=$?
  [ "$own_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  [ "$rc" = 0 ] || { echo "install-deps: apt-get install failed (exit $rc)" >&2; exit "$rc"; }
fi
# Debian starts packaged services; the tests start their own, so the packaged ones may stay as they are.
node --version | grep -qE '^v(2[0-9])' || { echo "install-deps: Node.js >= 20 required (found $(node --version 2>/dev/null || echo none))" >&2; exit 1; }
