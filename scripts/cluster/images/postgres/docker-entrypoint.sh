#!/bin/bash
# Entrypoint of the local stand-in for postgres:17-bookworm (Debian's PostgreSQL 15, built by
# scripts/cluster/build-service-images.sh). It keeps the part of the official image's documented
# contract (https://hub.docker.com/_/postgres, "Environment Variables", "Initialization scripts")
# that the chart's StatefulSet (charts/raytrader/templates/postgresql/statefulset.yaml) relies on:
#
# * CMD is `postgres`; arguments starting with `-` are passed to `postgres`; any other command is
#   exec'd as is.
# * PGDATA (default /var/lib/postgresql/data) is created if missing and chmod 0700. When it holds
#   no PG_VERSION, it is initialised once: `initdb --username=$POSTGRES_USER` with the password
#   $POSTGRES_PASSWORD, "host all all all <password_encryption>" (scram-sha-256) appended to
#   pg_hba.conf, then a socket-only server runs /docker-entrypoint-initdb.d/* in name order
#   (executable *.sh are run, other *.sh sourced, *.sql fed to psql) and stops again.
# * POSTGRES_PASSWORD, POSTGRES_USER (default postgres), POSTGRES_DB (default $POSTGRES_USER,
#   created when it is not "postgres") and POSTGRES_INITDB_ARGS, each also as <NAME>_FILE (the
#   chart passes POSTGRES_PASSWORD_FILE); POSTGRES_HOST_AUTH_METHOD overrides the host auth method.
# * Started as root it fixes the ownership of PGDATA and /var/run/postgresql and re-runs itself as
#   postgres (uid/gid 999) with setpriv (util-linux) where the official image uses gosu; the chart
#   starts it as 999 directly.
#
# Left out (the chart uses none of them): POSTGRES_INITDB_WALDIR, nss_wrapper for uids missing
# from /etc/passwd, compressed *.sql.gz/xz/zst init files, docker-ensure-initdb.sh.
set -Eeuo pipefail

die() { echo "error: $*" >&2; exit 1; }

# file_env VAR [DEFAULT]: VAR from itself, else from the file named by VAR_FILE, else DEFAULT
file_env() {
  local var=$1 file_var="${1}_FILE" def=${2:-} val
  if [ -n "${!var:-}" ] && [ -n "${!file_var:-}" ]; then
    die "both $var and $file_var are set (but are exclusive)"
  fi
  val=$def
  if [ -n "${!var:-}" ]; then
    val=${!var}
  elif [ -n "${!file_var:-}" ]; then
    val=$(<"${!file_var}")
  fi
  export "$var=$val"
  unset "$file_var"
}

wants_help() { # postgres options that print something and exit
  local arg
  for arg; do
    case "$arg" in
      -'?' | --help | --describe-config | -V | --version) return 0 ;;
    esac
  done
  return 1
}

# psql as the superuser over the socket, stopping at the first error
process_sql() {
  local runner=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
  [ -z "$POSTGRES_DB" ] || runner+=(--dbname "$POSTGRES_DB")
  PGHOST='' PGHOSTADDR='' "${runner[@]}" "$@"
}

process_init_files() {
  local f
  for f; do
    case "$f" in
      *.sh)
        if [ -x "$f" ]; then
          echo "$0: running $f"
          "$f"
        else
          echo "$0: sourcing $f"
          # shellcheck disable=SC1090
          . "$f"
        fi
        ;;
      *.sql) echo "$0: running $f"; process_sql -f "$f" ;;
      *) echo "$0: ignoring $f" ;;
    esac
  done
}

init_database() { # "$@": the server's arguments (without the leading "postgres")
  [ -n "$POSTGRES_PASSWORD" ] || [ "$POSTGRES_HOST_AUTH_METHOD" = trust ] ||
    die "the database is uninitialised and no superuser password is given: set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE"
  ls /docker-entrypoint-initdb.d/ >/dev/null # fail early on an unreadable init directory

  # --pwfile refuses an empty file, hence the newline; POSTGRES_INITDB_ARGS is word-split on purpose
  eval 'initdb --username="$POSTGRES_USER" --pwfile=<(printf "%s\n" "$POSTGRES_PASSWORD") '"$POSTGRES_INITDB_ARGS"

  local auth=$POSTGRES_HOST_AUTH_METHOD
  [ -n "$auth" ] || auth=$(postgres -C password_encryption "$@")
  printf '\nhost all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"

  export PGPASSWORD=${PGPASSWORD:-$POSTGRES_PASSWORD}
  # a server on the Unix socket only, for the init scripts
  NOTIFY_SOCKET='' PGUSER=${PGUSER:-$POSTGRES_USER} \
    pg_ctl -D "$PGDATA" -o "$(printf '%q ' "$@" -c listen_addresses='' -p "${PGPORT:-5432}")" -w start

  if [ "$POSTGRES_DB" != postgres ]; then
    local db=$POSTGRES_DB exists
    exists=$(POSTGRES_DB='' process_sql --dbname postgres --set db="$db" --tuples-only \
      <<<"SELECT 1 FROM pg_database WHERE datname = :'db';")
    [ -n "$exists" ] || POSTGRES_DB='' process_sql --dbname postgres --set db="$db" \
      <<<'CREATE DATABASE :"db";'
  fi
  shopt -s nullglob
  process_init_files /docker-entrypoint-initdb.d/*
  shopt -u nullglob

  PGUSER=${PGUSER:-postgres} pg_ctl -D "$PGDATA" -m fast -w stop
  unset PGPASSWORD
  echo "PostgreSQL init process complete; ready for start up."
}

main() {
  [ $# -gt 0 ] || set -- postgres
  [ "${1:0:1}" != - ] || set -- postgres "$@"
  if [ "$1" != postgres ] || wants_help "$@"; then
    exec "$@"
  fi
  : "${PGDATA:=/var/lib/postgresql/data}"
  export PGDATA

  mkdir -p "$PGDATA"
  chmod 0700 "$PGDATA" || : # PostgreSQL refuses a group- or world-accessible data directory
  mkdir -p /var/run/postgresql || :
  chmod 03775 /var/run/postgresql 2>/dev/null || : # an emptyDir we do not own: left as it is
  if [ "$(id -u)" = 0 ]; then
    find "$PGDATA" /var/run/postgresql \! -user postgres -exec chown postgres: '{}' +
    exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
  fi

  file_env POSTGRES_PASSWORD
  file_env POSTGRES_USER postgres
  file_env POSTGRES_DB "$POSTGRES_USER"
  file_env POSTGRES_INITDB_ARGS
  : "${POSTGRES_HOST_AUTH_METHOD:=}"

  if [ -s "$PGDATA/PG_VERSION" ]; then
    echo "PostgreSQL database directory appears to contain a database; skipping initialization"
  else
    init_database "${@:2}"
  fi
  exec "$@"
}

main "$@"
