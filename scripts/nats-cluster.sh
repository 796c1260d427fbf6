#!/usr/bin/env bash
# A 3-node NATS JetStream cluster on loopback, for running the engine as it runs in production
# (R3 stream and consumers) on one machine.
#
#   scripts/nats-cluster.sh up      start the three servers (those not running), wait for JetStream
#   scripts/nats-cluster.sh down    stop only the servers this script started (by their PID files)
#   scripts/nats-cluster.sh url     print the NATS_URL listing the three servers
#
# Node i (1..3) listens for clients on 127.0.0.1:(NATS_CLUSTER_PORT + i - 1), default 4301-4303,
# for its peers on NATS_CLUSTER_ROUTE_PORT + i - 1 (6301-6303) and serves monitoring on
# NATS_CLUSTER_HTTP_PORT + i - 1 (8301-8303). Its store, log and PID file are under
# NATS_CLUSTER_DIR (default .data/nats-cluster, ignored by git): node-i/, node-i.log, node-i.pid.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/stop-pid.sh
source "$ROOT/scripts/stop-pid.sh"
DIR="${NATS_CLUSTER_DIR:-$ROOT/.data/nats-cluster}"
CLIENT_PORT="${NATS_CLUSTER_PORT:-4301}"
ROUTE_PORT="${NATS_CLUSTER_ROUTE_PORT:-6301}"
HTTP_PORT="${NATS_CLUSTER_HTTP_PORT:-8301}"
NAME="${NATS_CLUSTER_NAME:-commerce}"
NODES=(1 2 3)

log() { printf 'nats-cluster: %s\n' "$*"; }
die() { printf 'nats-cluster: %s\n' "$*" >&2; exit 1; }

for port in "$CLIENT_PORT" "$ROUTE_PORT" "$HTTP_PORT"; do
    [[ "$port" =~ ^[0-9]+$ ]] || die "ports must be numbers (got '$port')"
done

client_port() { echo $((CLIENT_PORT + $1 - 1)); }
route_port() { echo $((ROUTE_PORT + $1 - 1)); }
http_port() { echo $((HTTP_PORT + $1 - 1)); }

url() {
    local node urls=()
    for node in "${NODES[@]}"; do
        urls+=("nats://127.0.0.1:$(client_port "$node")")
    done
    (IFS=,; printf '%s\n' "${urls[*]}")
}

# PID of node $1 as this script started it, if it still runs (a PID reused by another program
# is not ours: only a nats-server counts).
our_pid() {
    local file="$DIR/node-$1.pid" pid
    [[ -f "$file" ]] || return 1
    pid="$(cat "$file" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    [[ "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)" == *nats-server* ]] || return 1
    printf '%s\n' "$pid"
}

tcp_answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Healthy: JetStream enabled, the cluster has a meta leader and this node is current with it.
healthy() { curl -fs -o /dev/null "http://127.0.0.1:$(http_port "$1")/healthz"; }

up() {
    command -v nats-server >/dev/null 2>&1 || die "nats-server is not on the PATH (Debian: apt-get install nats-server)"
    mkdir -p "$DIR"
    local node routes=()
    for node in "${NODES[@]}"; do
        routes+=("nats://127.0.0.1:$(route_port "$node")")
    done
    for node in "${NODES[@]}"; do
        local pid
        if pid="$(our_pid "$node")"; then
            log "node $node already runs (pid $pid)"
            continue
        fi
        if tcp_answers "$(client_port "$node")"; then
            die "port $(client_port "$node") is taken by another program; set NATS_CLUSTER_PORT"
        fi
        mkdir -p "$DIR/node-$node"
        # Each route list names every node, itself included: a server skips its own address, and
        # one list lets any node start first and find the others as they come.
        setsid nohup nats-server \
            --server_name "$NAME-$node" \
            -a 127.0.0.1 -p "$(client_port "$node")" -m "$(http_port "$node")" \
            --cluster_name "$NAME" --cluster "nats://127.0.0.1:$(route_port "$node")" \
            --routes "$(IFS=,; echo "${routes[*]}")" \
            -js -sd "$DIR/node-$node" \
            -l "$DIR/node-$node.log" -P "$DIR/node-$node.pid" \
            </dev/null >/dev/null 2>&1 &
        echo $! >"$DIR/node-$node.pid"
        log "node $node started (pid $!, client port $(client_port "$node"))"
    done
    local i
    for ((i = 0; i < 60; i++)); do
        local ready=0
        for node in "${NODES[@]}"; do
            if ! our_pid "$node" >/dev/null; then
                die "node $node exited; see $DIR/node-$node.log"
            fi
            healthy "$node" && ready=$((ready + 1))
        done
        if [[ $ready -eq ${#NODES[@]} ]]; then
            log "JetStream cluster '$NAME' is ready; data and logs in $DIR"
            log "NATS_URL=$(url) COMMERCE_STREAM_REPLICAS=3"
            return 0
        fi
        sleep 0.5
    done
    die "JetStream did not become ready within 30 s; see $DIR/node-*.log"
}

down() {
    local node
    for node in "${NODES[@]}"; do
        local pid
        if ! pid="$(our_pid "$node")"; then
            rm -f "$DIR/node-$node.pid"
            log "node $node is not running"
            continue
        fi
        stop_pid "$pid"
        rm -f "$DIR/node-$node.pid"
        log "node $node stopped (pid $pid)"
    done
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    url) url ;;
    *) printf 'usage: %s up|down|url\n' "$0" >&2; exit 2 ;;
esac
