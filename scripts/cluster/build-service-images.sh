#!/usr/bin/env bash
# Builds the chart's three third-party images for the local Kubernetes cluster without a container
# registry (none is reachable here), from Debian packages and Maven Central only, as docker-archive
# tars that `ctr -n k8s.io images import` loads under the repositories charts/raytrader/values.yaml
# names (read from it), tagged with the versions they hold:
#
#   images/postgres.tar  postgres:15-bookworm   Debian 12's PostgreSQL 15 (the PostgreSQL Global
#                        Development Group's apt repository, where 17 comes from, is not reachable),
#                        without JIT (LLVM);
#                        our docker-entrypoint.sh keeps the official image's env contract (POSTGRES_*,
#                        *_FILE, PGDATA, /docker-entrypoint-initdb.d); postgres uid/gid 999
#   images/redis.tar     redis:7.0-bookworm     Debian 12's Redis 7.0 (redis-server, redis-cli); redis
#                        uid/gid 999, /data
#   images/kafka.tar     apache/kafka:4.1.0     Kafka <tag> jars from Maven Central (kafka_2.13 and its
#                        runtime dependencies + log4j2's slf4j binding) on Debian's OpenJDK 17 JRE,
#                        /opt/kafka/{bin,config,libs} with our own kafka-run-class.sh,
#                        kafka-server-start.sh and kafka-storage.sh (Apache's scripts are only in the
#                        release tarball, which is not on Maven Central); appuser uid/gid 1000
#
# Each root filesystem is a `debootstrap --variant=minbase bookworm` (built once, kept as a tar)
# with the image's user created at the official uid before its packages are installed from the
# mirror of scripts/debian-mirror.sh plus bookworm-updates and bookworm-security, then stripped
# (docs, man pages, locales, apt lists and caches). It is one layer; the files of
# scripts/cluster/images/<name>/ (and Kafka's jars) are another, written by image_tar.py (no Docker).
# What each image implements, and what it leaves out, is said in those files' headers.
#
# Products in ${RAYTRADER_K8S_CLUSTER_CACHE:-~/.cache/raytrader/k8s-cluster}: images/*.tar, stamps/
# (one per step: a step whose stamp holds its version and whose products exist is skipped, so a
# warm run costs about a second), src/service-images/ (the root filesystem tars, Kafka's jars and
# logs). Maven's repository is the local stack's (${RAYTRADER_STACK_CACHE_DIR:-~/.cache/raytrader}/m2).
# Cold: ~4.5 min on a 2-core VM (80 s debootstrap, 45-70 s of apt per image, 20 s Maven), 620 MB of
# images and 740 MB of src/. Needs root (debootstrap, chroot, mount -t proc). Environment: RAYTRADER_DEBIAN_MIRROR (see debian-mirror.sh),
# RAYTRADER_DEBIAN_SECURITY_MIRROR (default: the mirror with /debian -> /debian-security; "none"
# leaves bookworm-security out).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
VALUES=$REPO/charts/raytrader/values.yaml
FILES=$HERE/images
PYTHON=${PYTHON:-$(command -v python3)}

# shellcheck source=scripts/cluster/lib.sh
. "$HERE/lib.sh"  # CACHE, IMAGES, STAMPS, step
WORK=$CACHE/src/service-images
M2=${RAYTRADER_STACK_CACHE_DIR:-$HOME/.cache/raytrader}/m2

# -- pins: bump RECIPE to rebuild every root filesystem --------------------------------------------
SUITE=bookworm
RECIPE=1
PG_MAJOR=15                           # Debian 12's PostgreSQL
REDIS_MAJOR_MINOR=7.0                 # Debian 12's Redis
POSTGRES_PACKAGES=("postgresql-$PG_MAJOR")
REDIS_PACKAGES=(redis-server)         # depends on redis-tools (redis-cli)
KAFKA_PACKAGES=(openjdk-17-jre-headless)
KAFKA_SCALA=2.13
LOG4J_VERSION=2.24.3                  # kafka-server 4.1's log4j-core; log4j-slf4j-impl binds slf4j 1.7

log() { echo "service-images: $*" >&2; }

# repository:tag of values.yaml's SECTION.image (two-space indented keys, as the file is written)
chart_image() {
  awk -v section="$1" '
    $0 ~ "^" section ":" { inside = 1; next }
    inside && /^[^ #]/ { exit }
    inside && /^  image:/ { image = 1; next }
    inside && image && /^  [^ ]/ { exit }
    inside && image && /^    repository:/ { repo = $2 }
    inside && image && /^    tag:/ { tag = $2 }
    END { gsub(/"/, "", repo); gsub(/"/, "", tag); if (repo != "" && tag != "") print repo ":" tag }
  ' "$VALUES"
}
# PostgreSQL and Redis are Debian 12's, older than the chart's default tags: they are tagged with
# what they hold (the cluster's values, charts/raytrader/ci/cluster-values.yaml, name these tags)
POSTGRES_TAG=$(chart_image postgresql)
POSTGRES_TAG=${POSTGRES_TAG%%:*}:$PG_MAJOR-bookworm
REDIS_TAG=$(chart_image redis)
REDIS_TAG=${REDIS_TAG%%:*}:$REDIS_MAJOR_MINOR-bookworm
KAFKA_TAG=$(chart_image kafka)
{ [ -n "${POSTGRES_TAG%%:*}" ] && [ -n "${REDIS_TAG%%:*}" ] && [ -n "$KAFKA_TAG" ]; } ||
  die "could not read postgresql/redis/kafka .image.repository and .tag from $VALUES"
KAFKA_VERSION=${KAFKA_TAG##*:}
[[ $KAFKA_VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "kafka.image.tag $KAFKA_VERSION is not a Kafka release"

files_hash() { # DIR: one hash of the names, modes and contents of the files under DIR
  (cd "$1" && find . -type f -printf '%p %m\n' | LC_ALL=C sort && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 cat) |
    sha256sum | cut -c1-16
}

# -- a warm run stops here -------------------------------------------------------------------------
PG_FILES=$(files_hash "$FILES/postgres")
KAFKA_FILES=$(files_hash "$FILES/kafka")
BASE_V="$SUITE-minbase-r$RECIPE"
PG_ROOTFS_V="$BASE_V ${POSTGRES_PACKAGES[*]} -jit"
REDIS_ROOTFS_V="$BASE_V ${REDIS_PACKAGES[*]}"
KAFKA_ROOTFS_V="$BASE_V ${KAFKA_PACKAGES[*]}"
KAFKA_LIBS_V="kafka_$KAFKA_SCALA-$KAFKA_VERSION log4j-slf4j-impl-$LOG4J_VERSION"
PG_IMAGE_V="$POSTGRES_TAG | $PG_ROOTFS_V | $PG_FILES | SIGINT"
REDIS_IMAGE_V="$REDIS_TAG | $REDIS_ROOTFS_V"
KAFKA_IMAGE_V="$KAFKA_TAG | $KAFKA_ROOTFS_V | $KAFKA_LIBS_V | $KAFKA_FILES"
if stamped image-postgres "$PG_IMAGE_V" "$IMAGES/postgres.tar" &&
  stamped image-redis "$REDIS_IMAGE_V" "$IMAGES/redis.tar" &&
  stamped image-kafka "$KAFKA_IMAGE_V" "$IMAGES/kafka.tar"; then
  exit 0
fi

[ "$(id -u)" = 0 ] || die "building the service images needs root (debootstrap, chroot)"
mkdir -p "$IMAGES" "$WORK"
exec 9>"$CACHE/.service-images.lock"
flock 9 # two checkouts building at once build once

missing=()
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
fi

MIRROR=$("$REPO/scripts/debian-mirror.sh")
SECURITY_MIRROR=${RAYTRADER_DEBIAN_SECURITY_MIRROR:-}
if [ -z "$SECURITY_MIRROR" ]; then
  case "${MIRROR%/}" in
    */debian) SECURITY_MIRROR=${MIRROR%/}-security ;;
    *) SECURITY_MIRROR=none ;;
  esac
fi

# -- root filesystems ------------------------------------------------------------------------------
ROOT="" # the root filesystem being built (its /proc is mounted while apt runs in it)
unmount_root() {
  if [ -n "$ROOT" ] && mountpoint -q "$ROOT/proc" 2>/dev/null; then umount "$ROOT/proc"; fi
}
trap unmount_root EXIT
remove_tree() { # never rm -rf a tree something is mounted under
  [ -e "$1" ] || return 0
  if awk -v d="$(realpath "$1")/" 'index($2 "/", d) == 1 { found = 1 } END { exit !found }' /proc/mounts; then
    die "$1 has a mount under it; unmount it first"
  fi
  rm -rf "$1"
}
in_root() {
  chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive ${http_proxy:+http_proxy=$http_proxy} "$@"
}

build_base() {
  local dir=$WORK/base
  remove_tree "$dir" && mkdir -p "$dir"
  log "debootstrap $SUITE minbase from $MIRROR (log: $WORK/debootstrap.log)"
  debootstrap --variant=minbase "$SUITE" "$dir" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
    { tail -20 "$WORK/debootstrap.log" >&2; die "debootstrap failed (log: $WORK/debootstrap.log)"; }
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
  tar -C "$dir" --numeric-owner -cf "$WORK/base.tar.partial" .
  mv "$WORK/base.tar.partial" "$WORK/base.tar"
  remove_tree "$dir"
}
step service-base-rootfs "$BASE_V" build_base "$WORK/base.tar"

# new_root NAME: $ROOT = a fresh copy of the base, /proc mounted, apt pointed at the mirrors
new_root() {
  ROOT=$WORK/$1-rootfs
  remove_tree "$ROOT" && mkdir -p "$ROOT"
  tar -C "$ROOT" --numeric-owner -xpf "$WORK/base.tar"
  mount -t proc proc "$ROOT/proc"
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
  {
    echo "deb $MIRROR $SUITE main"
    echo "deb $MIRROR $SUITE-updates main"
    [ "$SECURITY_MIRROR" = none ] || echo "deb $SECURITY_MIRROR $SUITE-security main"
  } >"$ROOT/etc/apt/sources.list"
  # no docs, man pages or translations from here on (Debian's own slim images do the same)
  cat >"$ROOT/etc/dpkg/dpkg.cfg.d/excludes" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
  printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d" # no service starts in the chroot
  chmod 755 "$ROOT/usr/sbin/policy-rc.d"
  in_root apt-get update -q >>"$WORK/$1-apt.log" 2>&1 || die "apt-get update failed (log: $WORK/$1-apt.log)"
  in_root apt-get dist-upgrade -y -q >>"$WORK/$1-apt.log" 2>&1 || die "apt-get dist-upgrade failed (log: $WORK/$1-apt.log)"
}
apt_install() { # NAME PACKAGE...
  local name=$1
  shift
  in_root apt-get install -y -q --no-install-recommends "$@" >>"$WORK/$name-apt.log" 2>&1 ||
    { tail -20 "$WORK/$name-apt.log" >&2; die "apt-get install $* failed (log: $WORK/$name-apt.log)"; }
}
# finish_root NAME: strip $ROOT and write it as $WORK/NAME-rootfs.tar
finish_root() {
  in_root apt-get clean
  unmount_root
  rm -f "$ROOT/usr/sbin/policy-rc.d"
  local r=${ROOT:?}
  rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/* "$r"/var/cache/debconf/*-old \
    "$r"/var/lib/dpkg/*-old "$r"/usr/share/man/* "$r"/usr/share/info/* \
    "$r"/usr/share/locale/* "$r"/usr/share/lintian/* "$r"/tmp/* "$r"/var/tmp/* \
    "${r:?}"/dev/* "${r:?}"/proc/* "${r:?}"/sys/*
  find "$ROOT/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
  find "$ROOT/usr/share/doc" -mindepth 1 -type d -empty -delete
  find "$ROOT/var/log" -type f -delete
  : >"$ROOT/etc/resolv.conf" # the runtime mounts its own
  tar -C "$ROOT" --numeric-owner --sort=name --mtime=@0 -cf "$WORK/$1-rootfs.tar.partial" .
  mv "$WORK/$1-rootfs.tar.partial" "$WORK/$1-rootfs.tar"
  remove_tree "$ROOT"
  ROOT=""
}

build_postgres_rootfs() {
  : >"$WORK/postgres-apt.log"
  new_root postgres
  # the official image's user (postgres-common's postinst keeps an existing one)
  in_root groupadd -r -g 999 postgres
  in_root useradd -r -g postgres -u 999 -d /var/lib/postgresql -s /bin/bash postgres
  in_root install -d -o postgres -g postgres -m 1777 /var/lib/postgresql
  apt_install postgres postgresql-common
  # no "main" cluster: the entrypoint runs initdb on the volume
  sed -ri 's/#?(create_main_cluster) .*$/\1 = false/' "$ROOT/etc/postgresql-common/createcluster.conf"
  apt_install postgres "${POSTGRES_PACKAGES[@]}"
  # no JIT: llvmjit.so with LLVM 14 and Z3 is 130 of 360 MB; without llvmjit.so PostgreSQL finds
  # no JIT provider and runs every query interpreted, silently (`jit` stays on but does nothing)
  in_root dpkg --purge --force-depends libllvm14 libz3-4 >>"$WORK/postgres-apt.log" 2>&1
  rm -rf "$ROOT/usr/lib/postgresql/$PG_MAJOR/lib/llvmjit"* "$ROOT/usr/lib/postgresql/$PG_MAJOR/lib/bitcode"
  # listen on every address by default (what the official image does to the sample initdb copies)
  sed -ri "s!^#?(listen_addresses)\s*=\s*\S+.*!\1 = '*'!" "$ROOT/usr/share/postgresql/$PG_MAJOR/postgresql.conf.sample"
  grep -qF "listen_addresses = '*'" "$ROOT/usr/share/postgresql/$PG_MAJOR/postgresql.conf.sample" ||
    die "could not set listen_addresses in postgresql.conf.sample"
  # the server's programs on PATH ahead of postgresql-common's wrappers (the official image puts
  # /usr/lib/postgresql/17/bin on PATH; image_tar.py sets PATH itself)
  local f
  for f in "$ROOT/usr/lib/postgresql/$PG_MAJOR/bin"/*; do
    ln -s "/usr/lib/postgresql/$PG_MAJOR/bin/${f##*/}" "$ROOT/usr/local/bin/${f##*/}"
  done
  in_root install -d -o postgres -g postgres -m 3777 /var/run/postgresql
  in_root install -d -o postgres -g postgres -m 1777 /var/lib/postgresql/data
  in_root install -d -m 755 /docker-entrypoint-initdb.d
  rm -rf "$ROOT/usr/share/postgresql/$PG_MAJOR/man"
  finish_root postgres
}
step service-rootfs-postgres "$PG_ROOTFS_V" build_postgres_rootfs "$WORK/postgres-rootfs.tar"

build_redis_rootfs() {
  : >"$WORK/redis-apt.log"
  new_root redis
  # the official image's user (redis-server's postinst keeps an existing system user)
  in_root groupadd -r -g 999 redis
  in_root useradd -r -g redis -u 999 -d /var/lib/redis -s /usr/sbin/nologin redis
  apt_install redis "${REDIS_PACKAGES[@]}"
  in_root install -d -o redis -g redis -m 755 /data
  finish_root redis
}
step service-rootfs-redis "$REDIS_ROOTFS_V" build_redis_rootfs "$WORK/redis-rootfs.tar"

build_kafka_rootfs() {
  : >"$WORK/kafka-apt.log"
  new_root kafka
  # apache/kafka's user: appuser, uid/gid 1000, home /home/appuser, bash
  in_root groupadd -g 1000 appuser
  in_root useradd -u 1000 -g appuser -m -d /home/appuser -s /bin/bash appuser
  apt_install kafka "${KAFKA_PACKAGES[@]}"
  in_root java -version >>"$WORK/kafka-apt.log" 2>&1 || die "java does not run in the Kafka root filesystem"
  in_root install -d -o appuser -g appuser -m 755 /var/lib/kafka /var/lib/kafka/data /opt/kafka /opt/kafka/logs
  finish_root kafka
}
step service-rootfs-kafka "$KAFKA_ROOTFS_V" build_kafka_rootfs "$WORK/kafka-rootfs.tar"

# -- Kafka's jars: what the release tarball's libs/ holds for the broker, from Maven Central ---------
KAFKA_LIBS=$WORK/kafka-$KAFKA_VERSION/libs
build_kafka_libs() {
  local home=$WORK/kafka-$KAFKA_VERSION
  mkdir -p "$home"
  cat >"$home/pom.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- generated by scripts/cluster/build-service-images.sh: a Kafka $KAFKA_VERSION broker's class path -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>raytrader.cluster</groupId>
  <artifactId>kafka-image-libs</artifactId>
  <version>$KAFKA_VERSION</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_$KAFKA_SCALA</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
EOF
  rm -rf "$KAFKA_LIBS.partial"
  log "Maven: kafka_$KAFKA_SCALA $KAFKA_VERSION and its runtime dependencies (log: $home/maven.log)"
  mvn -B --no-transfer-progress -f "$home/pom.xml" "-Dmaven.repo.local=$M2" dependency:copy-dependencies \
    -DincludeScope=runtime "-DoutputDirectory=$KAFKA_LIBS.partial" >"$home/maven.log" 2>&1 ||
    { tail -20 "$home/maven.log" >&2; die "Maven failed (log: $home/maven.log)"; }
  [ -f "$KAFKA_LIBS.partial/kafka_$KAFKA_SCALA-$KAFKA_VERSION.jar" ] || die "Maven did not fetch kafka_$KAFKA_SCALA-$KAFKA_VERSION.jar"
  rm -rf "$KAFKA_LIBS" && mv "$KAFKA_LIBS.partial" "$KAFKA_LIBS"
}
step service-kafka-libs "$KAFKA_LIBS_V" build_kafka_libs "$KAFKA_LIBS/kafka_$KAFKA_SCALA-$KAFKA_VERSION.jar"

# -- images ----------------------------------------------------------------------------------------
image() { "$PYTHON" "$HERE/image_tar.py" "$@"; }
file_args() { # SRC_DIR DST_DIR: --file SRC:DST for every file under SRC_DIR
  local f
  while IFS= read -r f; do
    printf -- '--file\n%s:%s\n' "$1/$f" "$2/$f"
  done < <(cd "$1" && find . -type f -printf '%P\n' | LC_ALL=C sort)
}

build_postgres_image() {
  # SIGINT, as the official image: PostgreSQL's fast shutdown, not a wait for every client
  image "$IMAGES/postgres.tar" --tag "$POSTGRES_TAG" --layer "$WORK/postgres-rootfs.tar" \
    --file "$FILES/postgres/docker-entrypoint.sh:/usr/local/bin/docker-entrypoint.sh" \
    --entrypoint /usr/local/bin/docker-entrypoint.sh --cmd postgres --stop-signal SIGINT \
    --env PG_MAJOR=$PG_MAJOR --env PGDATA=/var/lib/postgresql/data --env LANG=C.UTF-8
}
step image-postgres "$PG_IMAGE_V" build_postgres_image "$IMAGES/postgres.tar"

build_redis_image() {
  image "$IMAGES/redis.tar" --tag "$REDIS_TAG" --layer "$WORK/redis-rootfs.tar" \
    --cmd redis-server --user 999:999 --workdir /data
}
step image-redis "$REDIS_IMAGE_V" build_redis_image "$IMAGES/redis.tar"

build_kafka_image() {
  local args=()
  mapfile -t args < <(file_args "$FILES/kafka" /opt/kafka; file_args "$KAFKA_LIBS" /opt/kafka/libs)
  image "$IMAGES/kafka.tar" --tag "$KAFKA_TAG" --layer "$WORK/kafka-rootfs.tar" "${args[@]}" \
    --user 1000:1000 --workdir /opt/kafka
}
step image-kafka "$KAFKA_IMAGE_V" build_kafka_image "$IMAGES/kafka.tar"

log "$(cd "$IMAGES" && du -h postgres.tar redis.tar kafka.tar | tr '\t\n' ' ')in $IMAGES"
