# Automation engine (C2AE) image, built from its Go module like C2.
ARG GO_IMAGE=golang:1.22-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${GO_IMAGE} AS build
ARG C2AE_VERSION=latest
WORKDIR /src
# The server is the module's cmd/api package.
RUN go mod init e4ops.local/c2ae-image \
 && go get github.com/teserakt-io/automation-engine/cmd/api@${C2AE_VERSION} \
 && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/c2ae-api github.com/teserakt-io/automation-engine/cmd/api

FROM ${RUNTIME_IMAGE}
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /opt/e4 --shell /usr/sbin/nologin e4 \
 && mkdir -p /opt/e4/configs && chown -R e4: /opt/e4
COPY --from=build /out/c2ae-api /opt/e4/bin/
WORKDIR /opt/e4
USER e4
EXPOSE 5556 8886
ENTRYPOINT ["/opt/e4/bin/c2ae-api"]
