import { describe, it, expect, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';

// scripts/check-config.ts: the operator's pre-flight check, exit 0 / non-zero.
describe('scripts/check-config.ts', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-check-'));
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const run = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', 'scripts/check-config.ts', ...args], { encoding: 'utf8' });

  it('accepts both example stack files as shipped', () => {
    const r = run('Pulumi.minimal.yaml', 'Pulumi.ha.yaml');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Pulumi\.minimal\.yaml: valid \(profile minimal/);
    expect(r.stdout).toMatch(/Pulumi\.ha\.yaml: valid \(profile ha, 3 C2 replica/);
  });

  it('exits non-zero on a bad file, naming the keys; notes plaintext and encrypted secrets', () => {
    const bad = path.join(tmp, 'Pulumi.bad.yaml');
    fs.writeFileSync(bad, [
      'config:',
      '  e4ops:settings:',
      '    profile: ha',
      '    c2: { replicas: 1 }',
      '  e4ops:c2DbPassphrase: short',
      '  e4ops:elasticPassword:',
      '    secure: v1:abc',
      '  e4ops:colour: blue',
    ].join('\n'));
    const r = run(bad);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/e4ops:colour: unknown config key/);
    fs.writeFileSync(bad, 'config:\n  e4ops:settings:\n    profile: ha\n    c2: { replicas: 1 }\n  e4ops:c2DbPassphrase: short\n');
    const r2 = run(bad);
    expect(r2.status).toBe(1);
    expect(r2.stderr).toMatch(/c2\.replicas: is 1/);
    const good = path.join(tmp, 'Pulumi.good.yaml');
    fs.writeFileSync(good, 'config:\n  e4ops:settings:\n    profile: minimal\n  e4ops:c2DbPassphrase: a-passphrase-long-enough\n  e4ops:elasticPassword:\n    secure: v1:abc\n');
    const r3 = run(good);
    expect(r3.status, r3.stderr).toBe(0);
    expect(r3.stdout).toMatch(/c2DbPassphrase: stored in plaintext/);
    expect(r3.stdout).toMatch(/elasticPassword: encrypted in the stack file/);
  });

  it('prints usage with --help, the schema with --schema, and exits 2 without a file', () => {
    expect(run('--help').stdout).toMatch(/Usage: e4ops check-config/);
    const schema = JSON.parse(run('--schema').stdout);
    expect(schema.additionalProperties).toBe(false);
    expect(Object.keys(schema.properties)).toEqual(expect.arrayContaining(['profile', 'c2', 'backup', 'monitoring']));
    expect(run().status).toBe(2);
  });
});
