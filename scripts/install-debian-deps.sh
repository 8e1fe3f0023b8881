#!/usr/bin/env bash
# Installs the Debian packages the local stack and its tests need, only those that are missing:
# Java 17 (Kafka), Maven (resolves the Kafka jars), PostgreSQL (MLflow's backend store), Redis
# (Feast's online store), kcat (an independent Kafka client used by the tests), wrk (the HTTP
# load generator of the serving benchmark), Docker and debootstrap (the image test builds a
# Debian base image locally and runs its own daemon, scripts/dockerd.sh), and Chromium (the
# dashboard's tests drive it with Playwright: browsers cannot be downloaded here).
set -euo pipefail

missing=()
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)        # the image test's own daemon (scripts/dockerd.sh)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)  # the image test's local base image
command -v chromium >/dev/null 2>&1 || missing+=(chromium)        # the dashboard's browser tests (Playwright)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "error: missing Debian packages: ${missing[*]}; install them as root: apt-get install -y ${missing[*]}" >&2
  exit 2
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
# the package scripts may start system services on the default ports; the stack runs its own
for svc in redis-server postgresql docker; do
  if command -v service >/dev/null 2>&1; then service "$svc" stop >/dev/null 2>&1 || true; fi
done
