#!/usr/bin/env bash
# Prints the Debian mirror that debootstrap should use: $RAYTRADER_DEBIAN_MIRROR, else the first
# main-archive URI of this machine's apt sources (deb822 "URIs:" or one-line "deb"), else
# http://deb.debian.org/debian. Used by build-base-image.sh and cluster/build.sh.
set -euo pipefail
if [ -n "${RAYTRADER_DEBIAN_MIRROR:-}" ]; then
  echo "$RAYTRADER_DEBIAN_MIRROR"
  exit 0
fi
uri=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
  | sed -nE 's/^(URIs:|deb)[[:space:]]+(\[[^]]*\][[:space:]]+)?(https?:\/\/[^[:space:]]+).*/\3/p' \
  | grep -E '/debian/?$' | head -1 || true)
echo "${uri:-http://deb.debian.org/debian}"
