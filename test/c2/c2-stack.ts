import { c2BinaryAvailable } from '../../lib/servers/c2.ts';

/**
 * Tests of the real C2 need the binary from scripts/build-c2.sh. Locally they skip when it is missing;
 * under CI (CI=true) they run and fail, since .ci/run builds it first.
 */
export const skipWithoutC2 = !c2BinaryAvailable() && !process.env.CI;
export const C2_MISSING_REASON = 'C2 binary not built: run scripts/build-c2.sh';
