# Scheduled backup job: cron + the e4ops toolkit + pg_dump, age, rclone (Debian packages).
# Build context: the repository root (see backup.Dockerfile.dockerignore for what is sent).
ARG BASE_IMAGE=node:20-bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends cron postgresql-client zstd age rclone ca-certificates procps \
 && rm -rf /var/lib/apt/lists/* && mkdir -p /etc/e4ops /backups /textfile
WORKDIR /opt/e4ops
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY lib ./lib
COPY backups ./backups
COPY scripts ./scripts
COPY tsconfig.json ./
CMD ["cron", "-f"]
