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
  /** Per-client queue (offline persistent sessions, and online clients whose inflight window is full). Default: fits `fleet`. */
  maxQueuedMessages?: number;
  /** QoS 1/2 messages in flight to one client at a time (Mosquitto's default is 20). */
  maxInflightMessages?: number;
  /** Forget a persistent session offline this long (Mosquitto syntax: 1h, 2d, 1w). Default 2d. */
  persistentClientExpiration?: string;
  /** Fleet shape the queue is sized for; default 1,000 topics for the busiest device. */
  fleet?: { maxTopicsPerDevice: number };
  logDest?: 'stdout' | 'stderr';
  /**
   * Publish the broker's log notices on $SYS/broker/log/<level> (default true): the resync's
   * presence watch (lib/broker-presence) reads connect/disconnect notices there.
   */
  presenceNotices?: boolean;
}

/**
 * Queue length that holds one resync's worth of commands for the busiest device: one SetTopicKey per
 * linked topic from the rotation plus one from a --follow re-push, with room for ordinary traffic.
 */
export function queuedMessagesForFleet(maxTopicsPerDevice: number): number {
  return Math.max(1000, 2 * maxTopicsPerDevice + 100);
}

/** Render mosquitto.conf. Pure. */
export function renderMosquittoConf(s: MosquittoConfSettings): string {
  if (!s.listeners.length) throw new Error('mosquitto listeners: empty; give at least one listener port');
  if (!s.allowAnonymous && !s.passwordFile) {
    throw new Error('mosquitto passwordFile: required when allowAnonymous is false (else nobody can log in)');
  }
  if (s.persistentClientExpiration !== undefined && !/^[1-9]\d*[hdwmy]$/.test(s.persistentClientExpiration)) {
    throw new Error(`mosquitto persistentClientExpiration "${s.persistentClientExpiration}": give a count and a unit h, d, w, m or y (e.g. 2d)`);
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
    '# A burst of one command per linked topic must fit: what exceeds the inflight window waits in the',
    '# queue, and what exceeds the queue is dropped (QoS 1/2 included).',
    `max_queued_messages ${s.maxQueuedMessages ?? queuedMessagesForFleet(s.fleet?.maxTopicsPerDevice ?? 1000)}`,
    'max_queued_bytes 0',
    `max_inflight_messages ${s.maxInflightMessages ?? 20}`,
    '# E4 devices reject commands older than 10 minutes: a session queue helps short outages only.',
    `persistent_client_expiration ${s.persistentClientExpiration ?? '2d'}`,
    '# $SYS statistics for mosquitto_exporter',
    'sys_interval 10',
    `log_dest ${s.logDest ?? 'stdout'}`,
    ...(s.presenceNotices === false ? [] : ['# connect/disconnect notices on $SYS/broker/log/N for the resync presence watch', 'log_dest topic']),
    'log_type error',
    'log_type warning',
    'log_type notice',
    'log_type information',
    '# who subscribed to what: provisioning pushes keys once a device listens on its command topic',
    'log_type subscribe',
    'connection_messages true',
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
