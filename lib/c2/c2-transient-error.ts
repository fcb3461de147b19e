// Which C2 API failures a retry can fix: network errors, 429 and 5xx (and gRPC UNAVAILABLE behind
// the gateway) can; 4xx (bad name, not found) and TLS verification failures cannot.
import { C2ApiError } from './c2-api.ts';

const TRANSIENT_HTTP = new Set([0, 429, 500, 502, 503, 504]);
const GRPC_UNAVAILABLE = 14;

export function isTransientC2Error(err: unknown): boolean {
  if (err instanceof C2ApiError) {
    if (/^TLS:/.test(err.c2Message)) return false;
    return TRANSIENT_HTTP.has(err.status) || err.grpcCode === GRPC_UNAVAILABLE;
  }
  return true;
}
