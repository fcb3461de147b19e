// Prints one plain closing line, "tests: N passed, N failed, N skipped", after vitest's own report,
// so CI logs and humans read the same figure.
import type { Reporter, File, Task } from 'vitest';

function collect(tasks: Task[], acc: { passed: number; failed: number; skipped: number }) {
  for (const t of tasks) {
    if (t.type === 'suite') collect(t.tasks, acc);
    else if (t.mode === 'skip' || t.mode === 'todo') acc.skipped++;
    else if (t.result?.state === 'pass') acc.passed++;
    else if (t.result?.state === 'fail') acc.failed++;
    else acc.skipped++;
  }
  return acc;
}

export default class SummaryReporter implements Reporter {
  onFinished(files: File[] = [], errors: unknown[] = []) {
    const acc = collect(files, { passed: 0, failed: 0, skipped: 0 });
    // A file that failed to load has no tests but counts as a failure.
    acc.failed += files.filter((f) => f.result?.state === 'fail' && f.tasks.length === 0).length + errors.length;
    process.stdout.write(`\ntests: ${acc.passed} passed, ${acc.failed} failed, ${acc.skipped} skipped\n`);
  }
}
