// haproxy.cfg for the HA profile: TCP passthrough to the C2 replicas (gRPC 5555 and the HTTPS
// gateway 8888 both stay end-to-end TLS with C2's own certificate) and a primary-only PostgreSQL
// endpoint that follows Patroni's REST health check (GET /primary answers 200 on the leader only).

export interface HaproxyServer {
  name: string;
  /** host:port the traffic goes to. */
  address: string;
  /** Port of the health check on the same host, when it differs from the traffic port. */
  checkPort?: number;
}

export interface HaproxySettings {
  c2: {
    grpcBind: string;
    httpBind: string;
    /** Per replica: gRPC address and HTTPS gateway address. */
    replicas: Array<{ name: string; grpcAddress: string; httpAddress: string; healthPort: number }>;
    /** HTTPS GET path that answers 200 on a working replica. */
    healthPath: string;
  };
  postgres?: { bind: string; members: HaproxyServer[] };
  /** MQTT (TCP) in front of the broker nodes; any node serves (the cluster routes and replicates). */
  mqtt?: { bind: string; nodes: HaproxyServer[] };
  /** Stats page and Prometheus metrics (/metrics). */
  statsBind?: string;
  /** DNS server for container names (Docker's embedded resolver is 127.0.0.11:53). */
  resolver?: string;
  maxConnections?: number;
  /** Health check period (default 3000 ms); a server is down after 3 failed checks, up after 2 good ones. */
  checkIntervalMs?: number;
}

function server(name: string, address: string, extra: string): string {
  return `  server ${name} ${address} ${extra}`.trimEnd();
}

/** Render haproxy.cfg. Pure. */
export function renderHaproxyCfg(s: HaproxySettings): string {
  if (!s.c2.replicas.length) throw new Error('haproxy c2.replicas: empty; the balancer needs at least one C2 replica');
  const resolver = s.resolver ?? '127.0.0.11:53';
  const out: string[] = [
    '# Rendered by e4ops (lib/render/haproxy-cfg.ts); edits are overwritten.',
    'global',
    `  maxconn ${s.maxConnections ?? 4096}`,
    '  log stdout format raw local0',
    '',
    'resolvers containers',
    `  nameserver dns ${resolver}`,
    '  hold valid 10s',
    '  accepted_payload_size 8192',
    '  # Names of containers that are down do not resolve: answer that fast instead of blocking.',
    '  timeout retry 1s',
    '  resolve_retries 2',
    '',
    'defaults',
    '  mode tcp',
    '  log global',
    '  option tcplog',
    '  timeout connect 5s',
    '  timeout client 1h',
    '  timeout server 1h',
    '  timeout check 3s',
    // init-addr none: start with unresolved servers and let the resolvers fill them in. libc at start-up
    // blocked HAProxy for minutes on an internal network while C2 containers were still restarting.
    `  default-server inter ${s.checkIntervalMs ?? 3000}ms fall 3 rise 2 resolvers containers init-addr none`,
    '',
  ];
  const c2Backend = (name: string, pick: 'grpcAddress' | 'httpAddress') => {
    out.push(
      `backend ${name}`,
      '  balance leastconn',
      '  # C2 health check: HTTPS GET on the gateway port (certificates from the stack CA, not verified here).',
      `  option httpchk GET ${s.c2.healthPath}`,
      '  http-check expect status 200',
      '  # A replica that just died: its address stops answering, so give up connecting after 1 s and',
      '  # retry on another replica; sessions still on it are cut when it is marked down (clients retry).',
      '  timeout connect 1s',
      '  retries 3',
      '  option redispatch 1',
      // rise 1: one good answer (it came through gateway, gRPC and PostgreSQL) puts a replica back at once.
      ...s.c2.replicas.map((r) => server(r.name, r[pick], `check check-ssl verify none port ${r.healthPort} rise 1 on-marked-down shutdown-sessions`)),
      '',
    );
  };
  out.push('frontend c2_grpc', `  bind ${s.c2.grpcBind}`, '  default_backend c2_grpc', '');
  c2Backend('c2_grpc', 'grpcAddress');
  out.push('frontend c2_https', `  bind ${s.c2.httpBind}`, '  default_backend c2_https', '');
  c2Backend('c2_https', 'httpAddress');
  if (s.postgres) {
    if (!s.postgres.members.length) throw new Error('haproxy postgres.members: empty; list the Patroni members');
    out.push(
      'frontend postgres_primary', `  bind ${s.postgres.bind}`, '  default_backend postgres_primary', '',
      'backend postgres_primary',
      '  # Patroni REST: /primary answers 200 on the leader only; drop sessions to a demoted node.',
      '  option httpchk GET /primary',
      '  http-check expect status 200',
      // rise 1: only the leader answers 200 on /primary, so one answer is enough to route to a new one.
      ...s.postgres.members.map((m) => server(m.name, m.address, `check${m.checkPort ? ` port ${m.checkPort}` : ''} rise 1 on-marked-down shutdown-sessions`)),
      '',
    );
  }
  if (s.mqtt) {
    if (!s.mqtt.nodes.length) throw new Error('haproxy mqtt.nodes: empty; list the broker nodes');
    out.push(
      'frontend mqtt', `  bind ${s.mqtt.bind}`, '  timeout client 3h', '  default_backend mqtt', '',
      'backend mqtt',
      '  balance leastconn',
      '  timeout server 3h',
      ...s.mqtt.nodes.map((n) => server(n.name, n.address, `check${n.checkPort ? ` port ${n.checkPort}` : ''}`)),
      '',
    );
  }
  if (s.statsBind) {
    out.push(
      'frontend stats',
      '  mode http',
      `  bind ${s.statsBind}`,
      '  http-request use-service prometheus-exporter if { path /metrics }',
      '  stats enable',
      '  stats uri /stats',
      '  stats refresh 10s',
      '',
    );
  }
  return out.join('\n');
}
