// Symmetric E4 protection, used for messages in symkey mode and for every command C2 sends
// (e4go crypto.ProtectSymKey / UnprotectSymKey):
//   protected = LE64(unix seconds) ‖ AES-SIV(K ‖ K, AD = [timestamp], payload)   (tag16 ‖ ct)
// Receivers refuse timestamps in the future and older than 10 minutes.
import { sivOpenWithDoubledKey, sivSealWithDoubledKey, SivAuthenticationError } from './aes-siv.ts';
import { E4Error, NotAuthenticError, TimestampInFutureError, TimestampTooOldError } from './errors.ts';
import { KEY_LEN, TAG_LEN, TIMESTAMP_LEN } from './ids.ts';

/** How old a protected message may be (e4go MaxDelayDuration). */
export const MAX_MESSAGE_AGE_SECONDS = 10 * 60;
/** How long a device keeps the previous topic key after a rotation (e4go MaxDelayKeyTransition). */
export const TOPIC_KEY_GRACE_SECONDS = 60 * 60;

/** A point in time: milliseconds since the epoch, or a Date. Defaults to the wall clock. */
export type Clock = number | Date;

function nowMs(now?: Clock): number {
  if (now === undefined) return Date.now();
  return typeof now === 'number' ? now : now.getTime();
}

/** e4go ValidateSymKey: 32 bytes, not all zero. */
export function checkSymKey(key: Uint8Array, what = 'symmetric key'): void {
  if (key.length !== KEY_LEN) throw new E4Error('INVALID_KEY', `${what} must be ${KEY_LEN} bytes, got ${key.length}`);
  let any = 0;
  for (let i = 0; i < key.length; i++) any |= key[i];
  if (any === 0) throw new E4Error('INVALID_KEY', `${what} is all zeros`);
}

export function timestampBytes(now?: Clock): Buffer {
  const ts = Buffer.alloc(TIMESTAMP_LEN);
  ts.writeBigUInt64LE(BigInt(Math.floor(nowMs(now) / 1000)));
  return ts;
}

/** Throws TimestampInFutureError / TimestampTooOldError as e4go ValidateTimestamp(Key) does. */
export function checkTimestamp(ts: Uint8Array, now?: Clock, maxAgeSeconds = MAX_MESSAGE_AGE_SECONDS): void {
  // LE64 as a double: exact for any timestamp below 2^53 s; larger values are far in the future anyway
  const secs = (ts[0] | (ts[1] << 8) | (ts[2] << 16)) + ts[3] * 0x1000000 + (ts[4] + ts[5] * 0x100 + ts[6] * 0x10000 + ts[7] * 0x1000000) * 0x100000000;
  const n = nowMs(now);
  if (secs * 1000 > n) throw new TimestampInFutureError(secs, n);
  if (n - maxAgeSeconds * 1000 > secs * 1000) throw new TimestampTooOldError(secs, n, maxAgeSeconds);
}

/** Encrypt with AES-SIV(K‖K) using the timestamp as the only associated data: tag ‖ ct. */
export function sealWithTimestamp(key: Uint8Array, timestamp: Uint8Array, payload: Uint8Array): Buffer {
  checkSymKey(key);
  return sivSealWithDoubledKey(key, payload, [timestamp]);
}

export function openWithTimestamp(key: Uint8Array, timestamp: Uint8Array, sealed: Uint8Array, what?: string): Buffer {
  checkSymKey(key);
  if (sealed.length < TAG_LEN) throw new E4Error('TOO_SHORT', `${what ?? 'ciphertext'} is shorter than the AES-SIV tag`);
  try {
    return sivOpenWithDoubledKey(key, sealed, [timestamp]);
  } catch (e) {
    if (e instanceof SivAuthenticationError) throw new NotAuthenticError(what);
    throw e;
  }
}

/** e4go ProtectSymKey: timestamp ‖ SIV(K‖K, AD=[timestamp]). */
export function protectSymKey(payload: Uint8Array, key: Uint8Array, now?: Clock): Buffer {
  const ts = timestampBytes(now);
  return Buffer.concat([ts, sealWithTimestamp(key, ts, payload)]);
}

/**
 * e4go UnprotectSymKey. Checks the timestamp window first (TimestampInFutureError, TimestampTooOldError),
 * then authenticity (NotAuthenticError). Like e4go, refuses inputs of 24 bytes or less (empty payloads).
 */
export function unprotectSymKey(protectedMsg: Uint8Array, key: Uint8Array, now?: Clock): Buffer {
  if (protectedMsg.length <= TIMESTAMP_LEN + TAG_LEN) {
    throw new E4Error('TOO_SHORT', `protected message is ${protectedMsg.length} bytes; E4 needs more than ${TIMESTAMP_LEN + TAG_LEN}`);
  }
  const ts = protectedMsg.subarray(0, TIMESTAMP_LEN);
  checkTimestamp(ts, now);
  return openWithTimestamp(key, ts, protectedMsg.subarray(TIMESTAMP_LEN));
}
