#!/usr/bin/env bash
# Local backing services for development and tests: PostgreSQL and NATS (JetStream), and the
# PgBouncer binary (installed, not run: the tests that need one start their own).
#
#   scripts/services.sh up     make sure both answer; start them under .data/ if not
#   scripts/services.sh down   stop only what this script started under .data/
#
# Targets come from DATABASE_URL (default postgres://postgres@127.0.0.1:5432/commerce)
# and NATS_URL (default nats://127.0.0.1:4222). Only 127.0.0.1/localhost targets are
# started here; anything else must already be running.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/stop-pid.sh
source "$ROOT/scripts/stop-pid.sh"
DATA="$ROOT/.data"
PG_DATA="$DATA/postgres"
PG_LOG="$DATA/postgres.log"
NATS_STORE="$DATA/nats"
NATS_LOG="$DATA/nats.log"
NATS_PID="$DATA/nats.pid"

DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/commerce}"
NATS_URL="${NATS_URL:-nats://127.0.0.1:4222}"

log() { printf '%s\n' "$*"; }
die() { printf 'services.sh: %s\n' "$*" >&2; exit 1; }

# parse_url URL DEFAULT_PORT -> sets URL_HOST, URL_PORT
# Handles scheme://[user[:pass]@]host[:port][/path][?query]; first entry of a comma list.
parse_url() {
    local rest="${1%%,*}"
    rest="${rest#*://}"
    rest="${rest%%/*}"
    rest="${rest%%\?*}"
    rest="${rest##*@}"
    if [[ "$rest" == \[*\]* ]]; then          # [ipv6]:port
        URL_HOST="${rest%%]*}"; URL_HOST="${URL_HOST#\[}"
        rest="${rest#*]}"
        URL_PORT="${rest#:}"
    elif [[ "$rest" == *:* ]]; then
        URL_HOST="${rest%%:*}"
        URL_PORT="${rest##*:}"
    else
        URL_HOST="$rest"
        URL_PORT=""
    fi
    URL_HOST="${URL_HOST:-127.0.0.1}"
    URL_PORT="${URL_PORT:-$2}"
    [[ "$URL_PORT" =~ ^[0-9]+$ ]] || die "cannot parse port from '$1'"
}

is_local() { [[ "$1" == 127.0.0.1 || "$1" == localhost ]]; }

tcp_answers() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

is_root() { [[ "$(id -u)" -eq 0 ]]; }

# Run a command as root (directly, or through sudo when available).
as_root() {
    if is_root; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root to run '$*' (not root and no sudo); install the package manually"
    fi
}

apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install '$1' manually"
    log "installing Debian package '$1' ..."
    if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "$1" >/dev/null; then
        as_root apt-get update >/dev/null
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "$1" >/dev/null \
            || die "apt-get install $1 failed"
    fi
}

# ---------------------------------------------------------------- PostgreSQL

pg_bindir() {
    local d
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    if [[ -n "$d" && -x "$d/initdb" ]]; then
        printf '%s\n' "$d"
    elif command -v initdb >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
    fi
}

pg_answers() {
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q -h "$1" -p "$2" >/dev/null 2>&1
    else
        tcp_answers "$1" "$2"
    fi
}

# Run a Postgres server binary as an unprivileged user (Postgres refuses root).
as_pg() {
    if is_root; then
        if command -v runuser >/dev/null 2>&1; then
            runuser -u postgres -- "$@"
        else
            su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
        fi
    else
        "$@"
    fi
}

pg_up() {
    parse_url "$DATABASE_URL" 5432
    local host="$URL_HOST" port="$URL_PORT" did="started"

    if pg_answers "$host" "$port"; then
        log "postgres: already up at $host:$port"
        return 0
    fi
    is_local "$host" || die "postgres at $host:$port does not answer and is not local; start it yourself"

    if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v pg_isready >/dev/null 2>&1; then
        apt_install postgresql
        did="installed and started"
        # The Debian package may start its own cluster, which asks for passwords over TCP. Stop
        # it: ours, under .data with trust auth for local connections, takes the port instead.
        if pg_answers "$host" "$port"; then
            log "postgres: stopping the system cluster the package started, to run ours under .data"
            if command -v pg_ctlcluster >/dev/null 2>&1; then
                for version in $(ls /etc/postgresql 2>/dev/null); do
                    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main stop >/dev/null 2>&1 || true
                done
            fi
            as_root service postgresql stop >/dev/null 2>&1 || true
        fi
    fi

    local bin
    bin="$(pg_bindir)"
    [[ -n "$bin" ]] || die "postgres binaries (initdb/pg_ctl) not found"

    mkdir -p "$DATA"
    if [[ ! -d "$PG_DATA" ]]; then
        mkdir -m 700 "$PG_DATA"
    fi
    touch "$PG_LOG"
    if is_root; then
        id postgres >/dev/null 2>&1 || die "system user 'postgres' missing (it comes with the Debian package)"
        chown postgres: "$PG_DATA" "$PG_LOG"
        runuser -u postgres -- test -w "$PG_DATA" 2>/dev/null \
            || die "user 'postgres' cannot reach $PG_DATA (check permissions of its parent directories)"
    fi

    if [[ ! -f "$PG_DATA/PG_VERSION" ]]; then
        [[ -z "$(ls -A "$PG_DATA")" ]] || die "$PG_DATA is not empty but holds no cluster; remove it"
        as_pg "$bin/initdb" -D "$PG_DATA" --auth=trust -U postgres -E UTF8 >"$DATA/initdb.log" 2>&1 \
            || die "initdb failed, see $DATA/initdb.log"
    fi

    if as_pg "$bin/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
        die "the cluster in $PG_DATA is running but does not answer on $host:$port (other port?); run '$0 down' first"
    fi

    as_pg "$bin/pg_ctl" -D "$PG_DATA" \
        -o "-p $port -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=300" \
        -l "$PG_LOG" -t 30 start >/dev/null \
        || die "pg_ctl start failed, see $PG_LOG"

    local i
    for ((i = 0; i < 30; i++)); do
        if pg_answers "$host" "$port"; then
            log "postgres: $did at $host:$port (data in .data/postgres, log .data/postgres.log)"
            return 0
        fi
        sleep 1
    done
    die "postgres did not answer on $host:$port within 30 s, see $PG_LOG"
}

pg_down() {
    if [[ ! -f "$PG_DATA/postmaster.pid" ]]; then
        log "postgres: not running from .data/postgres"
        return 0
    fi
    local bin
    bin="$(pg_bindir)"
    [[ -n "$bin" ]] || die "pg_ctl not found"
    if as_pg "$bin/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
        as_pg "$bin/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null
        log "postgres: stopped (.data/postgres)"
    else
        log "postgres: not running from .data/postgres"
    fi
}

# ---------------------------------------------------------------------- NATS

nats_bin() {
    if command -v nats-server >/dev/null 2>&1; then
        command -v nats-server
    elif [[ -x /usr/sbin/nats-server ]]; then
        printf '%s\n' /usr/sbin/nats-server
    fi
}

# PID of the nats-server this script started, if it still runs.
our_nats_pid() {
    [[ -f "$NATS_PID" ]] || return 1
    local pid
    pid="$(cat "$NATS_PID" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    local cmd
    cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
    [[ "$cmd" == *nats-server* ]] || return 1
    printf '%s\n' "$pid"
}

# 0 = JetStream enabled, 1 = not enabled, 2 = could not tell.
# The server sends an INFO line on connect; it carries "jetstream":true when enabled.
nats_jetstream() (
    line=""
    exec 2>/dev/null
    exec 3<>"/dev/tcp/$1/$2" || exit 2
    IFS= read -r -t 3 line <&3 || true
    exec 3>&-
    [[ "$line" == INFO* ]] || exit 2
    [[ "$line" == *'"jetstream":true'* ]] && exit 0
    exit 1
)

nats_check_js() {
    local rc=0
    nats_jetstream "$1" "$2" || rc=$?
    if [[ $rc -eq 1 ]]; then
        die "nats at $1:$2 answers but JetStream is not enabled (restart it with -js)"
    fi
}

nats_up() {
    parse_url "$NATS_URL" 4222
    local host="$URL_HOST" port="$URL_PORT" did="started"
    [[ "$host" == localhost ]] && host=127.0.0.1

    if tcp_answers "$host" "$port"; then
        nats_check_js "$host" "$port"
        log "nats: already up at $host:$port"
        return 0
    fi
    is_local "$host" || die "nats at $host:$port does not answer and is not local; start it yourself"

    local pid
    if pid="$(our_nats_pid)"; then
        die "nats-server from .data runs (pid $pid) but not on $host:$port; run '$0 down' first"
    fi

    local bin
    bin="$(nats_bin)"
    if [[ -z "$bin" ]]; then
        apt_install nats-server
        did="installed and started"
        bin="$(nats_bin)"
        [[ -n "$bin" ]] || die "nats-server still not found after install"
        # In case the package started a system service on this port.
        if tcp_answers "$host" "$port"; then
            nats_check_js "$host" "$port"
            log "nats: installed; system service answers at $host:$port (not managed by this script)"
            return 0
        fi
    fi

    mkdir -p "$NATS_STORE"
    setsid nohup "$bin" -a 127.0.0.1 -p "$port" -js -sd "$NATS_STORE" -l "$NATS_LOG" -P "$NATS_PID" \
        </dev/null >/dev/null 2>&1 &
    echo $! >"$NATS_PID"

    local i
    for ((i = 0; i < 30; i++)); do
        if tcp_answers "$host" "$port"; then
            nats_check_js "$host" "$port"
            log "nats: $did at $host:$port with JetStream (store .data/nats, log .data/nats.log)"
            return 0
        fi
        sleep 0.5
    done
    die "nats did not answer on $host:$port within 15 s, see $NATS_LOG"
}

nats_down() {
    local pid
    if ! pid="$(our_nats_pid)"; then
        rm -f "$NATS_PID"
        log "nats: not running from .data"
        return 0
    fi
    stop_pid "$pid"
    rm -f "$NATS_PID"
    log "nats: stopped (pid $pid)"
}

# ----------------------------------------------------------------- PgBouncer

# Only the binary: the PgBouncer test starts its own on a free port with its own pgbouncer.ini,
# so the service the Debian package starts (on 6432, with the system's ini) is stopped.
pgbouncer_install() {
    if command -v pgbouncer >/dev/null 2>&1 || [[ -x /usr/sbin/pgbouncer ]]; then
        log "pgbouncer: installed ($(pgbouncer_bin) --version: $("$(pgbouncer_bin)" --version | head -n 1))"
        return 0
    fi
    apt_install pgbouncer
    as_root service pgbouncer stop >/dev/null 2>&1 || true
    [[ -n "$(pgbouncer_bin)" ]] || die "pgbouncer still not found after install"
    log "pgbouncer: installed ($("$(pgbouncer_bin)" --version | head -n 1)); not started"
}

pgbouncer_bin() {
    if command -v pgbouncer >/dev/null 2>&1; then
        command -v pgbouncer
    elif [[ -x /usr/sbin/pgbouncer ]]; then
        printf '%s\n' /usr/sbin/pgbouncer
    fi
}

# ----------------------------------------------------------------------------

case "${1:-}" in
    up)   pg_up; nats_up; pgbouncer_install ;;
    down) pg_down; nats_down ;;
    *)    printf 'usage: %s up|down\n' "$0" >&2; exit 2 ;;
esac
