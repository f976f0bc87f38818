# Prometheus from Debian's package, for machines that cannot pull
# prom/prometheus (`make images` uses the upstream image when it can).
# Laid out like the upstream image: the binary on PATH, data in /prometheus,
# config in /etc/prometheus, running as nobody.
ARG BASE_IMAGE=node:20-bookworm-slim
FROM ${BASE_IMAGE} AS prometheus
# No init system in a container: keep the package's postinst from starting
# the daemon.
RUN printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d \
 && apt-get update \
 && apt-get install -y --no-install-recommends prometheus \
 && rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d /var/lib/prometheus \
 && install -d -m 0755 -o nobody -g nogroup /prometheus
USER nobody
WORKDIR /prometheus
EXPOSE 9090
VOLUME ["/prometheus"]
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
