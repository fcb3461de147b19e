import * as pulumi from '@pulumi/pulumi';
import * as random from '@pulumi/random';
import { SECRET_KEYS, type SecretKey } from '../lib/settings/stack-settings.ts';

// Every secret the stack uses: the operator's `pulumi config set --secret KEY` value when given,
// else a RandomPassword kept in the (encrypted) state. Always a secret Output; never exported.

export type StackSecretOutputs = Record<SecretKey, pulumi.Output<string>>;

export function resolveSecrets(given: Partial<Record<SecretKey, string>>, parent?: pulumi.Resource): StackSecretOutputs {
  const out = {} as StackSecretOutputs;
  for (const key of Object.keys(SECRET_KEYS) as SecretKey[]) {
    const v = given[key];
    if (v !== undefined) {
      out[key] = pulumi.secret(v);
    } else {
      // Alphanumeric only: the values land in URLs, CSV files and shell environments.
      const pw = new random.RandomPassword(`secret-${key}`, { length: Math.max(32, SECRET_KEYS[key].minBytes), special: false }, { parent });
      out[key] = pulumi.secret(pw.result);
    }
  }
  return out;
}
