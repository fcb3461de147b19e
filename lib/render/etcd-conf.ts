import YAML from 'yaml';

// etcd member configuration (etcd --config-file) for the Patroni DCS in the HA profile.

export interface EtcdMemberSettings {
  name: string;
  dataDir: string;
  /** Where this member listens, e.g. http://0.0.0.0:2380 and http://0.0.0.0:2379. */
  listenPeerUrl: string;
  listenClientUrl: string;
  /** What the other members / clients dial, e.g. http://etcd-0:2380. */
  advertisePeerUrl: string;
  advertiseClientUrl: string;
  /** Every member, this one included. */
  initialCluster: Array<{ name: string; peerUrl: string }>;
  clusterToken: string;
  state?: 'new' | 'existing';
  /** Serve the v2 API too (Patroni's `etcd:` DCS); the stacks use v3 (`etcd3:`). */
  enableV2?: boolean;
}

/** Render one member's etcd YAML config. Pure. */
export function renderEtcdConfig(s: EtcdMemberSettings): string {
  if (!s.initialCluster.some((m) => m.name === s.name)) {
    throw new Error(`etcd initialCluster: does not list this member "${s.name}"; every member must be in the initial cluster`);
  }
  const doc = {
    name: s.name,
    'data-dir': s.dataDir,
    'listen-peer-urls': s.listenPeerUrl,
    'listen-client-urls': s.listenClientUrl,
    'initial-advertise-peer-urls': s.advertisePeerUrl,
    'advertise-client-urls': s.advertiseClientUrl,
    'initial-cluster': s.initialCluster.map((m) => `${m.name}=${m.peerUrl}`).join(','),
    'initial-cluster-token': s.clusterToken,
    'initial-cluster-state': s.state ?? 'new',
    'auto-compaction-mode': 'periodic',
    'auto-compaction-retention': '1h',
    'quota-backend-bytes': 2 * 1024 * 1024 * 1024,
    ...(s.enableV2 ? { 'enable-v2': true } : {}),
    'log-level': 'info',
    logger: 'zap',
  };
  return '# Rendered by e4ops (lib/render/etcd-conf.ts); edits are overwritten.\n' + YAML.stringify(doc);
}
