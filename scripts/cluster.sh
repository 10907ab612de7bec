#!/usr/bin/env bash
# A chat cluster on loopback: NATS, N server nodes sharing one store, HAProxy in front.
#
#   scripts/cluster.sh start N --store STORE   install NATS and HAProxy if missing, build
#                                              chat-server, start NATS, N nodes and HAProxy,
#                                              wait until every node is healthy
#   scripts/cluster.sh status                  each process, its pid and its health; exit 0
#                                              when all answer, 3 when one does not
#   scripts/cluster.sh stop                    stop HAProxy, the nodes (SIGTERM: they drain)
#                                              and NATS, by the pids recorded at start
#   scripts/cluster.sh install                 only install nats-server and haproxy
#
# STORE is a `--store` value several nodes can share: postgres://… (scripts/postgres.sh) or
# cql://… (scripts/cassandra.sh; the nodes open it with shared=true).
# Settings (environment):
#   CHAT_CLUSTER_DIR   pids, logs and the HAProxy config   (default /var/tmp/chat-cluster)
#   CHAT_LB_PORT       HAProxy's port, the cluster's address for clients   (default 8080)
#   CHAT_NODE_PORT     the first node's port; node i listens on it + i - 1  (default 8081)
#   CHAT_NATS_PORT     NATS's port                                          (default 4222)
#   CHAT_JWT_SECRET    the secret every node checks tokens with    (default cluster-secret)
#   CHAT_SERVER_BIN    a chat-server binary to run instead of building one

set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${CHAT_CLUSTER_DIR:-/var/tmp/chat-cluster}"
LB_PORT="${CHAT_LB_PORT:-8080}"
NODE_PORT="${CHAT_NODE_PORT:-8081}"
NATS_PORT="${CHAT_NATS_PORT:-4222}"
SECRET="${CHAT_JWT_SECRET:-cluster-secret}"

die() {
    echo "cluster.sh: $*" >&2
    exit 1
}

install_packages() {
    local missing=()
    command -v nats-server >/dev/null || missing+=(nats-server)
    command -v haproxy >/dev/null || missing+=(haproxy)
    [[ ${#missing[@]} == 0 ]] && return 0
    [[ "$(id -u)" == 0 ]] || die "${missing[*]} not installed and installing needs root (apt-get install ${missing[*]})"
    command -v apt-get >/dev/null || die "${missing[*]} not installed and apt-get is not available"
    echo "cluster.sh: installing ${missing[*]} from Debian's packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || die "apt-get update failed"
    apt-get install -y -qq "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
}

server_bin() {
    if [[ -n "${CHAT_SERVER_BIN:-}" ]]; then
        echo "$CHAT_SERVER_BIN"
        return
    fi
    (cd "$ROOT" && cargo build --release -q -p chat-server --bin chat-server) >&2 ||
        die "cargo build of chat-server failed"
    echo "${CARGO_TARGET_DIR:-$ROOT/target}/release/chat-server"
}

alive() {
    [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

# Waits until a TCP port answers, at most $2 seconds.
wait_port() {
    local port="$1" limit="$2" i
    for ((i = 0; i < limit * 10; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

healthy() {
    curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$1/healthz" 2>/dev/null
}

start() {
    local n="${1:-}" store=""
    shift || true
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "usage: cluster.sh start N --store STORE"
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --store) store="${2:-}"; shift 2 ;;
            *) die "unknown argument $1; usage: cluster.sh start N --store STORE" ;;
        esac
    done
    [[ -n "$store" ]] || die "--store is required (postgres://… or cql://…; see scripts/postgres.sh url)"
    [[ -f "$DIR/nodes" ]] && stop_all
    install_packages
    local bin
    bin="$(server_bin)"
    [[ -x "$bin" ]] || die "no chat-server binary at $bin"
    mkdir -p "$DIR"
    nats-server -a 127.0.0.1 -p "$NATS_PORT" >"$DIR/nats.log" 2>&1 &
    echo $! >"$DIR/nats.pid"
    wait_port "$NATS_PORT" 10 || die "NATS did not listen on $NATS_PORT (see $DIR/nats.log)"
    : >"$DIR/nodes"
    local servers="" i port
    for ((i = 1; i <= n; i++)); do
        port=$((NODE_PORT + i - 1))
        CHAT_JWT_SECRET="$SECRET" RUST_LOG="${RUST_LOG:-info}" "$bin" serve \
            --addr "127.0.0.1:$port" --store "$store" \
            --cluster "nats://127.0.0.1:$NATS_PORT" --node "n$i" \
            >"$DIR/n$i.out" 2>"$DIR/n$i.log" &
        echo $! >"$DIR/n$i.pid"
        echo "n$i $port" >>"$DIR/nodes"
        servers+="    server n$i 127.0.0.1:$port"$'\n'
    done
    # The shipped config with this cluster's port and nodes.
    sed -e "s/bind 127.0.0.1:8080/bind 127.0.0.1:$LB_PORT/" -e '/^    server n[0-9]/d' \
        "$ROOT/deploy/haproxy/haproxy.cfg" |
        awk -v servers="$servers" '{print} /# servers/ {printf "%s", servers}' >"$DIR/haproxy.cfg"
    for ((i = 1; i <= n; i++)); do
        port=$((NODE_PORT + i - 1))
        local t
        for ((t = 0; t < 600; t++)); do
            healthy "$port" && break
            alive "$DIR/n$i.pid" || die "node n$i exited (see $DIR/n$i.log)"
            sleep 0.1
        done
        healthy "$port" || die "node n$i is not healthy after 60 s (see $DIR/n$i.log)"
    done
    haproxy -f "$DIR/haproxy.cfg" -D -p "$DIR/haproxy.pid" 2>"$DIR/haproxy.log" ||
        die "HAProxy did not start (see $DIR/haproxy.log)"
    wait_port "$LB_PORT" 10 || die "HAProxy did not listen on $LB_PORT"
    echo "cluster.sh: $n nodes behind http://127.0.0.1:$LB_PORT (NATS 127.0.0.1:$NATS_PORT, secret $SECRET, files in $DIR)"
}

status() {
    [[ -f "$DIR/nodes" ]] || { echo "cluster.sh: no cluster started from $DIR"; return 3; }
    local ok=0 name port
    if alive "$DIR/nats.pid"; then echo "nats     pid $(cat "$DIR/nats.pid")  127.0.0.1:$NATS_PORT"; else echo "nats     down"; ok=3; fi
    while read -r name port; do
        if alive "$DIR/$name.pid" && healthy "$port"; then
            echo "$name       pid $(cat "$DIR/$name.pid")  127.0.0.1:$port healthy"
        elif alive "$DIR/$name.pid"; then
            echo "$name       pid $(cat "$DIR/$name.pid")  127.0.0.1:$port unhealthy"; ok=3
        else
            echo "$name       down"; ok=3
        fi
    done <"$DIR/nodes"
    if alive "$DIR/haproxy.pid"; then echo "haproxy  pid $(cat "$DIR/haproxy.pid")  127.0.0.1:$LB_PORT"; else echo "haproxy  down"; ok=3; fi
    return $ok
}

# Sends SIGTERM to the process in a pid file and waits for it, at most 15 s.
stop_pid() {
    local file="$1" pid i
    [[ -f "$file" ]] || return 0
    pid="$(cat "$file")"
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 150; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$file"
}

stop_all() {
    stop_pid "$DIR/haproxy.pid"
    if [[ -f "$DIR/nodes" ]]; then
        local name port
        while read -r name port; do
            stop_pid "$DIR/$name.pid"
        done <"$DIR/nodes"
        rm -f "$DIR/nodes"
    fi
    stop_pid "$DIR/nats.pid"
}

case "${1:-}" in
    start) shift; start "$@" ;;
    status) status ;;
    stop) stop_all ;;
    install) install_packages ;;
    *) die "usage: cluster.sh start N --store STORE | status | stop | install" ;;
esac
