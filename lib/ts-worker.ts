// Worker threads that run one of our TypeScript modules. A worker starts with none of the parent's
// module hooks (tsx's loader, or a test runner's transform), so it registers tsx itself before importing
// the module. Resolved through require so it works wherever the package is installed, test runners included.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';

const require = createRequire(import.meta.url);

/** Where tsx's registration API is, or undefined when tsx cannot be found (then run in-process instead). */
export function tsxRegisterModule(): string | undefined {
  // The ESM build: tsx's CommonJS register() resolves its own loader at a path that does not exist (4.23).
  // require.resolve only sees the "require" condition, whose file sits beside the ESM one.
  let cjs: string;
  try { cjs = require.resolve('tsx/esm/api'); } catch { return undefined; }
  const esm = path.join(path.dirname(cjs), 'index.mjs');
  return fs.existsSync(esm) ? pathToFileURL(esm).href : undefined;
}

const BOOT = `
const { workerData, parentPort } = require('node:worker_threads');
import(workerData.tsxApi)
  .then((m) => { m.register(); return import(workerData.module); })
  .catch((e) => { parentPort.postMessage({ bootError: String((e && e.stack) || e) }); process.exit(1); });
`;

/**
 * Start a worker thread running `moduleUrl` (a .ts file of this repository) with `data` as workerData.data.
 * Returns undefined when tsx cannot be resolved. A module that fails to load posts { bootError } and exits.
 */
export function startTsWorker(moduleUrl: URL, data: unknown, name?: string): Worker | undefined {
  const tsxApi = tsxRegisterModule();
  if (!tsxApi) return undefined;
  return new Worker(BOOT, { eval: true, name, workerData: { tsxApi, module: moduleUrl.href, data } });
}
