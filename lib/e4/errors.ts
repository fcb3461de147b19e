// Errors of the E4 protocol layer. `code` lets callers (fleet simulator, drills) count failures by
// kind without parsing messages.
export type E4ErrorCode =
  | 'TOO_SHORT'
  | 'TIMESTAMP_IN_FUTURE'
  | 'TIMESTAMP_TOO_OLD'
  | 'NOT_AUTHENTIC'
  | 'INVALID_SIGNATURE'
  | 'UNKNOWN_SIGNER'
  | 'INVALID_KEY'
  | 'INVALID_COMMAND'
  | 'WRONG_PASSPHRASE'
  | 'INVALID_PASSWORD';

export class E4Error extends Error {
  readonly code: E4ErrorCode;
  constructor(code: E4ErrorCode, message: string) {
    super(message);
    this.name = 'E4Error';
    this.code = code;
  }
}

export class TimestampInFutureError extends E4Error {
  constructor(tsSeconds: number, nowMs: number) {
    super('TIMESTAMP_IN_FUTURE', `protected message timestamp ${tsSeconds} is in the future (now ${Math.floor(nowMs / 1000)}): sender clock ahead or replay`);
    this.name = 'TimestampInFutureError';
  }
}

export class TimestampTooOldError extends E4Error {
  constructor(tsSeconds: number, nowMs: number, maxAgeSeconds: number) {
    super('TIMESTAMP_TOO_OLD', `protected message timestamp ${tsSeconds} is ${Math.floor(nowMs / 1000) - tsSeconds} s old, more than the ${maxAgeSeconds} s E4 accepts (stale retained command or replay)`);
    this.name = 'TimestampTooOldError';
  }
}

export class NotAuthenticError extends E4Error {
  constructor(what = 'protected message') {
    super('NOT_AUTHENTIC', `${what} does not authenticate: wrong key or tampered data`);
    this.name = 'NotAuthenticError';
  }
}
