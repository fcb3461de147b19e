// Retries with exponential backoff and jitter, and a bounded-concurrency map: the two loops a
// resync runs against C2's API.

export interface RetryOptions {
  /** Attempts in total (1 = no retry). */
  attempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
  /** Return false for errors that a retry cannot fix (e.g. 4xx). Default: retry everything. */
  retryable?: (err: unknown) => boolean;
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
  signal?: AbortSignal;
}

export class RetriesExhaustedError extends Error {
  constructor(message: string, readonly attempts: number, readonly lastError: unknown) {
    super(message);
  }
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => { clearTimeout(t); reject(signal.reason); }, { once: true });
  });

/** Run fn until it succeeds; returns its value and the number of attempts used. */
export async function withRetries<T>(fn: (attempt: number) => Promise<T>, opts: RetryOptions): Promise<{ value: T; attempts: number }> {
  let last: unknown;
  for (let attempt = 1; attempt <= opts.attempts; attempt++) {
    opts.signal?.throwIfAborted();
    try {
      return { value: await fn(attempt), attempts: attempt };
    } catch (e) {
      last = e;
      if (opts.signal?.aborted) throw e;
      if (opts.retryable && !opts.retryable(e)) throw new RetriesExhaustedError((e as Error)?.message ?? String(e), attempt, e);
      if (attempt === opts.attempts) break;
      const exp = Math.min(opts.maxDelayMs, opts.baseDelayMs * 2 ** (attempt - 1));
      const delay = Math.round(exp / 2 + Math.random() * (exp / 2));
      opts.onRetry?.(e, attempt, delay);
      await sleep(delay, opts.signal);
    }
  }
  throw new RetriesExhaustedError(`${(last as Error)?.message ?? String(last)} (after ${opts.attempts} attempts)`, opts.attempts, last);
}

/** Run worker over items with at most `concurrency` in flight; stops taking new items once aborted. */
export async function forEachBounded<T>(items: readonly T[], concurrency: number, worker: (item: T, index: number) => Promise<void>, signal?: AbortSignal): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.max(1, Math.min(concurrency, items.length)) }, async () => {
    while (next < items.length) {
      if (signal?.aborted) return;
      const i = next++;
      await worker(items[i], i);
    }
  });
  await Promise.all(lanes);
}
