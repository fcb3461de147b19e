// "Every documented exit code is produced by some test." docs/reference/exit-codes.md documents every
// code of lib/cli/exit-codes.ts; this table says, per code, which test makes a real command (or the
// library step behind it) end with it, and the test below checks that the file exists and asserts that
// code. A code no command produces yet is listed as reserved, with the issue that will produce it; a
// reserved code that a declared command already declares fails here (it needs its test first).
import { describe, it, expect } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { EXIT_CODES, type ExitKind } from '../../lib/cli/exit-codes.ts';
import { REPO_ROOT } from '../../lib/repo-root.ts';
import { SUBCOMMANDS, isDeclared, loadCommand } from '../../scripts/e4ops.ts';
import { commandTree as walk } from '../../lib/cli/command.ts';

type Producer = { test: string } | { reserved: string };

export const EXIT_CODE_PRODUCERS: Record<ExitKind, Producer> = {
  ok: { test: 'test/cli/resync-cli-c2.test.ts' },
  internal: { test: 'test/dashboards/dashboards-script.test.ts' }, // Elasticsearch unreachable
  usage: { test: 'test/cli/every-command.test.ts' },
  sourceUnreachable: { test: 'test/backups/backup-run.test.ts' },
  target: { test: 'test/backups/target-faults.test.ts' },
  locked: { test: 'test/backups/backup-run.test.ts' },
  integrity: { test: 'test/backups/backup-run.test.ts' },
  wrongIdentity: { test: 'test/backups/backup-run.test.ts' },
  checkFailed: { test: 'test/drill/restore-drill-e2e.test.ts' },
  refused: { test: 'test/cli/resync-cli-c2.test.ts' },
  topicsFailed: { test: 'test/cli/resync-cli-c2.test.ts' },
  devicesUnserved: { test: 'test/resync/resync-devices.test.ts' }, // --follow-up while a device stays away
  timedOut: { test: 'test/backups/backup-defects.test.ts' }, // lock wait and --timeout
  wrongPassphrase: { test: 'test/backups/backup-defects.test.ts' }, // passphrase opens no stored key
  pgbackrest: { test: 'test/pitr/pitr-drill.test.ts' }, // missing WAL segment
  c2Unreachable: { test: 'test/provisioning/bundles-and-input.test.ts' }, // provision new against a C2 that does not answer
  incomplete: { test: 'test/provisioning/provision-c2.test.ts' }, // first-use could not serve a device
  interrupted: { test: 'test/cli/command.test.ts' },
  terminated: { test: 'test/drill/drill-teardown.test.ts' },
};

/** The ways a test states an exit code: `.toBe(9)`, `EXIT.refused`, `'refused'`. */
function assertsCode(text: string, kind: ExitKind): boolean {
  const { code } = EXIT_CODES[kind];
  return new RegExp(`toBe\\(${code}\\)|EXIT\\.${kind}\\b|['"]${kind}['"]`).test(text);
}

describe('every documented exit code is produced by some test', () => {
  it('the table covers every code of lib/cli/exit-codes.ts', () => {
    expect(Object.keys(EXIT_CODE_PRODUCERS).sort()).toEqual(Object.keys(EXIT_CODES).sort());
  });

  for (const [kind, producer] of Object.entries(EXIT_CODE_PRODUCERS) as [ExitKind, Producer][]) {
    if ('test' in producer) {
      it(`${EXIT_CODES[kind].code} (${kind}) is asserted by ${producer.test}`, () => {
        const file = path.join(REPO_ROOT, producer.test);
        expect(fs.existsSync(file), `${producer.test} is gone: name the test that produces exit ${EXIT_CODES[kind].code} now`).toBe(true);
        expect(assertsCode(fs.readFileSync(file, 'utf8'), kind), `${producer.test} never asserts exit ${EXIT_CODES[kind].code} (${kind})`).toBe(true);
      });
    }
  }

  it('no declared command declares a code still listed as reserved', async () => {
    const reserved = (Object.keys(EXIT_CODE_PRODUCERS) as ExitKind[]).filter((k) => 'reserved' in EXIT_CODE_PRODUCERS[k]);
    const offenders: string[] = [];
    for (const name of Object.keys(SUBCOMMANDS).filter(isDeclared)) {
      for (const spec of walk(await loadCommand(name))) for (const k of spec.exitCodes ?? []) if (reserved.includes(k)) offenders.push(`e4ops ${spec.name}: ${k}`);
    }
    expect(offenders, 'these commands can exit with a code no test produces: add the test and list it above').toEqual([]);
  });
});
