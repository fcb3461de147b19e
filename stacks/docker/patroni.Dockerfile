# PostgreSQL + Patroni (Debian's package) for the HA profile; pgBackRest for WAL archiving (postgres.pitr).
ARG BASE_IMAGE=postgres:15-bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends patroni python3-etcd curl pgbackrest \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /etc/patroni /var/lib/postgresql/data /etc/pgbackrest/conf.d /var/lib/pgbackrest /var/spool/pgbackrest /var/log/pgbackrest \
 && chown -R postgres: /etc/patroni /var/lib/postgresql/data /etc/pgbackrest /var/lib/pgbackrest /var/spool/pgbackrest /var/log/pgbackrest
USER postgres
EXPOSE 5432 8008
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s CMD curl -fs http://127.0.0.1:8008/health || exit 1
ENTRYPOINT []
CMD ["patroni", "/etc/patroni/patroni.yml"]
