#!/usr/bin/env bash
# A private PostgreSQL cluster for the chat server's `postgres://` store and its tests.
#
#   scripts/postgres.sh start    install PostgreSQL if missing, create and start the cluster,
#                                create role and database `chat`, wait until it answers
#   scripts/postgres.sh stop     stop the cluster (fast shutdown: sessions are cut, nothing
#                                committed is lost)
#   scripts/postgres.sh status   exit 0 when the cluster answers, 3 when it does not
#   scripts/postgres.sh url      print the URL to give to `--store` / CHAT_TEST_POSTGRES_URL
#
# The cluster is this project's own: its directory is under /var/tmp, it listens on
# 127.0.0.1 only, on a port that is not PostgreSQL's default (so it never meets a system
# cluster), and its Unix socket lives in its own directory. Every command is idempotent.
#
# Settings (environment):
#   CHAT_PG_PORT  port to listen on                       (default 5433)
#   CHAT_PG_DIR   directory of the cluster, its log, its socket
#                                                         (default /var/tmp/chat-postgres-PORT)
#
# Run as root (as CI does), the server runs as the `postgres` system user that Debian's
# package creates; run as another user, it runs as that user.

set -euo pipefail

PORT="${CHAT_PG_PORT:-5433}"
DIR="$(realpath -m "${CHAT_PG_DIR:-/var/tmp/chat-postgres-$PORT}")"
DATA="$DIR/data"
LOG="$DIR/postgres.log"
URL="postgres://chat:chat@127.0.0.1:$PORT/chat"
# The server's user may not be allowed into the caller's directory; nothing here needs it.
cd /

die() {
    echo "postgres.sh: $*" >&2
    exit 1
}

# The newest server installed from Debian's packages, or nothing.
find_bin() {
    local d
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    if [[ -n "$d" && -x "$d/pg_ctl" && -x "$d/initdb" ]]; then
        echo "$d"
    fi
}

install_postgres() {
    [[ "$(id -u)" == 0 ]] || die "PostgreSQL is not installed and installing it needs root (apt-get install postgresql)"
    command -v apt-get >/dev/null || die "PostgreSQL is not installed and apt-get is not available"
    echo "postgres.sh: installing PostgreSQL from Debian's packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || die "apt-get update failed"
    apt-get install -y -qq postgresql >/dev/null || die "apt-get install postgresql failed"
}

BIN="$(find_bin)"

# Runs a command as the cluster's owner.
as_owner() {
    if [[ "$(id -u)" == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# Runs SQL as the cluster's superuser over its private Unix socket.
psql_admin() {
    as_owner "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$DIR" -p "$PORT" -U postgres -d postgres "$@"
}

running() {
    [[ -n "$BIN" && -f "$DATA/PG_VERSION" ]] && as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

ready() {
    "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -d chat -U chat
}

init_cluster() {
    mkdir -p "$DIR"
    if [[ "$(id -u)" == 0 ]]; then
        chown postgres:postgres "$DIR"
    fi
    chmod 700 "$DIR"
    # Trust only the superuser's local socket (in a private directory); TCP needs a password.
    as_owner "$BIN/initdb" -D "$DATA" -U postgres --encoding=UTF8 --locale=C \
        --auth-local=trust --auth-host=scram-sha-256 >"$DIR/initdb.log" 2>&1 \
        || die "initdb failed, see $DIR/initdb.log"
    # fsync and synchronous_commit stay at their durable defaults: the store answers
    # `sent` only after COMMIT was acknowledged, and that must mean "on disk".
    cat >>"$DATA/postgresql.conf" <<EOF

# chat server test cluster
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$DIR'
max_connections = 300
fsync = on
synchronous_commit = on
logging_collector = off
EOF
}

start() {
    if [[ -z "$BIN" ]]; then
        install_postgres
        BIN="$(find_bin)"
        [[ -n "$BIN" ]] || die "PostgreSQL was installed but no /usr/lib/postgresql/*/bin/pg_ctl was found"
    fi
    [[ -f "$DATA/PG_VERSION" ]] || init_cluster
    if ! running; then
        as_owner "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start >/dev/null \
            || die "the cluster did not start, see $LOG"
    fi
    local i
    for ((i = 0; i < 120; i++)); do
        if "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then
            break
        fi
        sleep 0.5
    done
    "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" || die "PostgreSQL does not answer on 127.0.0.1:$PORT, see $LOG"
    if [[ "$(psql_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'chat'")" != 1 ]]; then
        psql_admin -c "CREATE ROLE chat LOGIN PASSWORD 'chat'" || die "cannot create role chat"
    fi
    if [[ "$(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = 'chat'")" != 1 ]]; then
        psql_admin -c "CREATE DATABASE chat OWNER chat" || die "cannot create database chat"
    fi
    ready || die "database chat does not answer on 127.0.0.1:$PORT"
}

stop() {
    if running; then
        as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null \
            || die "the cluster did not stop, see $LOG"
    fi
}

status() {
    if running && ready; then
        echo "running: $URL (cluster in $DIR)"
    else
        echo "not running (cluster in $DIR)"
        exit 3
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    url) echo "$URL" ;;
    *)
        echo "usage: $0 {start|stop|status|url}" >&2
        exit 2
        ;;
esac
