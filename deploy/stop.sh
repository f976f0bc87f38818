#!/usr/bin/env bash
# `sudo make stop`: stops what `make run` (in the foreground or the
# background) and `make up` started, and says what it stopped. Like
# `make down`, it leaves the XDP program attached with its pinned maps, so
# blocks stay enforced; `make detach` (or `make compose-detach`) removes it.
#
#   deploy/stop.sh COMPOSE_COMMAND...   the compose command with its -p/-f arguments
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_DIR=${PW_RUN_DIR:-/run/packetwatch}
PID_FILE=$RUN_DIR/run.pid
stopped=0

# make run: deploy/run.sh keeps its pid in $PID_FILE while it runs.
if [ -f "$PID_FILE" ]; then
  pid=$(cat "$PID_FILE")
  if [[ "$pid" =~ ^[0-9]+$ ]] && tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q 'deploy/run.sh'; then
    ifdev=$(tr '\0' '\n' 2>/dev/null <"/proc/$pid/environ" | sed -n 's/^PW_IFDEV=//p' | tail -n 1 || true)
    kill -TERM "$pid"
    for _ in $(seq 300); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "stop: make run (pid $pid) did not stop within 30 s of SIGTERM" >&2
      exit 1
    fi
    echo "stop: stopped make run (pid $pid): probe and policy on ${ifdev:-lo}; the XDP program stays attached and blocks stay enforced (make detach removes it)"
    stopped=1
  else
    rm -f "$PID_FILE" # left by a run that was killed
  fi
fi

# make up: the compose stack, when an engine answers and the stack has containers.
if [ $# -gt 0 ] && command -v docker >/dev/null && timeout 20 docker info >/dev/null 2>&1; then
  if [ -n "$("$@" ps -q 2>/dev/null)" ]; then
    "$@" down
    echo "stop: stopped the compose stack (containers removed; its volumes and the XDP program stay: make compose-detach removes the program)"
    stopped=1
  fi
fi

[ $stopped = 1 ] || echo "stop: nothing to stop (no make run, no compose stack)"
