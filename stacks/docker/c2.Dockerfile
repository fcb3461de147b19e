# C2 server image, built from the Go module (no C2 image is published anywhere).
# Build context: stacks/docker. Pulumi passes C2_VERSION from settings c2.goModuleVersion.
# GO_IMAGE may instead be an image that already holds /out/c2 and /out/c2cli (those scripts/build-c2.sh
# builds, see lib/servers/c2-image.ts): then nothing is compiled, for hosts without a Go image.
ARG GO_IMAGE=golang:1.22-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${GO_IMAGE} AS build
ARG C2_VERSION=v0.0.0-20190913090940-33c5be11fcd2
WORKDIR /src
# A throwaway wrapper module pins C2 at C2_VERSION and resolves its (go 1.12-era) dependencies.
RUN if [ -x /out/c2 ] && [ -x /out/c2cli ]; then exit 0; fi \
 && go mod init e4ops.local/c2-image \
 && go get github.com/teserakt-io/c2/cmd/c2@${C2_VERSION} github.com/teserakt-io/c2/cmd/c2cli@${C2_VERSION} \
 && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/ github.com/teserakt-io/c2/cmd/c2 github.com/teserakt-io/c2/cmd/c2cli

FROM ${RUNTIME_IMAGE}
# A base that already carries curl and CA certificates (an mmdebstrap base) needs no network here.
RUN if ! command -v curl >/dev/null || [ ! -s /etc/ssl/certs/ca-certificates.crt ]; then \
      apt-get update && apt-get install -y --no-install-recommends ca-certificates curl && rm -rf /var/lib/apt/lists/*; \
    fi \
 && useradd --system --home /opt/e4 --shell /usr/sbin/nologin e4 \
 && mkdir -p /opt/e4/configs && chown -R e4: /opt/e4 /var/log
COPY --from=build /out/c2 /out/c2cli /opt/e4/bin/
WORKDIR /opt/e4
# config.yaml and certificates are uploaded by the stack; pubkey mode rewrites its key file here.
VOLUME ["/opt/e4/configs"]
USER e4
EXPOSE 5555 8888
# /e4/clients/count, not /e4/health-check: the pinned C2 build has no health-check route (404).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD curl -fsk https://127.0.0.1:8888/e4/clients/count || exit 1
ENTRYPOINT ["/opt/e4/bin/c2"]
