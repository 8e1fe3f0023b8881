#!/usr/bin/env bash
# Brings up a one-node Kubernetes cluster on this machine, from what build.sh built:
#
#   scripts/cluster/up.sh        # idempotent: a running cluster is left as it is
#
# The node is this machine inside a network namespace of its own ($NODE_NETNS, node IP $NODE_IP on
# a veth pair whose host end is $NODE_GATEWAY) and a private mount namespace, held by one "holder"
# process:
# * Debian's containerd (config v2, restrict_oom_score_adj: this VM lacks CAP_SYS_RESOURCE) with its
#   image store under the cache, so images survive a cluster-down; its state under $STATE;
# * the kubelet in a restart loop (there is no systemd), in the same namespaces;
# * `kubeadm init` (preflight skipped: it expects systemd), kube-proxy in iptables mode, CoreDNS,
#   a bridge CNI with host-local IPAM for the node's pod range, and kube-router's firewall
#   controller enforcing NetworkPolicies (iptables + ipset) in the node's network namespace.
# What Kubernetes writes to fixed host paths (/etc/kubernetes, /var/lib/{kubelet,etcd,cni},
# /var/log/{pods,containers}, /run/containerd, /run/netns) is bind-mounted from $STATE inside the
# mount namespace; three kernel sysctls the kubelet would set machine-wide (kernel.panic,
# kernel.panic_on_oops, vm.overcommit_memory) are shadowed there by files holding the values it
# wants; pod cgroups live under /$CGROUP_ROOT in every cgroup v1 hierarchy. down.sh undoes all of
# it. Needs root. Prints the lines that point a shell at the cluster (env.sh prints them again).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/cluster/lib.sh
. "$HERE/lib.sh"

[ "$(id -u)" = 0 ] || die "the cluster needs root (network and mount namespaces, cgroups, containerd)"
for b in kubelet kubeadm kubectl; do [ -x "$BIN/$b" ] || die "$BIN/$b is missing: run scripts/cluster/build.sh (make cluster-up does)"; done
TIMEOUT_S=${RAYTRADER_CLUSTER_UP_TIMEOUT_S:-600}
CONTAINERD_ROOT=$CACHE/containerd  # images kept between clusters
START=$SECONDS
export KUBECONFIG=$KUBECONFIG_FILE
kubectl() { "$BIN/kubectl" --request-timeout=20s "$@"; }
in_node() { nsenter -t "$(cat "$STATE/holder.pid")" -m -n -- "$@"; }
ctr() { command ctr -a "$CONTAINERD_SOCK" -n k8s.io "$@"; }
holder_alive() { [ -f "$STATE/holder.pid" ] && kill -0 "$(cat "$STATE/holder.pid")" 2>/dev/null; }
wait_for() { # WHAT SECONDS COMMAND...: polls COMMAND every second
  local what=$1 limit=$2 t0=$SECONDS
  shift 2
  until "$@" >/dev/null 2>&1; do
    [ $((SECONDS - t0)) -lt "$limit" ] || die "timed out after ${limit} s waiting for $what (logs: $STATE/log/)"
    sleep 1
  done
}

# -- images: every one build.sh wrote; an unchanged one costs reading its manifest -------------------
import_images() {
  local tar
  mkdir -p "$STATE/log"
  for tar in "$IMAGES"/*.tar; do
    "$HERE/load-image.sh" "$tar" 2>>"$STATE/log/images.log" || die "$(tail -n1 "$STATE/log/images.log" | sed "s/^error: //")"
  done
}

install_addons() { # idempotent: on a new cluster and on one that is already up
  # -- PersistentVolumes: local-path-provisioner's own manifests, volumes under $STATE/volumes --------
  mkdir -p "$STATE/local-path" "$STATE/volumes"
  # kustomize loads a directory resource only by a relative path below its root: a copy
  rm -rf "$STATE/local-path/deploy" && cp -r "$CACHE/local-path/deploy" "$STATE/local-path/"
  cat >"$STATE/local-path/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - deploy
patches:
  - patch: |-
      apiVersion: storage.k8s.io/v1
      kind: StorageClass
      metadata:
        name: local-path
        annotations:
          storageclass.kubernetes.io/is-default-class: "true"
  - patch: |-
      apiVersion: v1
      kind: ConfigMap
      metadata:
        name: local-path-config
        namespace: local-path-storage
      data:
        config.json: '{"nodePathMap": [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": ["$STATE/volumes"]}]}'
        helperPod.yaml: |-
          apiVersion: v1
          kind: Pod
          metadata:
            name: helper-pod
          spec:
            priorityClassName: system-node-critical
            containers:
              - name: helper-pod
                image: raytrader.local/busybox:1
                imagePullPolicy: Never
EOF
  kubectl apply -k "$STATE/local-path" >"$STATE/log/local-path.log" 2>&1 ||
    die "could not install local-path-provisioner: $(tail -3 "$STATE/log/local-path.log")"

  # -- the KubeRay operator, from its module's own manifests (config/default), CRDs server-side ---------
  mkdir -p "$STATE/kuberay"
  rm -rf "$STATE/kuberay/config" && cp -r "$CACHE/kuberay/config" "$STATE/kuberay/"
  cat >"$STATE/kuberay/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: $KUBERAY_NAMESPACE
resources:
  - namespace.yaml
  - config/default
images:
  - name: quay.io/kuberay/operator
    newTag: $KUBERAY_VERSION
EOF
  printf 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n' "$KUBERAY_NAMESPACE" >"$STATE/kuberay/namespace.yaml"
  kubectl apply --server-side --force-conflicts -k "$STATE/kuberay" >"$STATE/log/kuberay.log" 2>&1 ||
    die "could not install the KubeRay operator: $(tail -3 "$STATE/log/kuberay.log")"
  wait_for "the KubeRay operator" $((TIMEOUT_S - (SECONDS - START))) \
    kubectl -n "$KUBERAY_NAMESPACE" rollout status deployment/kuberay-operator --timeout=5s
  wait_for "local-path-provisioner" $((TIMEOUT_S - (SECONDS - START))) \
    kubectl -n local-path-storage rollout status deployment/local-path-provisioner --timeout=5s
}

if holder_alive && kubectl get --raw /readyz >/dev/null 2>&1; then
  import_images
  install_addons
  log "already up"
  "$HERE/env.sh"
  exit 0
fi
if [ -e "$STATE" ]; then
  log "a cluster that is not answering was left in $STATE: taking it down first"
  "$HERE/down.sh"
fi

exec 7>/run/raytrader-k8s.lock
flock -n 7 || die "another cluster-up or cluster-down is running"

mkdir -p "$STATE"/{run,log,etc-kubernetes,kubelet,etcd,cni-cache,cni-net.d,volume-plugins,fakesys,containerd-state,varlog/pods,varlog/containers}
mkdir -p "$CONTAINERD_ROOT"

# -- host settings this run changes, recorded so that down.sh restores them ---------------------------
# many pods each hold inotify instances; 128 (this VM's default) runs out
sysctl -n fs.inotify.max_user_instances >"$STATE/saved.inotify_instances"
[ "$(cat "$STATE/saved.inotify_instances")" -ge 1024 ] || sysctl -qw fs.inotify.max_user_instances=1024
sysctl -n fs.inotify.max_user_watches >"$STATE/saved.inotify_watches"
[ "$(cat "$STATE/saved.inotify_watches")" -ge 524288 ] || sysctl -qw fs.inotify.max_user_watches=524288

# -- network namespace and the veth to the host ------------------------------------------------------
# the first `ip netns add` on a machine mounts /run/netns; down.sh undoes it when it was this one
mountpoint -q /run/netns || touch "$STATE/netns-mount.ours"
ip netns add "$NODE_NETNS"
ip -n "$NODE_NETNS" link set lo up
ip link add "$NODE_HOST_IF" type veth peer name "$NODE_IF" netns "$NODE_NETNS"
ip addr add "$NODE_GATEWAY/24" dev "$NODE_HOST_IF"
ip link set "$NODE_HOST_IF" up
ip -n "$NODE_NETNS" addr add "$NODE_IP/24" dev "$NODE_IF"
ip -n "$NODE_NETNS" link set "$NODE_IF" up
ip -n "$NODE_NETNS" route add default via "$NODE_GATEWAY" dev "$NODE_IF"
# pods reach Services through kube-proxy's iptables rules on the bridge
ip netns exec "$NODE_NETNS" sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 2>/dev/null ||
  ip netns exec "$NODE_NETNS" sysctl -qw net.ipv4.ip_forward=1

# -- cgroups: one root of our own in every v1 hierarchy ---------------------------------------------
for h in /sys/fs/cgroup/*/; do
  h=${h%/}
  [ -f "$h/cgroup.procs" ] || continue
  case "$(basename "$h")" in unified) continue ;; esac
  mkdir -p "$h/$CGROUP_ROOT"
  if [ -f "$h/cpuset.cpus" ]; then
    cat "$h/cpuset.cpus" >"$h/$CGROUP_ROOT/cpuset.cpus"
    cat "$h/cpuset.mems" >"$h/$CGROUP_ROOT/cpuset.mems"
  fi
done

# -- containerd, CNI, kubelet and kubeadm configuration ------------------------------------------
cat >"$STATE/containerd.toml" <<EOF
version = 2
root = "$CONTAINERD_ROOT"
state = "$STATE/containerd-state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE/containerd-opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:$PAUSE_VERSION"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    discard_unpacked_layers = false
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$STATE/run/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni-net.d"
EOF
cat >"$STATE/cni-net.d/10-raytrader.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "raytrader",
  "plugins": [
    {"type": "bridge", "bridge": "rtk8sbr0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_SUBNET"}]],
              "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$STATE/cni-ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
echo "nameserver $NODE_GATEWAY" >"$STATE/resolv.conf"  # no upstream DNS here; CoreDNS answers cluster names
printf 10 >"$STATE/fakesys/kernel.panic"
printf 1 >"$STATE/fakesys/kernel.panic_on_oops"
printf 1 >"$STATE/fakesys/vm.overcommit_memory"

cat >"$STATE/kubeadm.yaml" <<EOF
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: $NODE_IP
  bindPort: 6443
nodeRegistration:
  name: $CLUSTER_NAME
  criSocket: unix://$CONTAINERD_SOCK
  imagePullPolicy: Never
  taints: []
  kubeletExtraArgs:
    - {name: node-ip, value: "$NODE_IP"}
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
clusterName: $CLUSTER_NAME
kubernetesVersion: $K8S_VERSION
imageRepository: registry.k8s.io
controlPlaneEndpoint: "$NODE_IP:6443"
networking:
  podSubnet: $POD_CIDR
  serviceSubnet: $SERVICE_CIDR
apiServer:
  certSANs: ["$NODE_IP", "127.0.0.1"]
controllerManager:
  extraArgs:
    - {name: flex-volume-plugin-dir, value: "$STATE/volume-plugins"}
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP_ROOT
cgroupsPerQOS: true
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
volumePluginDir: $STATE/volume-plugins
resolvConf: $STATE/resolv.conf
oomScoreAdj: 0
# the disk is shared with the machine (other checkouts, caches): a percentage of a large disk can be
# GBs (a run here saw DiskPressure with 8.9 GB free of a 252 GB disk and evicted the KubeRay
# operator), so evict only when the disk is really full, and recover quickly once it is not
evictionHard: {memory.available: 256Mi, nodefs.available: 1Gi, imagefs.available: 1Gi, nodefs.inodesFree: 1%}
evictionPressureTransitionPeriod: 30s
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
---
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
conntrack:
  # nf_conntrack_max is machine-wide (read-only in a network namespace): leave it alone
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF

# -- the holder: owns the mount namespace, mounts the shields, runs containerd ------------------------
cat >"$STATE/holder.sh" <<EOF
#!/usr/bin/env bash
set -euo pipefail
mount --make-rshared /
mount -t tmpfs raytrader-k8s-run /run/containerd 2>/dev/null || { mkdir -p /run/containerd; mount -t tmpfs raytrader-k8s-run /run/containerd; }
mkdir -p /run/netns && mount -t tmpfs raytrader-k8s-netns /run/netns
for pair in "etc-kubernetes:/etc/kubernetes" "kubelet:/var/lib/kubelet" "etcd:/var/lib/etcd" \
            "cni-cache:/var/lib/cni" "varlog:/var/log" "cni-net.d:/etc/cni/net.d"; do
  src=$STATE/\${pair%%:*} dst=\${pair#*:}
  [ -d "\$dst" ] || { echo "holder: \$dst is missing on the host; not creating it" >&2; exit 1; }
  mount --bind "\$src" "\$dst"
done
mount --bind $STATE/fakesys/kernel.panic /proc/sys/kernel/panic
mount --bind $STATE/fakesys/kernel.panic_on_oops /proc/sys/kernel/panic_on_oops
mount --bind $STATE/fakesys/vm.overcommit_memory /proc/sys/vm/overcommit_memory
containerd --config $STATE/containerd.toml >>$STATE/log/containerd.log 2>&1 &
echo \$! >$STATE/containerd.pid
exec sleep infinity
EOF
chmod +x "$STATE/holder.sh"
# /etc/cni/net.d, /var/lib/{etcd,kubelet,cni} may not exist here: they are mount points only inside
# the node's namespace, recorded so that down.sh removes the ones it created
for d in /etc/kubernetes /var/lib/kubelet /var/lib/etcd /var/lib/cni /etc/cni/net.d; do
  [ -d "$d" ] || { mkdir -p "$d" && echo "$d" >>"$STATE/created-dirs"; }
done
nsenter --net="/run/netns/$NODE_NETNS" unshare -m --propagation private "$STATE/holder.sh" \
  >>"$STATE/log/holder.log" 2>&1 &
echo $! >"$STATE/holder.pid"
wait_for containerd 30 ctr version

import_images

# -- kubelet in a restart loop, then kubeadm ------------------------------------------------------
cat >"$STATE/kubelet-loop.sh" <<EOF
#!/usr/bin/env bash
# systemd's Restart=always for the kubelet: kubeadm writes its flags and config while it retries
while :; do
  KUBELET_KUBEADM_ARGS=""
  [ -f /var/lib/kubelet/kubeadm-flags.env ] && . /var/lib/kubelet/kubeadm-flags.env
  if [ -f /var/lib/kubelet/config.yaml ]; then
    # shellcheck disable=SC2086 # kubeadm's flags are one word each
    $BIN/kubelet --config=/var/lib/kubelet/config.yaml --kubeconfig=/etc/kubernetes/kubelet.conf \\
      --bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --cert-dir=/var/lib/kubelet/pki \\
      \$KUBELET_KUBEADM_ARGS >>$STATE/log/kubelet.log 2>&1
  fi
  sleep 1
done
EOF
chmod +x "$STATE/kubelet-loop.sh"
in_node "$STATE/kubelet-loop.sh" </dev/null >/dev/null 2>&1 &
echo $! >"$STATE/kubelet-loop.pid"

log "kubeadm init (log: $STATE/log/kubeadm.log)"
in_node "$BIN/kubeadm" init --config "$STATE/kubeadm.yaml" --skip-phases=preflight \
  >"$STATE/log/kubeadm.log" 2>&1 || die "kubeadm init failed; its log: $STATE/log/kubeadm.log, the kubelet's: $STATE/log/kubelet.log"
cp "$STATE/etc-kubernetes/admin.conf" "$KUBECONFIG_FILE"
chmod 600 "$KUBECONFIG_FILE"

wait_for "the node to be Ready" $((TIMEOUT_S - (SECONDS - START))) \
  kubectl wait --for=condition=Ready "node/$CLUSTER_NAME" --timeout=5s
wait_for "CoreDNS" $((TIMEOUT_S - (SECONDS - START))) \
  kubectl -n kube-system rollout status deployment/coredns --timeout=5s

# -- NetworkPolicy enforcement: kube-router's firewall controller, in a restart loop like the kubelet.
# Only the firewall: pod networking stays the bridge CNI, Services stay kube-proxy's. It programs the
# node's iptables (Debian's, nf_tables) and ipsets from the API's NetworkPolicies and pods.
cat >"$STATE/kube-router-loop.sh" <<EOF
#!/usr/bin/env bash
while :; do
  $BIN/kube-router --kubeconfig=/etc/kubernetes/admin.conf --hostname-override=$CLUSTER_NAME \\
    --run-firewall=true --run-router=false --run-service-proxy=false --enable-cni=false \\
    --enable-pod-egress=false --enable-ipv6=false --service-cluster-ip-range=$SERVICE_CIDR \\
    --iptables-sync-period=1m --health-port=$KUBE_ROUTER_HEALTH_PORT >>$STATE/log/kube-router.log 2>&1
  sleep 1
done
EOF
chmod +x "$STATE/kube-router-loop.sh"
in_node "$STATE/kube-router-loop.sh" </dev/null >/dev/null 2>&1 &
echo $! >"$STATE/kube-router-loop.pid"
wait_for "kube-router's network policy chains (log: $STATE/log/kube-router.log)" 120 \
  in_node iptables -w 5 -n -L KUBE-ROUTER-FORWARD

install_addons
log "up in $((SECONDS - START)) s"
"$HERE/env.sh"
