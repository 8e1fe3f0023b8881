# shellcheck shell=bash disable=SC2034 # the variables are for the scripts that source this file
# Shared by scripts/cluster/*.sh: the pins, where everything lives, and small helpers.
# Sourced, not run.

# -- pins: bump here; build.sh rebuilds what a changed pin names ---------------------------------
K8S_VERSION=v1.37.2           # k8s.io/kubernetes (1.37.3 is not served; 1.38 drops containerd 1.6)
K8S_STAGING_VERSION=v0.37.2   # the 33 k8s.io staging modules at the same release
ETCD_VERSION=v3.7.0           # go.etcd.io/etcd/server/v3: kubeadm 1.37's DefaultEtcdVersion 3.7.0-0
ETCD_IMAGE_TAG=3.7.0-0
COREDNS_VERSION=v1.14.6       # kubeadm 1.37's CoreDNSVersion
PAUSE_VERSION=3.10.2          # kubeadm 1.37's PauseVersion (= containerd's sandbox_image)
# github.com/ray-project/kuberay/ray-operator: the one whose CRDs the chart's offline checks use
KUBERAY_VERSION=$(sed -n 's/^KUBERAY_VERSION=\(v[0-9.]*\).*/\1/p' "$(dirname "${BASH_SOURCE[0]}")/../install-k8s-tools.sh")
LOCAL_PATH_VERSION=v0.0.30     # github.com/rancher/local-path-provisioner: PVs on the node's disk
KUBERAY_NAMESPACE=ray-system  # the chart's kuberay.operatorNamespace default
CRICTL_VERSION=v1.37.0        # sigs.k8s.io/cri-tools: crictl, to look inside the node
# github.com/cloudnativelabs/kube-router/v2, only its network policy controller: it enforces the
# chart's NetworkPolicies with iptables and ipsets (the only version the Go proxy serves here;
# advisories are reported against it, so it runs only inside the test node's network namespace)
KUBE_ROUTER_VERSION=v2.1.0
KUBE_ROUTER_HEALTH_PORT=20244  # in the node's network namespace

CLUSTER_NAME=raytrader
# the node: its own network namespace, a veth pair for an address (no dummy module here)
NODE_NETNS=raytrader-k8s
NODE_IP=10.250.0.1
NODE_GATEWAY=10.250.0.254    # the host end of the uplink veth
NODE_HOST_IF=rtk8s0          # host side
NODE_IF=rtk8s1               # node side
POD_CIDR=10.244.0.0/16
POD_SUBNET=10.244.0.0/24      # the one node's pod range (host-local IPAM)
SERVICE_CIDR=10.96.0.0/16
CGROUP_ROOT=raytrader-k8s     # every pod's cgroups sit under /<this> in each v1 hierarchy

CACHE=${RAYTRADER_K8S_CLUSTER_CACHE:-$HOME/.cache/raytrader/k8s-cluster}  # built once, kept
BIN=$CACHE/bin
IMAGES=$CACHE/images
STAMPS=$CACHE/stamps
STATE=${RAYTRADER_K8S_CLUSTER_STATE:-/var/tmp/raytrader-k8s}  # one cluster's life; down removes it
KUBECONFIG_FILE=$STATE/admin.conf
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
CONTAINERD_SOCK=$STATE/run/containerd.sock

log() { echo "cluster: $*" >&2; }
die() { echo "error: $*" >&2; exit 2; }

stamped() { # NAME VERSION PRODUCT...: true when NAME is stamped at VERSION and every PRODUCT exists
  local name=$1 version=$2 product
  shift 2
  for product in "$@"; do [ -e "$product" ] || return 1; done
  [ -f "$STAMPS/$name" ] && [ "$(cat "$STAMPS/$name")" = "$version" ]
}
stamp() { mkdir -p "$STAMPS"; echo "$2" >"$STAMPS/$1"; }
step() { # NAME VERSION FUNCTION PRODUCT...: runs FUNCTION unless already stamped, and times it
  stamped "$1" "$2" "${@:4}" && return 0
  local start=$SECONDS
  log "building $1 ($2)"
  "$3"
  stamp "$1" "$2"
  log "$1 built in $((SECONDS - start)) s"
}
go_env() {
  [ -x "$GO" ] || command -v "$GO" >/dev/null 2>&1 || die "Go not found (go or /usr/local/go/bin/go); install Go >= 1.26 or set GO="
  export GOMODCACHE=$CACHE/go/mod GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-modcacherw -buildvcs=false"
}
