# The e4ops toolkit image: node + lib/, backups/, dashboards/, scripts/ and the production
# node_modules, with cron, pg_dump, age and rclone (Debian packages). One image serves the scheduled
# backup job (cron) and the one-shot dashboards installer (scripts/dashboards.ts install).
# Build context: the repository root (see toolkit.Dockerfile.dockerignore for what is sent).
ARG BASE_IMAGE=node:20-bookworm-slim
FROM ${BASE_IMAGE}
# A base that already carries the packages (an mmdebstrap base plus node) downloads nothing here.
RUN have=1; for c in cron pg_dump zstd age rclone pgrep; do command -v $c >/dev/null || have=0; done; \
    [ $have = 1 ] && [ -s /etc/ssl/certs/ca-certificates.crt ] \
 || { apt-get update && apt-get install -y --no-install-recommends cron postgresql-client zstd age rclone ca-certificates procps \
      && rm -rf /var/lib/apt/lists/*; } \
 && mkdir -p /etc/e4ops /backups /textfile
WORKDIR /opt/e4ops
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY lib ./lib
COPY backups ./backups
COPY dashboards ./dashboards
COPY scripts ./scripts
COPY tsconfig.json ./
CMD ["cron", "-f"]
