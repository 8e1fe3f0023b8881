#!/usr/bin/env bash
# Builds a local stand-in for the official Ray image where no registry can be reached (CI):
#
#   scripts/build-base-image.sh                        # prints the tag it built (or found)
#   docker build --build-arg BASE_IMAGE=raytrader-base:ray2.60.0-py311-cpu -t raytrader .
#
# 1. a Debian 12 rootfs by debootstrap (minbase + Python 3.11, venv, CA certificates), kept as a
#    tarball under ~/.cache/raytrader/docker/rootfs and imported as raytrader-base-rootfs:<key>;
# 2. docker/base.Dockerfile on it: user ray (uid 1000), a venv at /home/ray/anaconda3 like the
#    official image's Python, ray[default,serve] pinned by requirements/constraints.txt.
#
# The result is tagged raytrader-base:ray<version>-py311-cpu with a label holding a hash of its
# inputs (the Dockerfile, the constraints, the package list); when the tag exists with the same
# hash nothing is rebuilt.
#
# --wheelhouse DIR [--extras stack,search,dashboard]: first fill DIR with every wheel the base and
# the Dockerfile (with those extras: its default EXTRAS) install, resolved by pip in a container of the rootfs (Debian's Python
# 3.11.2, whose markers differ from a newer host Python's: redis needs async-timeout below 3.11.3),
# with the host's pip cache, CA bundle and index settings; then build the base with pip reading
# only DIR, served on http://127.0.0.1:$RAYTRADER_WHEELHOUSE_PORT (default 31080). Serve DIR the
# same way to build the Dockerfile (tests/deploy/test_image.py does): containers here may be unable
# to reach PyPI themselves (a proxy whose CA only the host trusts), and a cold CI run reuses the
# host's pip cache instead of downloading every wheel again inside each build.
#
# Talks to $DOCKER_HOST, or starts scripts/dockerd.sh when nothing answers. Environment:
# RAYTRADER_DEBIAN_MIRROR (default: the first Debian URI of this machine's apt sources, else
# http://deb.debian.org/debian), RAYTRADER_DOCKER_DIR (cache, as dockerd.sh), PIP_CACHE_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

wheelhouse=""
extras=stack,search,dashboard
while [ $# -gt 0 ]; do
  case "$1" in
    --wheelhouse) wheelhouse=$2; shift 2 ;;
    --extras) extras=$2; shift 2 ;;
    *) echo "usage: $0 [--wheelhouse DIR [--extras stack,search,dashboard]]" >&2; exit 2 ;;
  esac
done

log() { echo "build-base-image: $*" >&2; }

STATE_DIR=${RAYTRADER_DOCKER_DIR:-$HOME/.cache/raytrader/docker}
PORT=${RAYTRADER_WHEELHOUSE_PORT:-31080}
SUITE=bookworm
# debootstrap does not follow "or" dependencies: python3.11-venv's python3.11-distutils is a
# virtual package, so python3-distutils is named; wget is what KubeRay's default probes of Ray pods
# run (the official Ray image has it)
PACKAGES=python3.11,python3.11-venv,python3-distutils,ca-certificates,libgomp1,wget
RAY_VERSION=$(sed -n 's/^ray==//p' requirements/constraints.txt)
[ -n "$RAY_VERSION" ] || { log "error: no ray==<version> in requirements/constraints.txt"; exit 2; }
TAG=raytrader-base:ray${RAY_VERSION}-py311-cpu
INPUTS_LABEL=org.raytrader.base.inputs
ROOTFS_KEY=$(echo "$SUITE minbase $PACKAGES" | sha256sum | cut -c1-12)
ROOTFS_IMAGE=raytrader-base-rootfs:$SUITE-$ROOTFS_KEY
INPUTS=$( { echo "$ROOTFS_KEY"; cat docker/base.Dockerfile requirements/constraints.txt; } \
  | sha256sum | cut -c1-16)

debian_mirror() { scripts/debian-mirror.sh; }

ensure_rootfs() {
  docker image inspect "$ROOTFS_IMAGE" >/dev/null 2>&1 && return 0
  local tarball=$STATE_DIR/rootfs/$SUITE-$ROOTFS_KEY.tar dir mirror
  if [ ! -f "$tarball" ]; then
    if ! command -v debootstrap >/dev/null 2>&1; then
      [ "$(id -u)" -eq 0 ] || { log "error: debootstrap missing; apt-get install debootstrap as root"; exit 2; }
      log "installing debootstrap"
      export DEBIAN_FRONTEND=noninteractive
      apt-get install -y -qq --no-install-recommends debootstrap >&2 \
        || { apt-get update -qq && apt-get install -y -qq --no-install-recommends debootstrap >&2; }
    fi
    mirror=$(debian_mirror)
    mkdir -p "$STATE_DIR/rootfs"
    dir=$(mktemp -d "$STATE_DIR/rootfs/debootstrap.XXXXXX")
    log "debootstrap $SUITE ($PACKAGES) from $mirror (log: $STATE_DIR/rootfs/debootstrap.log)"
    if ! debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$dir" "$mirror" \
      >"$STATE_DIR/rootfs/debootstrap.log" 2>&1; then
      tail -20 "$STATE_DIR/rootfs/debootstrap.log" >&2
      log "error: debootstrap failed; see $dir/debootstrap/debootstrap.log"
      exit 1
    fi
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
    tar --numeric-owner -C "$dir" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$dir"
  fi
  log "importing $tarball as $ROOTFS_IMAGE"
  docker import --change 'CMD ["/bin/bash"]' "$tarball" "$ROOTFS_IMAGE" >/dev/null
}

# pip in a throwaway container of the rootfs: the image's own Python decides what it needs
build_wheelhouse() {
  local out pip_cache=${PIP_CACHE_DIR:-$HOME/.cache/pip} mounts=() envs=(-e PIP_DISABLE_PIP_VERSION_CHECK=1)
  out=$(mkdir -p "$wheelhouse" && cd "$wheelhouse" && pwd)
  mkdir -p "$pip_cache"
  mounts+=(-v "$PWD:/src:ro" -v "$out:/wheelhouse" -v "$pip_cache:/pip-cache")
  envs+=(-e PIP_CACHE_DIR=/pip-cache)
  if [ -f /etc/ssl/certs/ca-certificates.crt ]; then  # the host's trust, for a proxy's CA
    mounts+=(-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
    envs+=(-e PIP_CERT=/etc/ssl/certs/ca-certificates.crt)
  fi
  for var in PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST PIP_DEFAULT_TIMEOUT; do
    [ -n "${!var:-}" ] && envs+=(-e "$var")
  done
  # Every pin must install on this Python (Requires-Python), else pip backtracks for many minutes
  # before it gives up; checked once per constraints file (about 30 s): soupsieve >= 3 needs
  # Python 3.11.5, Debian 12 has 3.11.2
  local stamp check=1
  stamp=$STATE_DIR/pins-ok/$( { echo "$ROOTFS_KEY"; cat requirements/constraints.txt; } \
    | sha256sum | cut -c1-16)
  [ -f "$stamp" ] && check=0
  log "wheelhouse $out: ray[default,serve]==$RAY_VERSION + raytrader's requirements [$extras]"
  docker run --rm --network host --user 0 "${mounts[@]}" "${envs[@]}" "$ROOTFS_IMAGE" sh -ec "
    python3.11 -m venv /tmp/venv
    /tmp/venv/bin/python -m pip install -q --upgrade 'pip>=25'
    if [ $check = 1 ]; then
      grep -v '^#' /src/requirements/constraints.txt > /tmp/pins.txt
      if ! /tmp/venv/bin/python -m pip install -q --dry-run --no-deps --ignore-installed \
          -r /tmp/pins.txt >/tmp/pins.log 2>&1; then
        cat /tmp/pins.log
        echo \"error: a pin in requirements/constraints.txt does not install on Debian 12's\" \
          \"\$(python3.11 -V)\"
        exit 3
      fi
    fi
    /tmp/venv/bin/python /src/docker/requirements.py /src/pyproject.toml '$extras' > /tmp/req.txt
    /tmp/venv/bin/python -m pip wheel -q -c /src/requirements/constraints.txt -w /wheelhouse \
      -r /tmp/req.txt 'ray[default,serve]==$RAY_VERSION' 'setuptools>=75' wheel 'pip>=25'
  " >&2
  mkdir -p "$(dirname "$stamp")" && touch "$stamp"
}

serve_wheelhouse() {
  if ! python3 -c "import socket; socket.socket().bind(('127.0.0.1', $PORT))" 2>/dev/null; then
    log "error: 127.0.0.1:$PORT is taken; set RAYTRADER_WHEELHOUSE_PORT to a free port"
    exit 1
  fi
  python3 -m http.server --bind 127.0.0.1 --directory "$wheelhouse" "$PORT" >/dev/null 2>&1 &
  server=$!
  # wait: the port must be free when this script returns (the caller serves the same directory)
  trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
  for _ in $(seq 50); do
    python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/')" \
      2>/dev/null && return 0
    kill -0 "$server" 2>/dev/null || break
    sleep 0.2
  done
  log "error: cannot serve the wheelhouse on 127.0.0.1:$PORT (RAYTRADER_WHEELHOUSE_PORT)"
  exit 1
}

if ! docker info >/dev/null 2>&1; then
  eval "$(scripts/dockerd.sh start)"
  export DOCKER_HOST
fi

have=$(docker image inspect --format "{{ index .Config.Labels \"$INPUTS_LABEL\" }}" "$TAG" 2>/dev/null || true)
if [ -n "$wheelhouse" ]; then
  ensure_rootfs
  build_wheelhouse
fi
if [ "$have" = "$INPUTS" ]; then
  log "$TAG is up to date (inputs $INPUTS)"
  echo "$TAG"
  exit 0
fi
ensure_rootfs

build_args=(--build-arg "ROOTFS=$ROOTFS_IMAGE" --build-arg "RAY_VERSION=$RAY_VERSION")
if [ -n "$wheelhouse" ]; then
  serve_wheelhouse
  build_args+=(--build-arg "PIP_FIND_LINKS=http://127.0.0.1:$PORT/" --build-arg PIP_NO_INDEX=1)
fi
log "building $TAG (inputs $INPUTS)"
# --network host: the daemon runs without a bridge (see dockerd.sh); pip uses the host's network
docker build --network host --force-rm -f docker/base.Dockerfile "${build_args[@]}" \
  --label "$INPUTS_LABEL=$INPUTS" -t "$TAG" . >&2
echo "$TAG"
