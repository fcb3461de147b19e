import crypto from 'node:crypto';

// mosquitto.conf for the minimal profile's broker. C2 publishes its commands RETAINED at QoS 2,
// so persistence is always on: a broker restart must not lose the last command per device.

export interface MosquittoConfSettings {
  listeners: Array<{ port: number | string; address?: string }>;
  /** Directory for mosquitto.db (must be writable by the mosquitto user). */
  persistenceDir: string;
  allowAnonymous: boolean;
  /** Path of the password file (see renderMosquittoPasswordFile); required when anonymous is off. */
  passwordFile?: string;
  /** Seconds between in-memory → disk saves of retained messages and sessions. */
  autosaveIntervalSeconds?: number;
  maxQueuedMessages?: number;
  logDest?: 'stdout' | 'stderr';
}

/** Render mosquitto.conf. Pure. */
export function renderMosquittoConf(s: MosquittoConfSettings): string {
  if (!s.listeners.length) throw new Error('mosquitto listeners: empty; give at least one listener port');
  if (!s.allowAnonymous && !s.passwordFile) {
    throw new Error('mosquitto passwordFile: required when allowAnonymous is false (else nobody can log in)');
  }
  const lines = [
    '# Rendered by e4ops (lib/render/mosquitto-conf.ts); edits are overwritten.',
    'per_listener_settings false',
    `allow_anonymous ${s.allowAnonymous ? 'true' : 'false'}`,
    ...(s.passwordFile ? [`password_file ${s.passwordFile}`] : []),
    '',
    '# C2 commands are retained QoS 2 messages: keep them across restarts.',
    'persistence true',
    `persistence_location ${s.persistenceDir.endsWith('/') ? s.persistenceDir : s.persistenceDir + '/'}`,
    `autosave_interval ${s.autosaveIntervalSeconds ?? 60}`,
    `max_queued_messages ${s.maxQueuedMessages ?? 100000}`,
    '# $SYS statistics for mosquitto_exporter',
    'sys_interval 10',
    `log_dest ${s.logDest ?? 'stdout'}`,
    'log_timestamp_format %Y-%m-%dT%H:%M:%S',
    '',
  ];
  for (const l of s.listeners) {
    lines.push(`listener ${l.port}${l.address ? ' ' + l.address : ''}`, 'protocol mqtt');
  }
  return lines.join('\n') + '\n';
}

/**
 * mosquitto_passwd-compatible file ($7$: PBKDF2-SHA512, 101 iterations). The salt is derived from
 * the user and password so the same inputs render the same text (no needless container replacements).
 */
export function renderMosquittoPasswordFile(users: Array<{ username: string; password: string }>): string {
  return users.map(({ username, password }) => {
    if (!/^[^:\s]+$/.test(username)) throw new Error(`mosquitto username "${username}": must not contain ':' or spaces`);
    const salt = crypto.createHash('sha256').update(`e4ops-mosquitto\0${username}\0${password}`).digest().subarray(0, 12);
    const hash = crypto.pbkdf2Sync(password, salt, 101, 64, 'sha512');
    return `${username}:$7$101$${salt.toString('base64')}$${hash.toString('base64')}`;
  }).join('\n') + '\n';
}
