import * as pulumi from '@pulumi/pulumi';
import { validateStackSettings, SECRET_KEYS, StackSettingsError, type SecretKey, type StackSettings, type StackSecrets } from '../lib/settings/stack-settings.ts';

// Read and validate the stack's configuration before anything is registered:
//   e4ops:settings   the settings object (lib/settings schema)
//   e4ops:<secret>   pulumi config set --secret <secret> ... (optional; generated when unset)

export const PROJECT = 'e4ops';

// Settings errors leave the program as a pulumi.RunError: Pulumi reports a RunError by its message
// alone. Any other error is formatted with util.inspect and its stack trace, which under the real
// engine took most of a minute (docs/operate/deploy.md, "Pulumi CLI without the installer").
export function readStackConfig(): { settings: StackSettings; secrets: StackSecrets } {
  try {
    return readAndValidate();
  } catch (err) {
    if (err instanceof StackSettingsError) throw new pulumi.RunError(err.message);
    throw err;
  }
}

function readAndValidate(): { settings: StackSettings; secrets: StackSecrets } {
  const raw = pulumi.runtime.getConfig(`${PROJECT}:settings`);
  let parsed: unknown;
  if (raw === undefined) {
    throw new StackSettingsError([`${PROJECT}:settings: missing. Fix: add it to Pulumi.${pulumi.getStack()}.yaml (see Pulumi.minimal.yaml), with at least profile: minimal or ha`], `stack ${pulumi.getStack()}`);
  }
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new StackSettingsError([`${PROJECT}:settings: is not an object (got ${JSON.stringify(raw).slice(0, 40)}). Fix: write it as a YAML mapping under config:`], `stack ${pulumi.getStack()}`);
  }
  const secrets: StackSecrets = {};
  for (const key of Object.keys(SECRET_KEYS) as SecretKey[]) {
    // Plaintext read for validation only (length rules); the program wraps it in pulumi.secret.
    const v = pulumi.runtime.getConfig(`${PROJECT}:${key}`);
    if (v !== undefined) secrets[key] = v;
  }
  return { settings: validateStackSettings(parsed, secrets, `stack ${pulumi.getStack()} settings`), secrets };
}
