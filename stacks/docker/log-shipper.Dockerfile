# Log shipper: rsyslog with the Elasticsearch output (Debian packages), config uploaded by the stack.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends rsyslog rsyslog-elasticsearch ca-certificates \
 && rm -rf /var/lib/apt/lists/* && mkdir -p /var/spool/rsyslog
CMD ["rsyslogd", "-n", "-f", "/etc/rsyslog.conf"]
