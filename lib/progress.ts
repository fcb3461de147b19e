// Progress of long byte streams (dump, upload, download, restore): on a TTY one line redrawn in place
// (bytes, rate, ETA when the total is known); off a TTY a JSON log line every `logEverySeconds`, so
// cron/journald show that a long run is alive and how fast it goes. One helper for every command.
// Counts of items (devices, topics) have their own display: lib/progress-line.ts.
import type { Logger } from './log.ts';

export interface ByteProgress {
  /** Bytes done so far (absolute, not a delta). */
  update(bytes: number): void;
  /** Final line / log event. */
  done(bytes?: number): void;
}

export interface ByteProgressOptions {
  /** What is moving, e.g. "postgres.pgdump.zst.age → 2 targets". */
  what: string;
  /** Expected total bytes, when known (ETA). */
  total?: number;
  log?: Logger;
  /** Default: process.stderr. */
  stream?: NodeJS.WriteStream;
  /** Off a TTY: one log line per this many seconds (default 30). */
  logEverySeconds?: number;
  now?: () => number;
}

export function humanBytes(n: number): string {
  return n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(2)} GiB` : n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`;
}

export function createByteProgress(o: ByteProgressOptions): ByteProgress {
  const stream = o.stream ?? process.stderr;
  const now = o.now ?? Date.now;
  const tty = !!stream.isTTY;
  const started = now();
  let last = started;
  let latest = 0;
  let drawn = false;
  const stats = (bytes: number) => {
    const secs = Math.max((now() - started) / 1000, 0.001);
    const rate = bytes / secs;
    const eta = o.total && rate > 0 ? Math.max(0, Math.ceil((o.total - bytes) / rate)) : undefined;
    return { secs, rate, eta };
  };
  const draw = (bytes: number) => {
    const { rate, eta } = stats(bytes);
    const pct = o.total ? ` (${Math.min(100, Math.floor((bytes / o.total) * 100))}%)` : '';
    stream.write(`\r${o.what}: ${humanBytes(bytes)}${pct} · ${humanBytes(rate)}/s${eta !== undefined ? ` · eta ${eta}s` : ''}   `);
    drawn = true;
  };
  const logLine = (event: string, bytes: number) => {
    const { secs, rate, eta } = stats(bytes);
    o.log?.info(event, { what: o.what, bytes, ...(o.total ? { totalBytes: o.total } : {}), bytesPerSecond: Math.round(rate), seconds: Math.round(secs), ...(eta !== undefined ? { etaSeconds: eta } : {}) });
  };
  return {
    update(bytes) {
      latest = bytes;
      const t = now();
      if (tty) {
        if (t - last >= 200) { last = t; draw(bytes); }
      } else if (t - last >= (o.logEverySeconds ?? 30) * 1000) {
        last = t;
        logLine('progress', bytes);
      }
    },
    done(bytes = latest) {
      if (tty && drawn) { draw(bytes); stream.write('\n'); }
    },
  };
}
