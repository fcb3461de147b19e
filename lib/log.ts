// One JSON object per line on stderr, so cron mail and log shippers both get structured events
// while stdout stays free for a command's actual output. Secrets are redacted by key name.
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFields = Record<string, unknown>;

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
const SECRET_KEY = /pass(word|phrase)?|secret|token|private|identity_?key|credential/i;

export interface Logger {
  debug(event: string, fields?: LogFields): void;
  info(event: string, fields?: LogFields): void;
  warn(event: string, fields?: LogFields): void;
  error(event: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

export interface LoggerOptions {
  component: string;
  level?: LogLevel;
  write?: (line: string) => void;
  base?: LogFields;
}

/** Replace the value of any field whose name looks secret, and credentials inside URLs. */
export function redactFields(fields: LogFields): LogFields {
  const out: LogFields = {};
  for (const [k, v] of Object.entries(fields)) {
    if (SECRET_KEY.test(k) && !/fingerprint|file|path/i.test(k)) out[k] = '[redacted]';
    else if (typeof v === 'string') out[k] = redactUrl(v);
    else if (v instanceof Error) out[k] = redactUrl(v.message);
    else out[k] = v;
  }
  return out;
}

/** postgres://user:secret@host/db → postgres://user:***@host/db */
export function redactUrl(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/[^:/@\s]+):([^@\s]+)@/gi, '$1:***@');
}

export function createLogger(opts: LoggerOptions): Logger {
  const min = LEVELS[opts.level ?? (process.env.E4OPS_LOG_LEVEL as LogLevel) ?? 'info'] ?? LEVELS.info;
  const write = opts.write ?? ((line: string) => process.stderr.write(line + '\n'));
  const base: LogFields = { component: opts.component, ...opts.base };
  const emit = (level: LogLevel, event: string, fields: LogFields = {}) => {
    if (LEVELS[level] < min) return;
    write(JSON.stringify({ time: new Date().toISOString(), level, event, ...redactFields({ ...base, ...fields }) }));
  };
  return {
    debug: (e, f) => emit('debug', e, f),
    info: (e, f) => emit('info', e, f),
    warn: (e, f) => emit('warn', e, f),
    error: (e, f) => emit('error', e, f),
    child: (fields) => createLogger({ ...opts, base: { ...base, ...fields } }),
  };
}

/** A logger that keeps lines in memory; tests use it to assert on events. */
export function createMemoryLogger(component = 'test'): Logger & { lines: LogFields[] } {
  const lines: LogFields[] = [];
  const logger = createLogger({ component, level: 'debug', write: (l) => lines.push(JSON.parse(l)) });
  return Object.assign(logger, { lines });
}
