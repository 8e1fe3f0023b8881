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
# The experiment API's migration Job, in-chart PostgreSQL only: waits for the server, then creates
# the experiment store's database (owned by the application role) when it is missing, as the
# superuser (an existing data volume was initialised before the database was added to the init
# script). psycopg2 comes with the image's `stack` extra; no psql needed.
ensure-db.py: |
  import os
  import sys
  import time

  import psycopg2
  from psycopg2 import sql

  host = os.environ["RAYTRADER_PG_HOST"]
  database = os.environ["RAYTRADER_PG_DATABASE"]
  role = os.environ["RAYTRADER_PG_ROLE"]
  with open(os.environ["RAYTRADER_PG_SUPERUSER_PASSWORD_FILE"]) as f:
      password = f.read().strip()
  deadline = time.monotonic() + float(os.environ.get("RAYTRADER_PG_WAIT_SECONDS", "300"))
  while True:
      try:
          conn = psycopg2.connect(
              host=host, port=5432, dbname="postgres", user="postgres", password=password,
              connect_timeout=5,
          )
          break
      except psycopg2.OperationalError as exc:
          if time.monotonic() > deadline:
              sys.exit(f"PostgreSQL at {host}:5432 did not accept connections: {exc}".strip())
          print(f"waiting for PostgreSQL at {host}:5432", file=sys.stderr, flush=True)
          time.sleep(5)
  conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
  try:
      with conn.cursor() as cur:
          cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
          if cur.fetchone() is None:
              cur.execute(
                  sql.SQL("CREATE DATABASE {} OWNER {}").format(
                      sql.Identifier(database), sql.Identifier(role)
                  )
              )
              print(f"created database {database} owned by {role}", flush=True)
          else:
              print(f"database {database} exists", flush=True)
  finally:
      conn.close()
{{- end }}
