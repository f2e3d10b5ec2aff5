#!/usr/bin/env bash
# Manage a private, throw-away PostgreSQL 15 for tests.
#   pg-instance.sh create          -> prints "DIR PORT" of a running server
#   pg-instance.sh stop DIR        -> stop it (data kept, same port on start)
#   pg-instance.sh start DIR       -> start it again
#   pg-instance.sh destroy DIR     -> stop it and remove DIR
# The server listens on 127.0.0.1 only, keeps its socket inside DIR, and runs
# without fsync. As root, the server runs as an unprivileged user (initdb
# and postgres refuse to run as root).
set -euo pipefail

PG_BINDIR=${ACACHE_TEST_PG_BINDIR:-}
if [[ -z "$PG_BINDIR" ]]; then
    for d in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin /usr/local/pgsql/bin; do
        if [[ -x "$d/initdb" && -x "$d/pg_ctl" ]]; then PG_BINDIR=$d; break; fi
    done
fi
if [[ -z "$PG_BINDIR" || ! -x "$PG_BINDIR/initdb" ]]; then
    echo "pg-instance.sh: PostgreSQL server binaries (initdb, pg_ctl) not found;" \
         "install postgresql-15 or set ACACHE_TEST_PG_BINDIR" >&2
    exit 2
fi

run_as() {
    if [[ $(id -u) -eq 0 ]]; then
        local user=${ACACHE_TEST_PG_USER:-postgres}
        if ! id -u "$user" >/dev/null 2>&1; then user=nobody; fi
        runuser -u "$user" -- "$@"
    else
        "$@"
    fi
}

server_user() {
    if [[ $(id -u) -eq 0 ]]; then
        local user=${ACACHE_TEST_PG_USER:-postgres}
        if ! id -u "$user" >/dev/null 2>&1; then user=nobody; fi
        echo "$user"
    else
        id -un
    fi
}

port_free() {
    # A refused connection means nobody listens there.
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start_server() {
    local dir=$1 port
    port=$(cat "$dir/port")
    run_as "$PG_BINDIR/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c port=$port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$dir \
            -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
            -c max_connections=200" start >/dev/null
}

# A test may have paused the server (SIGSTOP, pg_server.c) and died before
# resuming it: continue the postmaster and its children (by PID) so that
# stop/destroy cannot hang on a frozen server.
resume_server() {
    local pidfile=$1/data/postmaster.pid pid
    [[ -f "$pidfile" ]] || return 0
    pid=$(head -n1 "$pidfile")
    [[ "$pid" =~ ^[0-9]+$ ]] || return 0
    # Only our own postmaster (the PID file may be stale and the PID reused).
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$1/data" || return 0
    kill -CONT "$pid" 2>/dev/null || return 0
    for child in $(pgrep -P "$pid" 2>/dev/null); do
        kill -CONT "$child" 2>/dev/null || true
    done
}

cmd=${1:-}
case "$cmd" in
create)
    dir=$(mktemp -d "${TMPDIR:-/tmp}/acache-pg.XXXXXX")
    chmod 755 "$dir"
    chown "$(server_user)" "$dir"
    if ! run_as "$PG_BINDIR/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 \
            --locale=C -N >"$dir/initdb.log" 2>&1; then
        cat "$dir/initdb.log" >&2
        rm -rf "$dir"
        exit 1
    fi
    for attempt in 1 2 3 4 5 6 7 8; do
        port=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
        port_free "$port" || continue
        echo "$port" >"$dir/port"
        if start_server "$dir" 2>>"$dir/start.err"; then
            echo "$dir $port"
            exit 0
        fi
    done
    cat "$dir/server.log" "$dir/start.err" >&2 2>/dev/null || true
    rm -rf "$dir"
    echo "pg-instance.sh: could not start PostgreSQL" >&2
    exit 1
    ;;
stop)
    resume_server "$2"
    run_as "$PG_BINDIR/pg_ctl" -D "$2/data" -m fast -w -t 60 stop >/dev/null
    ;;
start)
    start_server "$2"
    ;;
destroy)
    dir=$2
    if [[ -f "$dir/data/postmaster.pid" ]]; then
        resume_server "$dir"
        run_as "$PG_BINDIR/pg_ctl" -D "$dir/data" -m immediate -w -t 60 stop \
            >/dev/null 2>&1 || true
    fi
    case "$dir" in
    */acache-pg.*) rm -rf "$dir" ;;
    *) echo "pg-instance.sh: refusing to remove $dir" >&2; exit 1 ;;
    esac
    ;;
*)
    echo "usage: pg-instance.sh create | stop DIR | start DIR | destroy DIR" >&2
    exit 2
    ;;
esac
