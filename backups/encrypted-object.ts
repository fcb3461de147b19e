// One object of a backup set, in one pass: producer command(s) → age (to public-key recipients) →
// SHA-256 + byte count in this process → every target at once. Programs are joined by OS pipes;
// only the ciphertext crosses Node, with backpressure, so memory stays flat at any size.
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import type { Readable } from 'node:stream';
import { BackupError, type BackupErrorKind } from './exit-codes.ts';
import { drained, type BackupTarget, type ObjectWriter } from './targets.ts';

export interface PipelineStage {
  cmd: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  /** What a failure of this program means for the run's exit code. */
  errorKind: Exclude<BackupErrorKind, 'ok'>;
  /** Human name for messages, e.g. "pg_dump of c2". */
  what: string;
}

export interface ProgressEvent { object: string; bytes: number }
/** May return a promise: the pipeline waits for it (backpressure), which tests use to inject faults. */
export type ProgressHook = (p: ProgressEvent) => void | Promise<void>;

export interface StoreObjectOptions {
  setId: string;
  name: string;
  stages: PipelineStage[];
  /** age arguments naming the recipients (-r KEY ... / -R FILE). */
  recipientArgs: string[];
  targets: BackupTarget[];
  onProgress?: ProgressHook;
  ageBin?: string;
  /** Aborting (the run's --timeout) stops the programs; the call rejects with the signal's reason. */
  signal?: AbortSignal;
}

export interface StoredObject {
  name: string;
  size: number;
  sha256: string;
  okTargets: BackupTarget[];
  failures: { target: BackupTarget; error: BackupError }[];
}

interface Running { stage: PipelineStage; child: ChildProcess; stderr: string; exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }> }

function startStage(stage: PipelineStage, stdin: 'ignore' | Readable): Running {
  const child = spawn(stage.cmd, stage.args, { stdio: [stdin, 'pipe', 'pipe'], env: stage.env ?? process.env });
  const r: Running = { stage, child, stderr: '', exit: undefined as never };
  child.stderr!.on('data', (d: Buffer) => { r.stderr = (r.stderr + d.toString()).slice(-4000); });
  r.exit = new Promise((resolve) => {
    child.once('error', (e) => { r.stderr += `\n${e.message}`; resolve({ code: -1, signal: null }); });
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
  return r;
}

const tail = (s: string) => s.trim().split('\n').filter(Boolean).slice(-3).join(' | ');

/** Encrypt the output of `stages` and store it under <setId>/<name> on every target. */
export async function storeEncryptedObject(opts: StoreObjectOptions): Promise<StoredObject> {
  const age: PipelineStage = { cmd: opts.ageBin ?? 'age', args: ['--encrypt', ...opts.recipientArgs], errorKind: 'config', what: 'age --encrypt' };
  const running: Running[] = [];
  let prev: Readable | undefined;
  for (const stage of [...opts.stages, age]) {
    const r = startStage(stage, prev ?? 'ignore');
    // The child holds its own copy of the pipe; closing ours lets a writer get EPIPE if a reader dies.
    if (prev) prev.destroy();
    running.push(r);
    prev = r.child.stdout!;
  }
  const out = prev!;
  const onAbort = () => { for (const r of running) r.child.kill('SIGTERM'); };
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    return await relayToTargets(opts, running, out);
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
  }
}

async function relayToTargets(opts: StoreObjectOptions, running: Running[], out: Readable): Promise<StoredObject> {
  const writers = opts.targets.map((target) => {
    const w: { target: BackupTarget; writer: ObjectWriter; failed?: BackupError } = { target, writer: target.openWrite(opts.setId, opts.name) };
    w.writer.stream.on('error', () => undefined); // reported through writer.done
    return w;
  });
  const markFailed = async (w: (typeof writers)[number]) => {
    if (w.failed) return;
    const e = await w.writer.done.then(() => undefined, (err) => err);
    w.failed = e instanceof BackupError ? e
      : new BackupError('target', `target ${w.target.spec}: writing ${opts.setId}/${opts.name}: ${(e as Error)?.message ?? 'stream closed'}`);
    w.writer.abort();
  };
  const hash = crypto.createHash('sha256');
  let size = 0;
  let allTargetsFailed = false;
  try {
    for await (const chunk of out as AsyncIterable<Buffer>) {
      hash.update(chunk);
      size += chunk.length;
      const waits: Promise<void>[] = [];
      for (const w of writers) {
        if (w.failed) continue;
        if (w.writer.stream.destroyed || w.writer.stream.writableEnded) { waits.push(markFailed(w)); continue; }
        if (!w.writer.stream.write(chunk)) waits.push(drained(w.writer.stream).catch(() => markFailed(w)));
      }
      await Promise.all(waits);
      if (writers.every((w) => w.failed)) {
        allTargetsFailed = true;
        for (const r of running) r.child.kill('SIGTERM');
        break;
      }
      if (opts.onProgress) await opts.onProgress({ object: opts.name, bytes: size });
    }
  } catch (e) {
    // Our own failure (a progress hook, a bug): stop the programs and leave the partial object behind.
    for (const r of running) r.child.kill('SIGTERM');
    for (const w of writers) w.writer.abort();
    await Promise.all(running.map((r) => r.exit));
    throw e;
  }
  const exits = await Promise.all(running.map((r) => r.exit));
  if (opts.signal?.aborted) {
    for (const w of writers) w.writer.abort();
    throw opts.signal.reason;
  }
  // A failed producer (pg_dump losing its server) still lets age finish a well-formed file of the
  // truncated stream: the exit codes, not the bytes, say whether the object is whole.
  if (!allTargetsFailed) {
    for (let i = 0; i < running.length; i++) {
      const { code, signal } = exits[i];
      if (code !== 0) {
        for (const w of writers) w.writer.abort();
        const r = running[i];
        throw new BackupError(r.stage.errorKind, `${r.stage.what} failed (${signal ? `signal ${signal}` : `exit ${code}`}) while writing ${opts.name}: ${tail(r.stderr) || 'no message'}`,
          { object: opts.name });
      }
    }
  }
  for (const w of writers) {
    if (w.failed) continue;
    w.writer.stream.end();
    try { await w.writer.done; } catch { await markFailed(w); }
  }
  const failures = writers.filter((w) => w.failed).map((w) => ({ target: w.target, error: w.failed! }));
  return {
    name: opts.name, size, sha256: hash.digest('hex'),
    okTargets: writers.filter((w) => !w.failed).map((w) => w.target), failures,
  };
}
