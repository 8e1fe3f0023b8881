{{/* The scripts ConfigMap's data; pods hash it to restart on a change. */}}
{{- define "raytrader.binData" -}}
# Sourced before every raytrader process (and before `ray start` on Ray pods): each file of the
# secret-env projected volume becomes an environment variable of the same name, so Secret values
# never appear in a pod spec or on a command line (kubectl describe, ps).
secret-env.sh: |
  for f in {{ include "raytrader.secretEnvDir" . }}/*; do
    [ -f "$f" ] || continue
    name=${f##*/}
    case "$name" in
      ''|[0-9]*|*[!A-Za-z0-9_]*) continue ;;
    esac
    export "$name=$(cat "$f")"
  done
  # the in-chart Redis: Feast's connection string from its address and the password
  if [ -n "${RAYTRADER_REDIS_ADDRESS:-}" ] && [ -n "${RAYTRADER_REDIS_PASSWORD:-}" ]; then
    export RAYTRADER_REDIS_CONNECTION="${RAYTRADER_REDIS_ADDRESS},password=${RAYTRADER_REDIS_PASSWORD}"
  fi
  unset RAYTRADER_REDIS_PASSWORD
  mkdir -p "${HOME:-/tmp/home}" 2>/dev/null
  true
# Calls the decision service's /healthz (helm test).
healthz.py: |
  import os
  import sys
  import urllib.request

  url = os.environ["RAYTRADER_SERVE_URL"].rstrip("/") + "/healthz"
  with urllib.request.urlopen(url, timeout=10) as response:
      body = response.read().decode()
  print(f"GET {url}: {response.status} {body}")
  sys.exit(0 if response.status == 200 else 1)
{{- end }}
