// The Pulumi program as a function: read and validate the stack's config, then declare the whole
// deployment. stacks/index.ts (Pulumi.yaml's main) runs it at import; the Automation API runs it as
// an inline program (test/stacks/pulumi-engine.slow.test.ts), where the Node process is its own
// language host.
import { REPO_ROOT } from '../lib/repo-root.ts';
import { readStackConfig } from './stack-config.ts';
import { defineStack, type StackOutputs } from './program.ts';

export function runStackProgram(): StackOutputs {
  // Pulumi records a JavaScript stack trace for every promise and resource it creates. With tsx's
  // source maps on, mapping those traces costs tens of milliseconds per resource (about 4 s for the
  // HA profile); with them off, about 1 s. Settings errors carry their own messages, so source maps
  // stay off while the program runs (see bench/stacks.ts).
  process.setSourceMapsEnabled(false);
  const { settings, secrets } = readStackConfig();
  return defineStack(settings, secrets, { repoRoot: REPO_ROOT });
}
