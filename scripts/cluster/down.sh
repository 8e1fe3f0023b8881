#!/usr/bin/env bash
# Takes the local cluster down and leaves the machine as it was before up.sh: every pod removed
# through the CRI, the kubelet, containerd and the holder stopped, the network namespace (and with
# it the veth, the bridge and every iptables rule) deleted, the pod cgroups removed, the two
# inotify sysctls restored, the mount points up.sh created removed, and $STATE deleted. The image
# store and the built binaries stay in the cache. Idempotent: with nothing up it does nothing.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/cluster/lib.sh
. "$HERE/lib.sh"
[ "$(id -u)" = 0 ] || die "the cluster needs root"

kill_pidfile() { # FILE: the process and its children
  [ -f "$1" ] || return 0
  local pid
  pid=$(cat "$1")
  pkill -TERM -P "$pid" 2>/dev/null || true
  kill -TERM "$pid" 2>/dev/null || true
}

if [ -d "$STATE" ]; then
  kill_pidfile "$STATE/kubelet-loop.pid"
  kill_pidfile "$STATE/kube-router-loop.pid"
  pkill -TERM -f "^$BIN/kubelet " 2>/dev/null || true
  if [ -S "$CONTAINERD_SOCK" ]; then
    # stop every pod through the CRI so that containerd tears down their netns, mounts and cgroups
    if [ -x "$BIN/crictl" ]; then
      timeout 120 "$BIN/crictl" -r "unix://$CONTAINERD_SOCK" rmp -fa >/dev/null 2>&1 || true
    fi
    for c in $(ctr -a "$CONTAINERD_SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
      ctr -a "$CONTAINERD_SOCK" -n k8s.io tasks kill -s KILL "$c" >/dev/null 2>&1 || true
    done
    sleep 1
    for c in $(ctr -a "$CONTAINERD_SOCK" -n k8s.io containers ls -q 2>/dev/null); do
      ctr -a "$CONTAINERD_SOCK" -n k8s.io tasks delete -f "$c" >/dev/null 2>&1 || true
      ctr -a "$CONTAINERD_SOCK" -n k8s.io containers delete "$c" >/dev/null 2>&1 || true
    done
  fi
  kill_pidfile "$STATE/containerd.pid"
fi
# whatever still runs in the node's network namespace (shims, pods, the holder)
if grep -qw "$NODE_NETNS" <<<"$(ip netns list 2>/dev/null)"; then
  for sig in TERM KILL; do
    pids=$(ip netns pids "$NODE_NETNS" 2>/dev/null || true)
    [ -n "$pids" ] || break
    # shellcheck disable=SC2086 # one PID per word
    kill -s "$sig" $pids 2>/dev/null || true
    for _ in $(seq 20); do [ -n "$(ip netns pids "$NODE_NETNS" 2>/dev/null)" ] || break; sleep 0.5; done
  done
  ip netns del "$NODE_NETNS"
fi
if [ -f "$STATE/netns-mount.ours" ] && [ -z "$(ip netns list 2>/dev/null)" ]; then
  while mountpoint -q /run/netns; do umount /run/netns || break; done
  rm -f "$STATE/netns-mount.ours"
fi
if [ -f "$STATE/holder.pid" ]; then kill -KILL "$(cat "$STATE/holder.pid")" 2>/dev/null || true; fi
ip link del "$NODE_HOST_IF" 2>/dev/null || true

# pod cgroups: the deepest first; a cgroup with a live process left would fail rmdir, so report it
for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/unified/; do
  root=${h%/}/$CGROUP_ROOT
  [ -d "$root" ] || continue
  find "$root" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  [ ! -d "$root" ] || log "warning: $root could not be removed (processes left: $(wc -l <"$root/cgroup.procs" 2>/dev/null))"
done

if [ -d "$STATE" ]; then
  [ -f "$STATE/saved.inotify_instances" ] && sysctl -qw fs.inotify.max_user_instances="$(cat "$STATE/saved.inotify_instances")"
  [ -f "$STATE/saved.inotify_watches" ] && sysctl -qw fs.inotify.max_user_watches="$(cat "$STATE/saved.inotify_watches")"
  if [ -f "$STATE/created-dirs" ]; then
    while read -r d; do rmdir "$d" 2>/dev/null || log "warning: $d is not empty; left in place"; done <"$STATE/created-dirs"
  fi
  rm -rf "$STATE"
  log "down"
fi
