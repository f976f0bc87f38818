#!/usr/bin/env bash
# `make images`: the probe, policy and prometheus images of deploy/compose.yml.
#
#   BASE_IMAGE          base of every image (default node:20-bookworm-slim); pulled, else
#                       bootstrapped locally under the same name (deploy/base-image.sh)
#   PW_IMAGE_TAG        tag of the images built here (default latest)
#   PW_PROMETHEUS_UPSTREAM  the Prometheus image used when it can be pulled (default prom/prometheus:v2.53.5);
#                       otherwise deploy/prometheus.Dockerfile builds one from Debian's prometheus package
#   PW_BUILD_CA_BUNDLE  CA bundle the build stages trust for npm (default: this host's system bundle)
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE=${BASE_IMAGE:-node:20-bookworm-slim}
TAG=${PW_IMAGE_TAG:-latest}
PROM_UPSTREAM=${PW_PROMETHEUS_UPSTREAM:-prom/prometheus:v2.53.5}
CA_BUNDLE=${PW_BUILD_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

deploy/base-image.sh "$BASE_IMAGE"

# The host's CAs for npm inside the build (see deploy/build-ca/README.md).
if [ -r "$CA_BUNDLE" ]; then
  cmp -s "$CA_BUNDLE" deploy/build-ca/host-ca.crt || cp "$CA_BUNDLE" deploy/build-ca/host-ca.crt
else
  rm -f deploy/build-ca/host-ca.crt
fi

build() { # target image dockerfile
  echo "images: building $2 (${3##*/} --target $1, FROM $BASE_IMAGE)"
  local start=$SECONDS
  # (the classic builder's deprecation notice, printed by newer clients, is left out)
  if ! docker build --build-arg BASE_IMAGE="$BASE_IMAGE" -f "$3" --target "$1" -t "$2" . 2>&1 |
    { grep -v -E '^DEPRECATED: The legacy builder|^ *(BuildKit is currently disabled|Install the buildx component|Learn more at|environment-variable\.|https://docs.docker.com/go/buildx/)' || true; }; then
    echo "images: building $2 failed" >&2
    exit 1
  fi
  echo "images: $2 ready in $((SECONDS - start)) s"
}

build probe "packetwatch/probe:$TAG" deploy/Dockerfile
build policy "packetwatch/policy:$TAG" deploy/Dockerfile

# Prometheus: the upstream image when it can be had, else Debian's package.
if docker image inspect "$PROM_UPSTREAM" >/dev/null 2>&1 ||
   timeout "${PW_PULL_TIMEOUT:-120}" docker pull -q "$PROM_UPSTREAM" >/dev/null 2>&1; then
  docker tag "$PROM_UPSTREAM" "packetwatch/prometheus:$TAG"
  echo "images: packetwatch/prometheus:$TAG is $PROM_UPSTREAM"
else
  echo "images: cannot pull $PROM_UPSTREAM; building Prometheus from Debian's package"
  build prometheus "packetwatch/prometheus:$TAG" deploy/prometheus.Dockerfile
fi

# The probe's capabilities. Engines that predate CAP_BPF and CAP_PERFMON
# (Debian's docker.io 20.10) refuse to create a container that asks for them;
# there, and only there, the probe gets CAP_SYS_ADMIN in their place (the
# kernel accepts it for both), recorded in deploy/.env, which compose reads.
# Compose refuses a repeated capability name, hence SYS_ADMIN and
# CAP_SYS_ADMIN: both mean the same capability to the engine.
env_file=deploy/.env
touch "$env_file"
sed -i -e '/^PW_PROBE_CAP_\(BPF\|PERFMON\)=/d' -e '/^# make images: this engine/d' "$env_file"
if cid=$(docker create --cap-drop ALL --cap-add BPF --cap-add PERFMON --cap-add NET_ADMIN "packetwatch/probe:$TAG" 2>"$env_file.err"); then
  docker rm "$cid" >/dev/null
  echo "images: this engine grants CAP_BPF and CAP_PERFMON: the probe gets BPF, NET_ADMIN, PERFMON"
elif grep -q 'unknown capability' "$env_file.err"; then
  {
    echo "# make images: this engine does not know CAP_BPF/CAP_PERFMON; the probe gets SYS_ADMIN instead (deploy/README.md)"
    echo "PW_PROBE_CAP_BPF=SYS_ADMIN"
    echo "PW_PROBE_CAP_PERFMON=CAP_SYS_ADMIN"
  } >>"$env_file"
  echo "images: WARNING: this Docker engine ($(docker version -f '{{.Server.Version}}')) does not know CAP_BPF/CAP_PERFMON;" \
    "the probe gets CAP_SYS_ADMIN in their place (set in $env_file)" >&2
else
  cat "$env_file.err" >&2
  rm -f "$env_file.err"
  exit 1
fi
rm -f "$env_file.err"
[ -s "$env_file" ] || rm -f "$env_file"

echo "images: done in $SECONDS s"
docker images --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' |
  grep -E "^(packetwatch/(probe|policy|prometheus):$TAG|$BASE_IMAGE)\b" | sed 's/^/images: /'
