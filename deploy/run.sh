#!/usr/bin/env bash
# `sudo make run`: the probe (root: BPF and XDP) and the policy (the
# unprivileged `packetwatch` user, no capabilities) in the foreground, the
# live table on this terminal, logs under $PW_LOG_DIR. Ctrl-C (or `make stop`
# from another terminal, for a run in the background) stops both; the probe
# leaves its pinned program attached, so blocks stay enforced (`make detach`
# removes it). PW_BPF_PIN_DIR reaches the probe as it is: under
# `ip netns exec`, whose fresh /sys holds no bpffs the host mounted, blocks
# outlive the stack only with it pointing at one the host did (README,
# "Running inside a network namespace"); without, the probe says so.
set -euo pipefail
cd "$(dirname "$0")/.."

USER_NAME=packetwatch
RUN_DIR=${PW_RUN_DIR:-/run/packetwatch}
STATE_DIR=${PW_STATE_DIR:-/var/lib/packetwatch}
LOG_DIR=${PW_LOG_DIR:-/var/log/packetwatch}

if [ "$(id -u)" != 0 ]; then
  echo "make run: the probe needs root for BPF and XDP; run 'sudo make run'" >&2
  exit 1
fi
if ! getent passwd "$USER_NAME" >/dev/null; then
  echo "make run: no '$USER_NAME' user to run the policy as; run 'sudo make deps' first" >&2
  exit 1
fi

# Sockets, one per role (SECURITY.md). $RUN_DIR is root's (setgid: what is
# made there is the packetwatch group's, the operators') and read-only to that
# group: the probe's socket for operators. The policy's socket for operators
# is in a directory of its own. The channel between the two is the
# packetwatch-control group's, which only the policy's user is in: control/
# (root's: the probe's control socket, which the policy's user can reach but
# never rename or replace) and report/ (the policy's: its Report socket).
CONTROL_GROUP=packetwatch-control
if ! getent group "$CONTROL_GROUP" >/dev/null; then
  echo "make run: no '$CONTROL_GROUP' group; run 'sudo make deps' first" >&2
  exit 1
fi
install -d -m 2750 -o root -g "$USER_NAME" "$RUN_DIR"
install -d -m 0750 -o "$USER_NAME" -g "$USER_NAME" "$RUN_DIR/policy"
install -d -m 2750 -o root -g "$CONTROL_GROUP" "$RUN_DIR/control"
install -d -m 2750 -o "$USER_NAME" -g "$CONTROL_GROUP" "$RUN_DIR/report"

# One run at a time; `make stop` finds this one by its pid file.
PID_FILE=$RUN_DIR/run.pid
if [ -f "$PID_FILE" ] && tr '\0' ' ' 2>/dev/null <"/proc/$(cat "$PID_FILE")/cmdline" | grep -q 'deploy/run.sh'; then
  echo "make run: already running (pid $(cat "$PID_FILE")); 'sudo make stop' stops it" >&2
  exit 1
fi
echo $$ >"$PID_FILE"
trap 'rm -f "$PID_FILE"' EXIT
install -d -m 0750 -o "$USER_NAME" -g "$USER_NAME" "$STATE_DIR"
install -d -m 0750 -o root -g "$USER_NAME" "$LOG_DIR"
touch "$LOG_DIR/policy.log" "$LOG_DIR/probe.log"
chown "$USER_NAME:$USER_NAME" "$LOG_DIR/policy.log"

export PW_STATE_DIR=$STATE_DIR
export PW_POLICY_SOCKET=$RUN_DIR/policy/policy.sock
export PW_POLICY_REPORT_SOCKET=$RUN_DIR/report/policy.sock
export PW_PROBE_SOCKET=$RUN_DIR/probe.sock
export PW_PROBE_CONTROL_SOCKET=$RUN_DIR/control/probe.sock
export PW_POLICY_ADDR=unix:$PW_POLICY_REPORT_SOCKET
export PW_SOCKET_GROUP=$USER_NAME
export PW_CONTROL_GROUP=$CONTROL_GROUP
export PW_LOG_FORMAT=${PW_LOG_FORMAT:-table}

pids=()
stop() {
  trap - INT TERM
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap 'stop; exit 0' INT TERM

# The policy: unprivileged user, no capabilities (none inherited, none
# obtainable), no new privileges.
setpriv --reuid="$USER_NAME" --regid="$USER_NAME" --init-groups \
  --inh-caps=-all --bounding-set=-all --no-new-privs \
  node services/policy/dist/main.js 2>>"$LOG_DIR/policy.log" &
pids+=($!)

for _ in $(seq 100); do
  [ -S "$PW_POLICY_REPORT_SOCKET" ] && break
  if ! kill -0 "${pids[0]}" 2>/dev/null; then
    echo "make run: the policy did not start; see $LOG_DIR/policy.log" >&2
    tail -n 5 "$LOG_DIR/policy.log" >&2
    exit 1
  fi
  sleep 0.1
done

node services/probe/dist/main.js >>"$LOG_DIR/probe.log" 2>&1 &
pids+=($!)

# When either stops on its own, stop the other and report.
set +e
wait -n "${pids[@]}"
code=$?
set -e
echo "make run: a service exited (code $code); see $LOG_DIR/*.log" >&2
tail -n 5 "$LOG_DIR/probe.log" "$LOG_DIR/policy.log" >&2
stop
exit "$code"
