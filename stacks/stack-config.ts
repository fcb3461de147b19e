import * as pulumi from '@pulumi/pulumi';
import { validateStackSettings, SECRET_KEYS, StackSettingsError, type SecretKey, type StackSettings, type StackSecrets } from '../lib/settings/stack-settings.ts';

// Read and validate the stack's configuration before anything is registered:
//   e4ops:settings   the settings object (lib/settings schema)
//   e4ops:<secret>   pulumi config set --secret <secret> ... (optional; generated when unset)

export const PROJECT = 'e4ops';

export function readStackConfig(): { settings: StackSettings; secrets: StackSecrets } {
  try {
    return readAndValidate();
  } catch (err) {
    if (err instanceof StackSettingsError) throw settingsRunError(err.message);
    throw err;
  }
}

// What the engine shows for a bad setting: the message alone (every problem with its fix). Pulumi
// prints a RunError without its stack, and the error carries no frames: Pulumi's language host also
// formats every uncaught error with util.inspect(err, { colors: true }), and Node 20.20 loops on a
// frame in node_modules/@scope/<file> (here @pulumi/resource.ts) until a string overflows
// (nodejs/node#64011): 30-80 s before the error was shown (docs/operate/deploy.md).
function settingsRunError(message: string): pulumi.RunError {
  const err = new pulumi.RunError(message);
  err.stack = `${err.name}: ${message}`;
  return err;
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
