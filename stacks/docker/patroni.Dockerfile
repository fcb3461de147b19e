# PostgreSQL + Patroni (Debian's package) for the HA profile; pgBackRest for WAL archiving (postgres.pitr).
ARG BASE_IMAGE=postgres:15-bookworm
FROM ${BASE_IMAGE}
# A base that already carries the packages (an mmdebstrap base with postgresql-15) downloads nothing.
RUN pkgs="patroni python3-etcd curl pgbackrest"; dpkg -s $pkgs >/dev/null 2>&1 \
 || { apt-get update && apt-get install -y --no-install-recommends $pkgs && rm -rf /var/lib/apt/lists/*; } \
 && mkdir -p /var/run/postgresql && chown postgres: /var/run/postgresql && chmod 2775 /var/run/postgresql \
 && mkdir -p /etc/patroni /var/lib/postgresql/data /etc/pgbackrest/conf.d /var/lib/pgbackrest /var/spool/pgbackrest /var/log/pgbackrest \
 && chown -R postgres: /etc/patroni /var/lib/postgresql/data /etc/pgbackrest /var/lib/pgbackrest /var/spool/pgbackrest /var/log/pgbackrest
USER postgres
EXPOSE 5432 8008
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s CMD curl -fs http://127.0.0.1:8008/health || exit 1
ENTRYPOINT []
CMD ["patroni", "/etc/patroni/patroni.yml"]
