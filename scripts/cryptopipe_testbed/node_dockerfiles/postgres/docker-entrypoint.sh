#!/bin/bash
# Entry point of the PostgreSQL stand-in: the official postgres image's contract, as far as
# charts use it.
#   POSTGRES_PASSWORD          the superuser's password; required unless
#                              POSTGRES_HOST_AUTH_METHOD=trust
#   POSTGRES_USER              the superuser (default postgres)
#   POSTGRES_DB                a database made at initialisation (default $POSTGRES_USER)
#   PGDATA                     the data folder (default /var/lib/postgresql/data); initdb runs
#                              when it holds no PG_VERSION
#   POSTGRES_INITDB_ARGS       extra initdb arguments
#   POSTGRES_HOST_AUTH_METHOD  pg_hba.conf method for remote hosts (default scram-sha-256)
#   /docker-entrypoint-initdb.d/*.sql and *.sh run once, after initialisation
# Arguments: `postgres [options]` (the default) or options alone; anything else is executed.
set -Eeuo pipefail

if [ "${1:-postgres}" != postgres ] && [ "${1:0:1}" != - ]; then
  exec "$@"
fi
[ "${1:-}" = postgres ] && shift

export PGDATA="${PGDATA:-/var/lib/postgresql/data}"
POSTGRES_USER="${POSTGRES_USER:-postgres}"
POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"

log() { echo "docker-entrypoint: $*" >&2; }

if [ "$(id -u)" = 0 ]; then
  # As root (a plain `podman run`): give the data folder to postgres and run as postgres.
  mkdir -p "$PGDATA"
  chown -R postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" postgres "$@"
fi

sql() {
  psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "${1:-postgres}"
}

initialise() {
  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != trust ]; then
    log "the database is uninitialised and POSTGRES_PASSWORD is not set;"
    log "set it (or POSTGRES_HOST_AUTH_METHOD=trust, which lets anyone in) and start again"
    exit 1
  fi
  mkdir -p "$PGDATA"
  chmod 700 "$PGDATA"
  log "initialising $PGDATA for $POSTGRES_USER"
  # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is split into words on purpose
  initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "${POSTGRES_PASSWORD:-}") \
    --auth-local=trust --auth-host="$auth" --encoding=UTF8 --locale=C.UTF-8 \
    ${POSTGRES_INITDB_ARGS:-} >&2
  # Every address, as the official image's postgresql.conf.sample says.
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
  printf 'host all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"

  # A server on the Unix socket only, for the database and the init scripts.
  pg_ctl --pgdata="$PGDATA" --wait --silent --options="-c listen_addresses=''" start
  export PGPASSWORD="${POSTGRES_PASSWORD:-}"
  if [ "$POSTGRES_DB" != postgres ]; then
    printf 'CREATE DATABASE :"db";\n' | psql -v ON_ERROR_STOP=1 --no-psqlrc \
      --username "$POSTGRES_USER" --dbname postgres --set db="$POSTGRES_DB" >&2
  fi
  local script
  for script in /docker-entrypoint-initdb.d/*; do
    case "$script" in
      *.sh) log "running $script"; bash "$script" ;;
      *.sql) log "running $script"; sql "$POSTGRES_DB" <"$script" >&2 ;;
      *) if [ -e "$script" ]; then log "ignoring $script"; fi ;;
    esac
  done
  unset PGPASSWORD
  pg_ctl --pgdata="$PGDATA" --wait --silent --mode=fast stop
  log "initialisation done"
}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  initialise
else
  log "$PGDATA holds a database (PostgreSQL $(cat "$PGDATA/PG_VERSION")); starting it"
fi
exec postgres "$@"
