// Builds and runs the Go vector program (this folder, a Go module requiring e4go from the module proxy).
// The binary is cached outside the repository, keyed by the hash of the module's sources, so repeated
// test runs on one machine build once. Tests skip with a clear message when no Go toolchain exists.
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const MODULE_DIR = dirname(fileURLToPath(import.meta.url));
const execFileP = promisify(execFile);

/** The `go` command: $GO, then PATH, then /usr/local/go/bin/go; undefined when none exists. */
export function findGo(): string | undefined {
  const candidates = [process.env.GO, 'go', '/usr/local/go/bin/go'].filter((c): c is string => !!c);
  for (const c of candidates) {
    try {
      execFileSync(c, ['version'], { stdio: 'ignore' });
      return c;
    } catch {
      /* try the next */
    }
  }
  return undefined;
}

export function cacheDir(): string {
  return process.env.E4OPS_GO_VECTORS_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'e4ops', 'go-vectors');
}

/** Build (or reuse) the go-vectors binary; returns its path. Throws with Go's output when the build fails. */
export async function buildGoVectors(go: string): Promise<string> {
  const h = createHash('sha256');
  for (const f of ['go.mod', 'go.sum', 'main.go']) h.update(readFileSync(join(MODULE_DIR, f)));
  const bin = join(cacheDir(), `go-vectors-${h.digest('hex').slice(0, 16)}`);
  if (existsSync(bin)) return bin;
  mkdirSync(cacheDir(), { recursive: true });
  const tmp = `${bin}.tmp${process.pid}`;
  try {
    await execFileP(go, ['build', '-mod=readonly', '-o', tmp, '.'], {
      cwd: MODULE_DIR,
      env: {
        ...process.env,
        CGO_ENABLED: '0',
        GOFLAGS: '-buildvcs=false',
        // without $HOME (some CI runners) Go has no default build cache or module cache
        ...(process.env.HOME ? {} : { GOCACHE: join(cacheDir(), 'gocache'), GOPATH: join(cacheDir(), 'gopath') }),
      },
      maxBuffer: 16 << 20,
    });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`building test/go-vectors failed (needs the Go module proxy for github.com/teserakt-io/e4go): ${err.stderr || err.message}`);
  }
  renameSync(tmp, bin);
  return bin;
}

async function run(bin: string, args: string[], input?: string): Promise<string> {
  return await new Promise((resolve, reject) => {
    const child = execFile(bin, args, { maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      // `check` exits 1 with a JSON report on failed checks: hand the report back to the caller.
      if (err && !(args[0] === 'check' && stdout.trim().startsWith('{'))) reject(new Error(`go-vectors ${args.join(' ')}: ${stderr || err.message}`));
      else resolve(stdout);
    });
    if (input !== undefined) child.stdin!.end(input);
  });
}

/** Go-produced vectors (see main.go `emit`). Byte values are lowercase hex strings. */
export async function emitGoVectors(bin: string): Promise<any> {
  return JSON.parse(await run(bin, ['emit']));
}

export interface GoCheckReport {
  ok: boolean;
  checked: number;
  failures: string[] | null;
}

/** Have e4go verify TypeScript-produced values (same JSON shape as `emit`). */
export async function checkWithGo(bin: string, values: unknown): Promise<GoCheckReport> {
  return JSON.parse(await run(bin, ['check'], JSON.stringify(values)));
}

/** e4go's DeriveSymKey (64 MiB, t=1, p=4) timed inside the Go process. */
export async function timeGoArgon2(bin: string): Promise<{ seconds: number; key: string; password: string }> {
  return JSON.parse(await run(bin, ['argon2-time']));
}

/** e4go's UnprotectSymKey over `count` 1 KiB messages, timed inside the Go process. */
export async function timeGoUnprotect(bin: string, count: number): Promise<{ seconds: number; messages: number; bytes: number }> {
  return JSON.parse(await run(bin, ['unprotect-throughput', String(count)]));
}
