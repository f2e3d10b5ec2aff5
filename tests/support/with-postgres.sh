#!/usr/bin/env bash
# with-postgres.sh COMMAND [ARGS...]
# Start a private PostgreSQL 15 (temp dir, free loopback port, no fsync), run
# COMMAND with ACACHE_TEST_PG_* describing it, then always stop the server and
# remove its directory. Exits with COMMAND's status. No PostgreSQL installed
# is a failure, not a skip.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [[ $# -eq 0 ]]; then
    echo "usage: with-postgres.sh COMMAND [ARGS...]" >&2
    exit 2
fi

if ! out=$("$here/pg-instance.sh" create); then
    echo "with-postgres.sh: FAILED to start PostgreSQL (see above)" >&2
    exit 1
fi
read -r dir port <<<"$out"

cleanup() {
    # Servers a crashed test left behind (pg_server.c nests them here) first.
    for nested in "$dir"/acache-pg.*; do
        [[ -d "$nested" ]] && "$here/pg-instance.sh" destroy "$nested" || true
    done
    "$here/pg-instance.sh" destroy "$dir" || true
}
trap cleanup EXIT

export ACACHE_TEST_PG_URI="postgresql://postgres@127.0.0.1:$port/postgres"
export ACACHE_TEST_PG_PORT=$port
export ACACHE_TEST_PG_DIR=$dir
export ACACHE_TEST_PG_DATADIR=$dir/data
# Tests that need a server of their own (stop/start mid-run) make one with this
# instead of disturbing the shared one.
export ACACHE_TEST_PG_INSTANCE=$here/pg-instance.sh
pgctl=$(ls /usr/lib/postgresql/15/bin/pg_ctl 2>/dev/null || command -v pg_ctl || true)
export ACACHE_TEST_PG_CTL=${pgctl:-pg_ctl}

# Run the command in the background so a signal to this script is handled at
# once (bash defers traps while a foreground child runs): pass it on, then
# clean up through the EXIT trap.
set +e
"$@" <&0 &
child=$!
trap 'kill -INT "$child" 2>/dev/null; wait "$child"; exit 130' INT
trap 'kill -TERM "$child" 2>/dev/null; wait "$child"; exit 143' TERM
wait "$child"
rc=$?
exit $rc
