import { describe, it, expect } from 'vitest';
import * as pulumi from '@pulumi/pulumi';
import { installStackMocks } from './pulumi-mocks.ts';
import { readStackConfig } from '../../stacks/stack-config.ts';

// `pulumi preview` on a bad stack stops before registering anything, with the validation message.
describe('Pulumi program with invalid settings', () => {
  it('throws the settings error and registers no resource', async () => {
    const rec = await installStackMocks('broken', {
      'e4ops:settings': JSON.stringify({ profile: 'ha', c2: { replicas: 1 }, etcd: { nodes: 2 } }),
      'e4ops:c2DbPassphrase': 'short',
    }, ['e4ops:c2DbPassphrase']);
    await expect(import('../../stacks/index.ts')).rejects.toThrow(/c2DbPassphrase: is 5 bytes/);
    await new Promise((r) => setTimeout(r, 200));
    expect(rec.resources).toEqual([]);
  });

  // Pulumi prints a RunError as its message alone. Its language host also runs every uncaught error
  // through util.inspect, which on Node 20.20 loops for 30-80 s on Pulumi's own stack frames
  // (nodejs/node#64011; see stacks/stack-config.ts): the settings error carries no frames.
  it.each([
    ['a schema problem', { 'e4ops:settings': JSON.stringify({ profile: 'minimal', c2: { replicas: 0 } }) }, /stack bad settings are invalid[^]*c2\.replicas/],
    ['settings that are not an object', { 'e4ops:settings': 'profile=minimal' }, /e4ops:settings: is not an object/],
    ['no settings at all', {}, /e4ops:settings: missing\. Fix: add it to Pulumi\.bad\.yaml/],
  ])('reports %s as a Pulumi RunError carrying only the settings text', async (_what, config, text) => {
    await installStackMocks('bad', config);
    let err: unknown;
    try { readStackConfig(); } catch (e) { err = e; }
    expect(pulumi.RunError.isInstance(err), 'a pulumi.RunError').toBe(true);
    expect((err as Error).message).toMatch(text);
    // Nothing besides Pulumi's own RunError marker rides along for its error formatting to walk.
    expect(Object.keys(err as object)).toEqual(['__pulumiRunError']);
    expect((err as Error).stack).toBe(`Error: ${(err as Error).message}`);
  });
});
