#!/usr/bin/env bash
# Prints the lines that point a shell at the local cluster: `eval "$(scripts/cluster/env.sh)"`.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/cluster/lib.sh
. "$HERE/lib.sh"
TOOLS=${RAYTRADER_K8S_TOOLS:-$HOME/.cache/raytrader/k8s-tools}
[ -f "$KUBECONFIG_FILE" ] || die "no cluster is up ($KUBECONFIG_FILE is missing): make cluster-up"
echo "export KUBECONFIG=$KUBECONFIG_FILE"
echo "export PATH=$BIN:$TOOLS/bin:\$PATH  # kubectl $K8S_VERSION, helm, crictl"
# crictl and ctr talk to the node's containerd
echo "export CONTAINER_RUNTIME_ENDPOINT=unix://$CONTAINERD_SOCK CONTAINERD_ADDRESS=$CONTAINERD_SOCK CONTAINERD_NAMESPACE=k8s.io"
