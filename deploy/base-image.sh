#!/usr/bin/env bash
# Makes sure the base image (default node:20-bookworm-slim) exists locally.
#
#   deploy/base-image.sh [IMAGE]
#
# 1. present already: nothing to do (a bootstrapped image is cached this way);
# 2. `docker pull IMAGE` works: use the real one;
# 3. otherwise (no registry reachable) bootstrap a stand-in under the same
#    name: `debootstrap --variant=minbase bookworm` from the Debian mirror apt
#    uses on this machine, plus this host's Node 20 (binary, headers, npm,
#    corepack) laid out as the official image lays it out (/usr/local, a
#    `node` user with uid 1000), then `docker import`.
#
# PW_NODE_BIN (default: the `node` on PATH) chooses the Node binary to copy;
# it must be Node 20, like the image it stands in for.
set -euo pipefail

IMAGE=${1:-node:20-bookworm-slim}
SUITE=${PW_DEBIAN_SUITE:-bookworm}

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "base image: $IMAGE present"
  exit 0
fi
echo "base image: pulling $IMAGE"
if timeout "${PW_PULL_TIMEOUT:-120}" docker pull -q "$IMAGE" >/dev/null 2>&1; then
  echo "base image: pulled $IMAGE"
  exit 0
fi
echo "base image: cannot pull $IMAGE; bootstrapping it locally ($SUITE minbase + this host's Node)"

case "$IMAGE" in
  node:20-*) ;;
  *) echo "base image: only node:20-* images can be bootstrapped here, not $IMAGE" >&2; exit 1 ;;
esac
if [ "$(id -u)" != 0 ]; then echo "base image: debootstrap needs root" >&2; exit 1; fi
command -v debootstrap >/dev/null || { echo "base image: debootstrap missing; run 'sudo make docker-deps'" >&2; exit 1; }

NODE_BIN=$(readlink -f "${PW_NODE_BIN:-$(command -v node)}")
NODE_VERSION=$("$NODE_BIN" --version)
case "$NODE_VERSION" in
  v20.*) ;;
  *) echo "base image: $NODE_BIN is Node $NODE_VERSION; Node 20 is needed (set PW_NODE_BIN)" >&2; exit 1 ;;
esac
NODE_PREFIX=$(dirname "$(dirname "$NODE_BIN")")            # /usr for /usr/bin/node
NODE_MODULES=$NODE_PREFIX/lib/node_modules
[ -f "$NODE_MODULES/npm/bin/npm-cli.js" ] || { echo "base image: no npm at $NODE_MODULES/npm" >&2; exit 1; }
[ -f "$NODE_PREFIX/include/node/node.h" ] || { echo "base image: no Node headers at $NODE_PREFIX/include/node" >&2; exit 1; }

# The mirrors apt uses here (deb822 .sources or one-line sources.list).
mirror_of() { # $1: path suffix (debian | debian-security)
  local url
  url=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ {for (i = 2; i <= NF; i++) print $i}' | grep -E "/$1/?\$" | head -n1 || true)
  [ -n "$url" ] || url=$(grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}' | grep -E "/$1/?\$" | head -n1 || true)
  echo "${url:-http://deb.debian.org/$1}"
}
MIRROR=$(mirror_of debian)
SECURITY=$(mirror_of debian-security)

WORK=$(mktemp -d /tmp/pw-base.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
ROOT=$WORK/root
echo "base image: debootstrap --variant=minbase $SUITE from $MIRROR"
debootstrap --variant=minbase "$SUITE" "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
  tail -n 30 "$WORK/debootstrap.log" >&2
  exit 1
}

# apt sources as in the official image (main, updates, security).
rm -f "$ROOT/etc/apt/sources.list"
cat >"$ROOT/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
# What Debian's own container images do: no docs or man pages from packages
# installed later, no .deb cache, no apt lists in layers.
cat >"$ROOT/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
cat >"$ROOT/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
echo 'APT::Install-Recommends "false";' >"$ROOT/etc/apt/apt.conf.d/docker-no-recommends"
rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/* "$ROOT"/usr/share/doc/*/changelog* \
  "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* "$ROOT"/var/log/*.log "$ROOT"/var/log/apt/*
: >"$ROOT/etc/resolv.conf"
: >"$ROOT/etc/hostname"

# Node as the official image has it: /usr/local/{bin,include,lib/node_modules}.
install -D -m 0755 "$NODE_BIN" "$ROOT/usr/local/bin/node"
mkdir -p "$ROOT/usr/local/include" "$ROOT/usr/local/lib/node_modules"
cp -a "$NODE_PREFIX/include/node" "$ROOT/usr/local/include/node"
for m in npm corepack; do
  [ -d "$NODE_MODULES/$m" ] && cp -a "$NODE_MODULES/$m" "$ROOT/usr/local/lib/node_modules/$m"
done
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$ROOT/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$ROOT/usr/local/bin/npx"
[ -d "$ROOT/usr/local/lib/node_modules/corepack" ] &&
  ln -s ../lib/node_modules/corepack/dist/corepack.js "$ROOT/usr/local/bin/corepack"
env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin chroot "$ROOT" groupadd --gid 1000 node
env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin chroot "$ROOT" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin chroot "$ROOT" /usr/local/bin/node --version >/dev/null
env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin chroot "$ROOT" /usr/local/bin/npm --version >/dev/null

tar -C "$ROOT" --numeric-owner -c . | docker import \
  --change "ENV NODE_VERSION=${NODE_VERSION#v}" \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["node"]' \
  --message "bootstrapped stand-in for $IMAGE: debootstrap $SUITE minbase + Node $NODE_VERSION" \
  - "$IMAGE" >/dev/null
echo "base image: $IMAGE bootstrapped ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1 / 1e6}'))"
