#!/usr/bin/env bash
# Installs the offline tool chain that `make test` checks the Helm chart with (tests/deploy/), all
# pinned, all under one cache directory that survives a clean checkout:
#
#   $RAYTRADER_K8S_TOOLS (default ~/.cache/raytrader/k8s-tools)
#     bin/helm, bin/kubeconform, bin/helm-unittest   built with Go from the Go module proxy
#     bin/checkov                                     a link into checkov-venv/ (its pins clash with ours)
#     helm-plugins/unittest/                          so `HELM_PLUGINS=... helm unittest CHART` works
#     schemas/kubernetes/v$KUBE_VERSION/              built-in types, from the kubernetes-validate wheel
#     schemas/crds/{group}/{kind}_{version}.json      KubeRay's and the Prometheus operator's CRDs
#     go/mod/                                         GOMODCACHE (GOCACHE stays at ~/.cache/go-build)
#     tools.env                                       what is installed where; the tests read it
#
# Every step is skipped when its stamp (stamps/NAME) holds the pinned version and what it installs is
# there, so a second run does nothing and costs well under a second. Needs Go >= 1.26 (go or /usr/local/go/bin/go) and a Python
# with venv; reaches only the Go module proxy and PyPI.
set -euo pipefail

# -- pins: bump here; each step reinstalls when its version changes -----------------------------------
HELM_VERSION=v4.3.1                   # helm.sh/helm/v4 (Helm 3 left security support on 2026-11-11)
KUBECONFORM_VERSION=v0.8.0            # github.com/yannh/kubeconform
HELM_UNITTEST_VERSION=v1.1.2          # github.com/helm-unittest/helm-unittest
KUBERAY_VERSION=v1.5.1                # github.com/ray-project/kuberay/ray-operator (CRDs): the oldest
                                      # operator the chart supports (authOptions) and the one the
                                      # README and kind-e2e install, so a newer-only field fails here
PROMETHEUS_OPERATOR_VERSION=v0.94.1   # github.com/prometheus-operator/prometheus-operator (CRDs)
KUBE_VERSION=1.37.0                   # the Kubernetes that helm templates for and kubeconform checks
KUBERNETES_VALIDATE_VERSION=1.37.0    # the PyPI wheel that bundles KUBE_VERSION's schemas
KUBERNETES_VALIDATE_SHA256=85136d018a27b50ec7fc049d902bfa5193f5976807e6c0f408e3ab6fe078cad9
CHECKOV_VERSION=3.3.30                # PyPI; its dependencies pinned in requirements/checkov.txt

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS=${RAYTRADER_K8S_TOOLS:-$HOME/.cache/raytrader/k8s-tools}
PYTHON=${PYTHON:-$(command -v python3.11 || echo python3)}
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}

STAMPS=$TOOLS/stamps
mkdir -p "$TOOLS/bin" "$STAMPS"
exec 9>"$TOOLS/.lock"
flock 9 # two checkouts running `make test` at once install once
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# go env: binaries and modules in the cache; -modcacherw so `rm -rf` can clear it; static binaries
export GOBIN=$TOOLS/bin GOMODCACHE=$TOOLS/go/mod CGO_ENABLED=0
export GOFLAGS="-modcacherw -buildvcs=false"

done_already() { # NAME VERSION PRODUCT...
  local name=$1 version=$2 product
  shift 2
  for product in "$@"; do [ -e "$product" ] || return 1; done
  [ -f "$STAMPS/$name" ] && [ "$(cat "$STAMPS/$name")" = "$version" ]
}
stamp() { echo "$2" >"$STAMPS/$1"; }
step() { # NAME VERSION FUNCTION PRODUCT...: runs FUNCTION unless NAME is stamped at VERSION and
  # every PRODUCT exists, and times it
  done_already "$1" "$2" "${@:4}" && return 0
  local start=$SECONDS
  echo "k8s-tools: installing $1 $2"
  "$3"
  stamp "$1" "$2"
  echo "k8s-tools: $1 $2 installed in $((SECONDS - start)) s"
}
need_go() {
  [ -x "$GO" ] || command -v "$GO" >/dev/null 2>&1 || {
    echo "error: Go not found (looked for go and /usr/local/go/bin/go); install Go >= 1.26 or set GO=" >&2
    exit 2
  }
}
module_dir() { # MODULE@VERSION -> its directory in GOMODCACHE (downloads it)
  local dir
  dir=$("$GO" mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -n "$dir" ] || { "$GO" mod download -json "$1" >&2; echo "error: could not download $1" >&2; exit 2; }
  echo "$dir"
}

install_helm() {
  need_go
  # helm reports this version only when the linker sets it, as helm's own Makefile does
  "$GO" install -trimpath -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
}

install_kubeconform() {
  need_go
  "$GO" install -trimpath -ldflags "-s -w -X main.version=$KUBECONFORM_VERSION" \
    "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
}

install_helm_unittest() {
  need_go
  # its go.mod has a replace directive, which `go install pkg@version` refuses: build in the module
  local dir
  dir=$(module_dir "github.com/helm-unittest/helm-unittest@$HELM_UNITTEST_VERSION")
  local ldflags="-s -w -X github.com/helm-unittest/helm-unittest/internal/build.version=${HELM_UNITTEST_VERSION#v}"
  (cd "$dir" && "$GO" build -trimpath -ldflags "$ldflags" -o "$TOOLS/bin/helm-unittest" ./cmd/helm-unittest)
  # a plugin directory of our own (the upstream plugin.yaml runs an install hook that downloads a
  # release from GitHub); helm only verifies plugins on `helm plugin install`, which we never run
  local plugin=$TOOLS/helm-plugins/unittest
  rm -rf "$plugin" && mkdir -p "$plugin"
  ln -s ../../bin/helm-unittest "$plugin/helm-unittest"
  cat >"$plugin/plugin.yaml" <<EOF
name: unittest
version: "${HELM_UNITTEST_VERSION#v}"
usage: unittest for helm charts
description: helm-unittest $HELM_UNITTEST_VERSION, built by scripts/install-k8s-tools.sh
ignoreFlags: false
command: \$HELM_PLUGIN_DIR/helm-unittest
EOF
}

install_checkov() {
  local venv=$TOOLS/checkov-venv
  rm -rf "$venv"
  "$PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -c "$ROOT/requirements/checkov.txt" "checkov==$CHECKOV_VERSION"
  ln -sf ../checkov-venv/bin/checkov "$TOOLS/bin/checkov"
}

install_kubernetes_schemas() {
  local tmp=$WORK/kubernetes-validate out=$TOOLS/schemas/kubernetes/v$KUBE_VERSION
  mkdir -p "$tmp"
  echo "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION --hash=sha256:$KUBERNETES_VALIDATE_SHA256" >"$tmp/req.txt"
  "$TOOLS/checkov-venv/bin/python" -m pip download -q --no-deps --only-binary :all: \
    --require-hashes -r "$tmp/req.txt" -d "$tmp"
  rm -rf "$out"
  "$TOOLS/checkov-venv/bin/python" "$ROOT/scripts/crd-to-jsonschema.py" k8s "$out" \
    "$tmp"/kubernetes_validate-*.whl "$KUBE_VERSION"
}

install_crd_schemas() {
  need_go
  local kuberay prom out=$TOOLS/schemas/crds
  kuberay=$(module_dir "github.com/ray-project/kuberay/ray-operator@$KUBERAY_VERSION")
  prom=$(module_dir "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION")
  rm -rf "$out"
  "$TOOLS/checkov-venv/bin/python" "$ROOT/scripts/crd-to-jsonschema.py" crd "$out" \
    "$kuberay"/config/crd/bases/ray.io_{rayclusters,rayjobs,rayservices}.yaml \
    "$prom"/example/prometheus-operator-crd/monitoring.coreos.com_{servicemonitors,podmonitors}.yaml
}

# checkov first: its venv's Python (with PyYAML) converts the schemas
converter=$(sha256sum "$ROOT/scripts/crd-to-jsonschema.py" | cut -c1-12)
step checkov "$CHECKOV_VERSION $(sha256sum "$ROOT/requirements/checkov.txt" | cut -c1-12)" \
  install_checkov "$TOOLS/bin/checkov"
step kubernetes-schemas "$KUBE_VERSION $KUBERNETES_VALIDATE_VERSION $converter" \
  install_kubernetes_schemas "$TOOLS/schemas/kubernetes/v$KUBE_VERSION/_definitions.json"
step crd-schemas "$KUBERAY_VERSION $PROMETHEUS_OPERATOR_VERSION $converter" \
  install_crd_schemas "$TOOLS/schemas/crds/ray.io/rayservice_v1.json"
step helm "$HELM_VERSION" install_helm "$TOOLS/bin/helm"
step kubeconform "$KUBECONFORM_VERSION" install_kubeconform "$TOOLS/bin/kubeconform"
step helm-unittest "$HELM_UNITTEST_VERSION" install_helm_unittest \
  "$TOOLS/bin/helm-unittest" "$TOOLS/helm-plugins/unittest/plugin.yaml"

cat >"$TOOLS/tools.env.new" <<EOF
# written by scripts/install-k8s-tools.sh; tests/deploy reads it
HELM_VERSION=$HELM_VERSION
KUBECONFORM_VERSION=$KUBECONFORM_VERSION
HELM_UNITTEST_VERSION=$HELM_UNITTEST_VERSION
KUBERAY_VERSION=$KUBERAY_VERSION
PROMETHEUS_OPERATOR_VERSION=$PROMETHEUS_OPERATOR_VERSION
CHECKOV_VERSION=$CHECKOV_VERSION
KUBE_VERSION=$KUBE_VERSION
EOF
if ! cmp -s "$TOOLS/tools.env.new" "$TOOLS/tools.env"; then
  mv "$TOOLS/tools.env.new" "$TOOLS/tools.env"
else
  rm "$TOOLS/tools.env.new"
fi
