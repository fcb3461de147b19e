import { describe, it, expect } from 'vitest';
import { installStackMocks } from './pulumi-mocks.ts';

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
});
