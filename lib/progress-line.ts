// A one-line progress display on a TTY (stderr, redrawn in place at most 10 times a second);
// off a TTY, nothing: the JSON log carries the progress events instead.

export interface ProgressLine {
  tick(done: number, failed: number): void;
  end(): void;
}

export function createProgressLine(label: string, total: number, stream: NodeJS.WriteStream = process.stderr): ProgressLine {
  if (!stream.isTTY) return { tick() {}, end() {} };
  const started = Date.now();
  let last = 0;
  let drawn = false;
  const draw = (done: number, failed: number) => {
    const secs = (Date.now() - started) / 1000;
    const rate = secs > 0 ? done / secs : 0;
    const pct = total ? Math.floor((done / total) * 100) : 100;
    const eta = rate > 0 ? Math.ceil((total - done) / rate) : 0;
    stream.write(`\r${label}: ${done}/${total} (${pct}%) failed ${failed} · ${rate.toFixed(0)}/s · eta ${eta}s   `);
    drawn = true;
  };
  return {
    tick(done, failed) {
      const now = Date.now();
      if (now - last < 100 && done < total) return;
      last = now;
      draw(done, failed);
    },
    end() {
      if (drawn) stream.write('\n');
    },
  };
}
