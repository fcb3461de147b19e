// The one byte-progress helper: a redrawn line with rate and ETA on a TTY, periodic JSON log lines off it.
import { describe, it, expect } from 'vitest';
import { createByteProgress } from '../../lib/progress.ts';
import { createMemoryLogger } from '../../lib/log.ts';

describe('byte progress', () => {
  it('off a TTY: one JSON log line per interval with bytes, rate and ETA; nothing written to the stream', () => {
    let t = 0;
    const written: string[] = [];
    const stream = { isTTY: false, write: (s: string) => { written.push(s); return true; } } as unknown as NodeJS.WriteStream;
    const log = createMemoryLogger();
    const p = createByteProgress({ what: 'dump', total: 1000, log, stream, logEverySeconds: 30, now: () => t });
    t = 10_000; p.update(100); // before the first interval: nothing
    t = 30_000; p.update(300);
    t = 45_000; p.update(450);
    t = 60_000; p.update(600);
    p.done();
    expect(written).toEqual([]);
    expect(log.lines.map((l) => [l.event, l.bytes, l.bytesPerSecond, l.etaSeconds])).toEqual([['progress', 300, 10, 70], ['progress', 600, 10, 40]]);
  });

  it('on a TTY: a line redrawn in place with percent, rate and ETA, ended by a newline', () => {
    let t = 0;
    const written: string[] = [];
    const stream = { isTTY: true, write: (s: string) => { written.push(s); return true; } } as unknown as NodeJS.WriteStream;
    const p = createByteProgress({ what: 'restore', total: 4 << 20, stream, now: () => t });
    t = 1000; p.update(1 << 20);
    t = 1100; p.update(2 << 20); // redraws at most every 200 ms
    t = 2000; p.update(2 << 20);
    p.done();
    expect(written[0]).toBe('\rrestore: 1.0 MiB (25%) · 1.0 MiB/s · eta 3s   ');
    expect(written).toHaveLength(4);
    expect(written.at(-1)).toBe('\n');
  });
});
