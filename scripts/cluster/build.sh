#!/usr/bin/env bash
# Builds everything the local Kubernetes cluster runs, from the Go module proxy and Debian packages
# only (no container registry is reachable here), into ~/.cache/raytrader/k8s-cluster:
#
#   bin/   kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet kubeadm kubectl
#          (k8s.io/kubernetes $K8S_VERSION through a wrapper module), etcd, coredns, ray-operator,
#          kube-router (NetworkPolicy enforcement), crictl
#   images/*.tar   docker-archive images under the tags kubeadm and KubeRay's manifests name:
#          pause (from Kubernetes' pause.c), the control plane, etcd and coredns on scratch,
#          kube-proxy on a debootstrap rootfs with iptables and conntrack, the KubeRay operator,
#          local-path-provisioner (PersistentVolumes), busybox for checks and volume helpers
#   kuberay/       KubeRay's own manifests (config/default: CRDs, RBAC, manager) from its module
#   local-path/    local-path-provisioner's manifests (deploy/) from its module
#
# Every step is skipped when its stamp holds the pinned version and its products exist, so a warm
# run costs about a second. Cold: ~25 CPU-minutes of Go, ~3 GB of module cache, ~1 min debootstrap.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/cluster/lib.sh
. "$HERE/lib.sh"
PYTHON=${PYTHON:-$(command -v python3)}

mkdir -p "$BIN" "$IMAGES" "$CACHE/src"
exec 8>"$CACHE/.build.lock"
flock 8 # two checkouts building at once build once

# -- Debian packages the node needs -----------------------------------------------------------------
DEBIAN_PACKAGES=(containerd runc containernetworking-plugins conntrack iptables debootstrap gcc libc6-dev busybox-static socat ethtool ipset)
missing=()
for p in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  [ "$(id -u)" = 0 ] || die "installing ${missing[*]} needs root"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
fi

go_env
K8S_COMMANDS=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet kubeadm kubectl)

# -- Kubernetes: a wrapper module requiring k8s.io/kubernetes with its staging replaces --------------
build_kubernetes() {
  local src=$CACHE/src/k8s mod
  rm -rf "$src" && mkdir -p "$src"
  mod=$(curl -fsS "${GOPROXY_URL:-https://proxy.golang.org}/k8s.io/kubernetes/@v/$K8S_VERSION.mod") ||
    die "could not fetch k8s.io/kubernetes $K8S_VERSION's go.mod from the Go module proxy"
  {
    printf 'module raytrader.local/k8s-cluster\n\ngo 1.26.0\n\nrequire k8s.io/kubernetes %s\n\n' "$K8S_VERSION"
    # kubernetes' go.mod points its staging modules at ./staging; the proxy serves them as modules
    sed -n "s#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#replace \1 => \1 $K8S_STAGING_VERSION#p" <<<"$mod"
  } >"$src/go.mod"
  {
    printf '//go:build tools\n\n// Package tools pins the Kubernetes commands the local cluster runs.\npackage tools\n\nimport (\n'
    for c in "${K8S_COMMANDS[@]}"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$c"; done
    printf ')\n'
  } >"$src/tools.go"
  (cd "$src" && "$GO" mod tidy)
  local minor=${K8S_VERSION#v1.}
  minor=${minor%%.*}
  local pkgs=()
  for c in "${K8S_COMMANDS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  # kubeadm compares versions, so the binaries must say which they are (the linker sets it, as
  # Kubernetes' own build does)
  (cd "$src" && "$GO" build -trimpath -o "$BIN/" -ldflags "-s -w \
      -X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
      -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
      -X k8s.io/component-base/version.gitTreeState=clean \
      -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z \
      -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION" "${pkgs[@]}")
  "$BIN/kubelet" --version | grep -qx "Kubernetes $K8S_VERSION" || die "kubelet does not report $K8S_VERSION"
}
k8s_products=()
for c in "${K8S_COMMANDS[@]}"; do k8s_products+=("$BIN/$c"); done
step kubernetes "$K8S_VERSION" build_kubernetes "${k8s_products[@]}"

# -- etcd: a three-line main around etcdmain (the server module has ../ replaces) -----------------
build_etcd() {
  local src=$CACHE/src/etcd
  rm -rf "$src" && mkdir -p "$src"
  printf 'module raytrader.local/etcd\n\ngo 1.26.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" >"$src/go.mod"
  cat >"$src/main.go" <<'EOF'
// Command etcd is etcd's own server entry point.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
  (cd "$src" && "$GO" mod tidy && "$GO" build -trimpath -ldflags "-s -w" -o "$BIN/etcd" .)
}
step etcd "$ETCD_VERSION" build_etcd "$BIN/etcd"

module_dir() { # MODULE@VERSION -> its directory in GOMODCACHE (downloads it)
  local dir
  dir=$("$GO" mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -n "$dir" ] || die "could not download $1 from the Go module proxy"
  echo "$dir"
}

build_coredns() {
  local dir
  dir=$(module_dir "github.com/coredns/coredns@$COREDNS_VERSION")
  (cd "$dir" && "$GO" build -trimpath -ldflags "-s -w" -o "$BIN/coredns" .)
}
step coredns "$COREDNS_VERSION" build_coredns "$BIN/coredns"

build_kuberay() {
  local dir
  dir=$(module_dir "github.com/ray-project/kuberay/ray-operator@$KUBERAY_VERSION")
  (cd "$dir" && "$GO" build -trimpath -ldflags "-s -w" -o "$BIN/ray-operator" .)
  rm -rf "$CACHE/kuberay" && mkdir -p "$CACHE/kuberay"
  cp -r "$dir/config" "$CACHE/kuberay/" && chmod -R u+w "$CACHE/kuberay"
}
step kuberay "$KUBERAY_VERSION" build_kuberay "$BIN/ray-operator" "$CACHE/kuberay/config/default"

build_crictl() {
  local dir
  dir=$(module_dir "sigs.k8s.io/cri-tools@$CRICTL_VERSION")
  (cd "$dir" && "$GO" build -trimpath -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION" -o "$BIN/crictl" ./cmd/crictl)
}
step crictl "$CRICTL_VERSION" build_crictl "$BIN/crictl"

# NetworkPolicy enforcement: kube-router's firewall controller (iptables + ipset on the node)
build_kube_router() {
  GOBIN=$BIN "$GO" install -trimpath -ldflags "-s -w" \
    "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@$KUBE_ROUTER_VERSION"
}
step kube-router "$KUBE_ROUTER_VERSION" build_kube_router "$BIN/kube-router"

# dynamic PersistentVolumes on the node's disk (the chart's StatefulSets and PVCs)
build_local_path() {
  local dir
  dir=$(module_dir "github.com/rancher/local-path-provisioner@$LOCAL_PATH_VERSION")
  # its zip has vendor/modules.txt without the vendored code: build from the module cache
  (cd "$dir" && "$GO" build -mod=mod -trimpath -ldflags "-s -w" -o "$BIN/local-path-provisioner" .)
  rm -rf "$CACHE/local-path" && mkdir -p "$CACHE/local-path"
  cp -r "$dir/deploy" "$CACHE/local-path/" && chmod -R u+w "$CACHE/local-path"
}
step local-path "$LOCAL_PATH_VERSION" build_local_path "$BIN/local-path-provisioner" "$CACHE/local-path/deploy/kustomization.yaml"

# -- images ----------------------------------------------------------------------------------------
image() { "$PYTHON" "$HERE/image_tar.py" "$@"; }

build_pause() {
  local dir
  dir=$(module_dir "k8s.io/kubernetes@$K8S_VERSION")
  gcc -Os -static -Wall -DVERSION="v$PAUSE_VERSION-raytrader" -o "$CACHE/src/pause" "$dir/build/pause/linux/pause.c"
  strip "$CACHE/src/pause"
  image "$IMAGES/pause.tar" --tag "registry.k8s.io/pause:$PAUSE_VERSION" --entrypoint /pause \
    --user 65535:65535 --file "$CACHE/src/pause:/pause"
}
step image-pause "$PAUSE_VERSION" build_pause "$IMAGES/pause.tar"

build_control_plane_images() {
  local c
  for c in kube-apiserver kube-controller-manager kube-scheduler; do
    image "$IMAGES/$c.tar" --tag "registry.k8s.io/$c:$K8S_VERSION" --entrypoint "/usr/local/bin/$c" \
      --file "$BIN/$c:/usr/local/bin/$c"
  done
  image "$IMAGES/etcd.tar" --tag "registry.k8s.io/etcd:$ETCD_IMAGE_TAG" --entrypoint /usr/local/bin/etcd \
    --file "$BIN/etcd:/usr/local/bin/etcd"
  image "$IMAGES/coredns.tar" --tag "registry.k8s.io/coredns/coredns:$COREDNS_VERSION" \
    --entrypoint /coredns --file "$BIN/coredns:/coredns"
  image "$IMAGES/ray-operator.tar" --tag "quay.io/kuberay/operator:$KUBERAY_VERSION" \
    --entrypoint /manager --user 65532:65532 --file "$BIN/ray-operator:/manager"
  image "$IMAGES/local-path-provisioner.tar" --tag "rancher/local-path-provisioner:$LOCAL_PATH_VERSION" \
    --entrypoint /usr/bin/local-path-provisioner --file "$BIN/local-path-provisioner:/usr/bin/local-path-provisioner"
}
step images-control-plane "$K8S_VERSION-$ETCD_VERSION-$COREDNS_VERSION-$KUBERAY_VERSION-$LOCAL_PATH_VERSION" \
  build_control_plane_images "$IMAGES/kube-apiserver.tar" "$IMAGES/etcd.tar" "$IMAGES/coredns.tar" \
  "$IMAGES/ray-operator.tar" "$IMAGES/local-path-provisioner.tar"

# a small image for the cluster's own checks and local-path's volume helper: Debian's static busybox
# (its wget and httpd crash without glibc's NSS modules, so HTTP goes through netcheck/, built here)
BUSYBOX_APPLETS=(sh ash cat echo env hostname id ls mkdir nc nslookup ping rm sleep touch)
build_busybox_image() {
  local links=() a
  for a in "${BUSYBOX_APPLETS[@]}"; do links+=(--symlink "/bin/$a:busybox"); done
  (cd "$HERE/netcheck" && "$GO" build -trimpath -ldflags "-s -w" -o "$CACHE/src/netcheck" .)
  image "$IMAGES/busybox.tar" --tag raytrader.local/busybox:1 --entrypoint /bin/sh \
    --file /bin/busybox:/bin/busybox --file "$CACHE/src/netcheck:/bin/netcheck" "${links[@]}"
}
step image-busybox "$(dpkg-query -W -f='${Version}' busybox-static)-${BUSYBOX_APPLETS[*]}-$(cat "$HERE"/netcheck/* | sha256sum | cut -c1-12)" \
  build_busybox_image "$IMAGES/busybox.tar"

# kube-proxy programs iptables, so its image carries Debian's iptables and conntrack
PROXY_ROOTFS_PACKAGES=iptables,conntrack,kmod
build_kube_proxy_image() {
  local mirror rootfs=$CACHE/src/proxy-rootfs
  mirror=$("$HERE/../debian-mirror.sh")
  rm -rf "$rootfs" && mkdir -p "$rootfs"
  debootstrap --variant=minbase --include="$PROXY_ROOTFS_PACKAGES" bookworm "$rootfs" "$mirror" >"$CACHE/src/debootstrap.log" 2>&1 ||
    die "debootstrap failed (log: $CACHE/src/debootstrap.log)"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  # the file layer of the image adds kube-proxy; the rootfs is one layer of its own
  tar -C "$rootfs" --numeric-owner --sort=name --mtime=@0 -cf "$CACHE/src/proxy-rootfs.tar" .
  rm -rf "$rootfs"
  image "$IMAGES/kube-proxy.tar" --tag "registry.k8s.io/kube-proxy:$K8S_VERSION" \
    --entrypoint /usr/local/bin/kube-proxy --layer "$CACHE/src/proxy-rootfs.tar" \
    --file "$BIN/kube-proxy:/usr/local/bin/kube-proxy"
}
step image-kube-proxy "$K8S_VERSION-bookworm-$PROXY_ROOTFS_PACKAGES" build_kube_proxy_image "$IMAGES/kube-proxy.tar"

# the chart's PostgreSQL, Redis and Kafka, from Debian packages and Maven Central
"$HERE/build-service-images.sh"

log "built: $(du -sh "$BIN" | cut -f1) of binaries, $(du -sh "$IMAGES" | cut -f1) of images in $CACHE"
