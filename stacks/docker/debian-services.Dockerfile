# Debian-package images for the services the stacks otherwise pull from registries (etcd, HAProxy,
# Mosquitto, Prometheus and its exporters), for hosts that may not pull: build one target each and
# point the image settings at the tags, e.g.
#   docker build --target haproxy -t local/haproxy:2.6 -f stacks/docker/debian-services.Dockerfile stacks/docker
#   (settings) loadBalancer.image: local/haproxy:2.6
# Each target keeps the interface of the registry image the stack expects: the same config paths,
# entrypoint and user, and the tools its health check runs (etcdctl, haproxy -c, mosquitto_sub, wget).
# BASE_IMAGE may already carry the packages (an mmdebstrap base with --include): then nothing is
# downloaded. Versions are Debian 12's: etcd 3.4, HAProxy 2.6, Mosquitto 2.0.11, Prometheus 2.42.
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS etcd
RUN pkgs="etcd-server etcd-client"; dpkg -s $pkgs >/dev/null 2>&1 \
 || { apt-get update && apt-get install -y --no-install-recommends $pkgs && rm -rf /var/lib/apt/lists/*; } \
 && mkdir -p /etc/etcd /var/lib/etcd
EXPOSE 2379 2380
CMD ["etcd", "--config-file", "/etc/etcd/etcd.yml"]

FROM ${BASE_IMAGE} AS haproxy
RUN pkgs="haproxy"; dpkg -s $pkgs >/dev/null 2>&1 \
 || { apt-get update && apt-get install -y --no-install-recommends $pkgs && rm -rf /var/lib/apt/lists/*; } \
 && mkdir -p /usr/local/etc/haproxy /var/lib/haproxy && chown haproxy: /var/lib/haproxy
USER haproxy
# -W master-worker, -db stay in the foreground (what the registry image's entrypoint does).
CMD ["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]

FROM ${BASE_IMAGE} AS mosquitto
RUN pkgs="mosquitto mosquitto-clients"; dpkg -s $pkgs >/dev/null 2>&1 \
 || { apt-get update && apt-get install -y --no-install-recommends $pkgs && rm -rf /var/lib/apt/lists/*; } \
 && mkdir -p /mosquitto/config /mosquitto/data /mosquitto/log && chown -R mosquitto: /mosquitto/data /mosquitto/log
# Started as root, mosquitto drops to its own user (as in the registry image); the data volume is its.
EXPOSE 1883
CMD ["/usr/sbin/mosquitto", "-c", "/mosquitto/config/mosquitto.conf"]

FROM ${BASE_IMAGE} AS prometheus
RUN pkgs="prometheus wget"; dpkg -s $pkgs >/dev/null 2>&1 \
 || { apt-get update && apt-get install -y --no-install-recommends $pkgs && rm -rf /var/lib/apt/lists/*; } \
 && mkdir -p /etc/prometheus/rules /prometheus && chown nobody:nogroup /prometheus
USER nobody
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]

FROM ${BASE_IMAGE} AS blackbox-exporter
RUN pkgs="prometheus-blackbox-exporter"; dpkg -s $pkgs >/dev/null 2>&1 \
 || { apt-get update && apt-get install -y --no-install-recommends $pkgs && rm -rf /var/lib/apt/lists/*; } \
 && mkdir -p /etc/blackbox
USER nobody
EXPOSE 9115
ENTRYPOINT ["/usr/bin/prometheus-blackbox-exporter"]
CMD ["--config.file=/etc/blackbox/blackbox.yml"]

FROM ${BASE_IMAGE} AS node-exporter
RUN pkgs="prometheus-node-exporter"; dpkg -s $pkgs >/dev/null 2>&1 \
 || { apt-get update && apt-get install -y --no-install-recommends $pkgs && rm -rf /var/lib/apt/lists/*; }
USER nobody
EXPOSE 9100
ENTRYPOINT ["/usr/bin/prometheus-node-exporter"]

FROM ${BASE_IMAGE} AS postgres-exporter
RUN pkgs="prometheus-postgres-exporter"; dpkg -s $pkgs >/dev/null 2>&1 \
 || { apt-get update && apt-get install -y --no-install-recommends $pkgs && rm -rf /var/lib/apt/lists/*; }
USER nobody
EXPOSE 9187
ENTRYPOINT ["/usr/bin/prometheus-postgres-exporter"]
