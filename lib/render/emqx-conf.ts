// emqx.conf (HOCON) for the HA broker: EMQX 5.8 (the last Apache-2.0 line), static cluster
// discovery, and the retainer on the built-in database with disc storage, whose tables EMQX
// replicates to every core node, so C2's retained commands survive the loss of a node.
// Secrets (the Erlang cookie, the dashboard password) come from EMQX_NODE__COOKIE and
// EMQX_DASHBOARD__DEFAULT_PASSWORD in the environment, never from this file.
// No EMQX binary exists in Debian: this file is checked by tests for structure only.

export interface EmqxSettings {
  /** This node's Erlang name, e.g. emqx@emqx-0 (the host part must resolve on every node). */
  nodeName: string;
  /** Every node's name, this one included. */
  seeds: string[];
  listener: { bind: string };
  dashboardBind: string;
  /** Users C2 and monitoring log in with; when allowAnonymous is false, only they (and the file's users) can connect. */
  allowAnonymous: boolean;
  /** File with the initial MQTT users (plain CSV: user_id,password,is_superuser), uploaded as a secret. */
  bootstrapUsersFile?: string;
}

function hoconString(v: string): string {
  return JSON.stringify(v);
}

/** Render emqx.conf. Pure. */
export function renderEmqxConf(s: EmqxSettings): string {
  if (!s.seeds.includes(s.nodeName)) throw new Error(`emqx seeds: do not list this node "${s.nodeName}"`);
  if (!/^[a-z0-9_]+@[A-Za-z0-9.-]+$/.test(s.nodeName)) throw new Error(`emqx nodeName "${s.nodeName}": must look like name@host`);
  if (!s.allowAnonymous && !s.bootstrapUsersFile) throw new Error('emqx bootstrapUsersFile: required when allowAnonymous is false');
  const lines = [
    '# Rendered by e4ops (lib/render/emqx-conf.ts); edits are overwritten.',
    `node.name = ${hoconString(s.nodeName)}`,
    'node.data_dir = "data"',
    'cluster {',
    '  name = e4ops',
    '  discovery_strategy = static',
    `  static.seeds = [${s.seeds.map(hoconString).join(', ')}]`,
    '}',
    `listeners.tcp.default.bind = ${hoconString(s.listener.bind)}`,
    `dashboard.listeners.http.bind = ${hoconString(s.dashboardBind)}`,
    '# C2 publishes commands retained at QoS 2: keep them on disc, replicated by the cluster database.',
    'retainer {',
    '  enable = true',
    '  msg_expiry_interval = 0s',
    '  max_payload_size = 1MB',
    '  backend { type = built_in_database, storage_type = disc, max_retained_messages = 0 }',
    '}',
    '# Bursts of one command per linked topic queue behind the inflight window; sessions of devices',
    '# offline longer than the expiry are dropped (E4 devices reject commands older than 10 minutes anyway).',
    'mqtt { max_mqueue_len = 100000, max_inflight = 32, session_expiry_interval = 2d, retain_available = true }',
    '# client connected/disconnected events on $SYS/brokers/<node>/clients/<id>/...: the resync presence watch',
    'sys_topics { sys_event_messages { client_connected = true, client_disconnected = true } }',
    'prometheus.enable_basic_auth = false',
  ];
  if (!s.allowAnonymous) {
    lines.push(
      'authentication = [',
      '  {',
      '    mechanism = password_based',
      '    backend = built_in_database',
      '    user_id_type = username',
      '    password_hash_algorithm { name = sha256, salt_position = suffix }',
      `    bootstrap_file = ${hoconString(s.bootstrapUsersFile!)}`,
      '    bootstrap_type = plain',
      '  }',
      ']',
    );
  }
  return lines.join('\n') + '\n';
}

/** The bootstrap users CSV EMQX loads into its built-in authentication database. Pure. */
export function renderEmqxBootstrapUsers(users: Array<{ username: string; password: string; superuser?: boolean }>): string {
  return ['user_id,password,is_superuser', ...users.map((u) => {
    if (/[,\n"]/.test(u.username) || /[,\n"]/.test(u.password)) throw new Error(`emqx user "${u.username}": user and password must not contain commas, quotes or newlines`);
    return `${u.username},${u.password},${u.superuser ? 'true' : 'false'}`;
  })].join('\n') + '\n';
}
