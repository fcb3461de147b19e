// Production C2 for restore tests and bench:restore: a service script that starts the real C2 detached
// (as nobody, from its own dir, so it outlives the restore that starts it) and stops it, as a unit
// file or a container runtime would. The restore drives it with --c2-stop-command/--c2-start-command.
import fs from 'node:fs';

/** Write the service script: `sh FILE start|stop`. */
export function writeC2Service(file: string, c2Dir: string, passFile: string): void {
  fs.writeFileSync(file, `#!/bin/sh
D='${c2Dir}'
case "$1" in
start)
  # Idempotent, like systemctl start: a C2 already running is left alone.
  if [ -f "$D/c2.pid" ] && [ -d /proc/$(cat "$D/c2.pid") ] && ! grep -q '^State:.*Z' /proc/$(cat "$D/c2.pid")/status 2>/dev/null; then exit 0; fi
  cd "$D" || exit 1
  E4C2_DB_ENCRYPTION_PASSPHRASE="$(cat '${passFile}')" setsid setpriv --reuid=65534 --regid=65534 --clear-groups "$D/bin/c2" >> "$D/c2.log" 2>&1 < /dev/null &
  echo $! > "$D/c2.pid" ;;
stop)
  [ -f "$D/c2.pid" ] || exit 0
  pid=$(cat "$D/c2.pid")
  kill "$pid" 2>/dev/null
  for i in $(seq 200); do
    { [ -d /proc/$pid ] && ! grep -q '^State:.*Z' /proc/$pid/status 2>/dev/null; } || { rm -f "$D/c2.pid"; exit 0; }
    sleep 0.05
  done
  kill -9 "$pid"; rm -f "$D/c2.pid" ;;
esac
`, { mode: 0o755 });
}
