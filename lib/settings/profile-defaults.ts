// Defaults that depend on the profile. Applied under the operator's settings (theirs win), before
// the JSON Schema fills the profile-independent defaults.

export type Profile = 'minimal' | 'ha';

export const PROFILE_DEFAULTS: Record<Profile, Record<string, Record<string, unknown>>> = {
  minimal: {
    c2: { replicas: 1 },
    postgres: { replicas: 1, pitr: { enabled: false } },
    etcd: { nodes: 0 },
    broker: { kind: 'mosquitto', nodes: 1 },
    elasticsearch: { enabled: false, nodes: 1 },
    logShipper: { enabled: false },
    tracing: { enabled: false },
    monitoring: { prometheus: { enabled: false } },
  },
  ha: {
    c2: { replicas: 2 },
    postgres: { replicas: 3, pitr: { enabled: true } },
    etcd: { nodes: 3 },
    broker: { kind: 'emqx', nodes: 3 },
    elasticsearch: { enabled: true, nodes: 3 },
    logShipper: { enabled: true },
    tracing: { enabled: true },
    monitoring: { prometheus: { enabled: true } },
  },
};

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Deep merge: values from `over` win; arrays are replaced, not merged. Inputs are not modified. */
export function mergeUnder(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    out[k] = isPlainObject(v) && isPlainObject(base[k]) ? mergeUnder(base[k] as Record<string, unknown>, v) : v;
  }
  return out;
}
