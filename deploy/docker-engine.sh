#!/usr/bin/env bash
# Makes sure a Docker engine answers, and prints which compose command to use.
#
#   deploy/docker-engine.sh install   install Debian's docker.io, docker-compose and debootstrap when missing
#   deploy/docker-engine.sh start     start dockerd in the background when no engine answers; wait for it
#   deploy/docker-engine.sh compose   print the compose command: "docker compose" (v2) or "docker-compose" (v1)
#
# Machines without systemd (CI, development VMs) have no service manager to
# start dockerd, so `start` runs it detached (setsid) with its log in
# $PW_DOCKERD_LOG; it keeps running after the caller exits, as a service would.
set -euo pipefail

DOCKERD_LOG=${PW_DOCKERD_LOG:-/var/log/packetwatch-dockerd.log}
DEB_PACKAGES=(docker.io docker-compose debootstrap)

engine_answers() { timeout 20 docker info >/dev/null 2>&1; }

cmd_install() {
  local missing=() p
  for p in "${DEB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then echo "docker-deps: ${DEB_PACKAGES[*]} present"; return; fi
  if [ "$(id -u)" != 0 ]; then
    echo "docker-deps: installing ${missing[*]} needs root; run 'sudo make docker-deps'" >&2
    exit 1
  fi
  echo "docker-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

cmd_start() {
  if engine_answers; then echo "docker: engine running"; return; fi
  if ! command -v dockerd >/dev/null; then
    echo "docker: no engine answers and dockerd is not installed; run 'sudo make docker-deps'" >&2
    exit 1
  fi
  if [ "$(id -u)" != 0 ]; then
    echo "docker: no engine answers; starting dockerd needs root (or start the docker service)" >&2
    exit 1
  fi
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl start docker || true
  fi
  if ! engine_answers && ! pgrep -x dockerd >/dev/null; then
    echo "docker: starting dockerd in the background (log: $DOCKERD_LOG)"
    setsid dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
  fi
  for _ in $(seq 120); do
    if engine_answers; then echo "docker: engine running"; return; fi
    sleep 0.5
  done
  echo "docker: the engine did not answer within 60 s; last lines of $DOCKERD_LOG:" >&2
  tail -n 20 "$DOCKERD_LOG" >&2 || true
  exit 1
}

cmd_compose() {
  if docker compose version >/dev/null 2>&1; then
    echo "docker compose"
  elif command -v docker-compose >/dev/null; then
    echo "docker-compose"
  else
    echo "docker: neither 'docker compose' (v2) nor 'docker-compose' (v1) is installed; run 'sudo make docker-deps'" >&2
    exit 1
  fi
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  compose) cmd_compose ;;
  *) echo "usage: $0 install|start|compose" >&2; exit 2 ;;
esac
