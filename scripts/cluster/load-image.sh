#!/usr/bin/env bash
# Loads an image into the node's containerd (namespace k8s.io), where pods whose imagePullPolicy is
# Never or IfNotPresent find it (no registry is reachable here):
#   scripts/cluster/load-image.sh FILE.tar    a docker-archive (build.sh's images, `docker save -o`)
#   scripts/cluster/load-image.sh NAME:TAG    an image of the Docker daemon `docker` talks to
# Nothing is done when containerd holds NAME with the same image id. The image being replaced keeps
# a second name until the new one is unpacked: containerd 1.6's unpacker reuses the layers both
# share without holding them, and the garbage collection its own writes trigger can delete them
# mid-import ("failed to prepare extraction snapshot ... parent snapshot ... does not exist").
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/cluster/lib.sh
. "$HERE/lib.sh"
[ $# = 1 ] || die "usage: $0 FILE.tar | NAME:TAG"
SRC=$1
[ -S "$CONTAINERD_SOCK" ] || die "no cluster is up ($CONTAINERD_SOCK is missing): make cluster-up"
ctr() { command ctr -a "$CONTAINERD_SOCK" -n k8s.io "$@"; }
image_id() { # NAME: the id (config digest) containerd holds under NAME, or nothing
  "$BIN/crictl" --runtime-endpoint "unix://$CONTAINERD_SOCK" inspecti -o go-template \
    --template '{{.status.id}}' "$1" 2>/dev/null || true
}
canonical() { # NAME as containerd stores it: docker.io/library/ for a bare name, docker.io/ for a user's
  case "$1" in
    */*/* | [a-z0-9]*.[a-z]*/*) echo "$1" ;;
    */*) echo "docker.io/$1" ;;
    *) echo "docker.io/library/$1" ;;
  esac
}

if [ -f "$SRC" ]; then
  manifest=$(tar -xOf "$SRC" manifest.json 2>/dev/null) || die "$SRC is not a docker-archive: it has no manifest.json"
  name=$(sed -n 's/.*"RepoTags": *\["\([^"]*\)".*/\1/p' <<<"$manifest")
  config=$(sed -n 's/.*"Config": *"\([^"]*\)".*/\1/p' <<<"$manifest")
  if [ -z "$name" ] || [ -z "$config" ]; then die "$SRC: manifest.json names no tag (RepoTags) or no Config"; fi
  want=sha256:$(basename "$config" .json)  # <hex>.json, or blobs/sha256/<hex> from Docker >= 25
else
  command -v docker >/dev/null || die "$SRC is not a file, and there is no docker to ask for an image of that name"
  want=$(docker image inspect -f '{{.Id}}' "$SRC" 2>/dev/null) ||
    die "$SRC is neither a file nor an image of the Docker daemon at ${DOCKER_HOST:-its default socket} (make image-test's daemon: eval \"\$(bash scripts/dockerd.sh start)\")"
  name=$SRC
fi
name=$(canonical "$name")
if [ "$(image_id "$name")" = "$want" ]; then
  log "$name is loaded already (${want:7:12})"
  exit 0
fi

START=$SECONDS
held=
release() { [ -z "$held" ] || ctr images rm "$held" >/dev/null 2>&1 || true; }
trap release EXIT
names=$(ctr images ls -q)  # not piped into grep -q: its early exit would fail the pipeline
if grep -qxF "$name" <<<"$names"; then
  held=$name.replaced
  ctr images tag --force "$name" "$held" >/dev/null
fi
if [ -f "$SRC" ]; then
  ctr images import "$SRC" >/dev/null || die "could not import $SRC into containerd"
else
  docker save "$SRC" | ctr images import - >/dev/null || die "could not import Docker's $SRC into containerd"
fi
got=$(image_id "$name")
[ "$got" = "$want" ] || die "$SRC was imported, but containerd's $name is ${got:-missing}, not $want"
log "$name loaded (${want:7:12}) in $((SECONDS - START)) s"
