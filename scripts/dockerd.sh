#!/usr/bin/env bash
# A Docker daemon of our own for the image build and its test (tests/deploy/test_image.py):
#
#   eval "$(scripts/dockerd.sh start)"   # starts it (once) and prints `export DOCKER_HOST=...`
#   docker build ...                      # any Docker client >= 20.10 talks to it
#   scripts/dockerd.sh stop               # stops it; the data root (images, build cache) stays
#   scripts/dockerd.sh status             # exit 0 when it answers
#
# It never touches a daemon that is already there: its own socket, pid file and exec root under
# $RAYTRADER_DOCKER_RUN (default /run/raytrader-docker), its own containerd namespace, and its
# data root under $RAYTRADER_DOCKER_DIR (default ~/.cache/raytrader/docker/data, with the log next
# to it in dockerd.log), so that a CI cache of ~/.cache keeps the image layers between runs.
# Needs root (dockerd does); Debian's docker.io is installed when dockerd is missing.
#
# What works where (found on a Debian 12 Firecracker VM, kernel 6.x, cgroup v1 + v2 hybrid, root
# filesystem ext4, Debian's docker.io 20.10.24):
# * Storage driver: overlay2 needs a data root on a filesystem that can carry overlay upper dirs
#   (ext4, xfs); on an overlayfs (a CI job that itself runs in a container) or tmpfs root, dockerd
#   refuses overlay2. We try overlay2, then fuse-overlayfs (when /dev/fuse and the binary exist),
#   then vfs (a full copy per layer: works everywhere, but slow and several times the disk).
#   RAYTRADER_DOCKER_STORAGE_DRIVER picks one.
# * Network: no bridge and no iptables rules (--bridge=none --iptables=false). The build's RUN
#   steps use the host's network (`docker build --network host`) and the image checks run with
#   `--network none`, so nothing needs a bridge, NAT or the iptables/nftables of the host, which
#   another Docker daemon on the machine may own.
set -euo pipefail

RUN_DIR=${RAYTRADER_DOCKER_RUN:-/run/raytrader-docker}
STATE_DIR=${RAYTRADER_DOCKER_DIR:-$HOME/.cache/raytrader/docker}
SOCKET="unix://$RUN_DIR/docker.sock"
PIDFILE="$RUN_DIR/dockerd.pid"
LOG="$STATE_DIR/dockerd.log"
START_TIMEOUT_S=${RAYTRADER_DOCKER_START_TIMEOUT_S:-60}

log() { echo "dockerd.sh: $*" >&2; }

answers() { DOCKER_HOST=$SOCKET docker info >/dev/null 2>&1; }

running_pid() {
  local pid
  [ -f "$PIDFILE" ] || return 1
  pid=$(cat "$PIDFILE")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

install_docker() {
  if command -v dockerd >/dev/null 2>&1 && command -v docker >/dev/null 2>&1; then
    return 0
  fi
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    log "error: dockerd not found; install Docker (Debian 12: apt-get install docker.io) as root"
    exit 2
  fi
  local had_default=0
  [ -S /var/run/docker.sock ] && had_default=1
  log "installing Debian's docker.io"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends docker.io >&2
  # without systemd the package's init script may have started the default daemon; we run our own
  if [ "$had_default" -eq 0 ] && [ -S /var/run/docker.sock ] && command -v service >/dev/null 2>&1; then
    service docker stop >/dev/null 2>&1 || true
  fi
}

# One dockerd attempt with a storage driver; 0 when it answers within the timeout.
try_start() {
  local driver=$1 pid waited=0
  log "starting dockerd (storage driver $driver, data root $STATE_DIR/data, log $LOG)"
  echo "---- $(date -u +%FT%TZ) start, storage driver $driver" >>"$LOG"
  # setsid: its own session, so that the caller's process group (a test, make) can end without it
  setsid dockerd \
    --host "$SOCKET" \
    --pidfile "$PIDFILE" \
    --exec-root "$RUN_DIR/exec" \
    --data-root "$STATE_DIR/data" \
    --storage-driver "$driver" \
    --containerd-namespace raytrader \
    --containerd-plugins-namespace raytrader-plugins \
    --bridge none \
    --iptables=false \
    --ip6tables=false \
    >>"$LOG" 2>&1 </dev/null &
  pid=$!
  while [ "$waited" -lt "$START_TIMEOUT_S" ]; do
    if answers; then
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      log "dockerd exited with storage driver $driver: $(grep -E 'level=(error|fatal)|failed to start' "$LOG" | tail -1)"
      return 1
    fi
    sleep 1
    waited=$((waited + 1))
  done
  log "dockerd did not answer within ${START_TIMEOUT_S}s; stopping it (see $LOG)"
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  return 1
}

start() {
  if answers; then
    echo "export DOCKER_HOST=$SOCKET"
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    log "error: dockerd needs root (or start one yourself and set DOCKER_HOST)"
    exit 2
  fi
  install_docker
  if pid=$(running_pid); then  # alive but not answering: a half-started or wedged daemon
    log "dockerd $pid does not answer; stopping it"
    stop
  fi
  mkdir -p "$RUN_DIR" "$STATE_DIR/data"
  local drivers
  if [ -n "${RAYTRADER_DOCKER_STORAGE_DRIVER:-}" ]; then
    drivers=("$RAYTRADER_DOCKER_STORAGE_DRIVER")
  else
    drivers=(overlay2)
    if [ -e /dev/fuse ] && command -v fuse-overlayfs >/dev/null 2>&1; then
      drivers+=(fuse-overlayfs)
    fi
    drivers+=(vfs)
  fi
  for driver in "${drivers[@]}"; do
    if try_start "$driver"; then
      echo "export DOCKER_HOST=$SOCKET"
      return 0
    fi
  done
  log "error: no storage driver worked (${drivers[*]}); see $LOG"
  exit 1
}

stop() {
  local pid waited=0
  if ! pid=$(running_pid); then
    rm -f "$PIDFILE"
    return 0
  fi
  kill -TERM "$pid"
  # dockerd stops its containers and its own containerd first; give it time
  while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 60 ]; do
    sleep 0.5
    waited=$((waited + 1))
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "dockerd $pid did not stop in 30s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PIDFILE"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) answers ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
