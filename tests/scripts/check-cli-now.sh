#!/usr/bin/env bash
# acache --now (issue 13): the example catalog's usage rows are dated
# 2025-12-24, so the analyses are empty against the wall clock and filled with
# --now; ISO 8601 with any zone and epoch seconds name the same instant; a
# value without a zone, an impossible date or junk is a usage error (exit 2).
set -euo pipefail
acache=$1 src=$(cd "$(dirname "$0")/../.." && pwd)
cat=$src/examples/catalog.json
fail() { echo "cli-now: $*"; exit 1; }
run() { "$acache" --catalog "$cat" "$@"; }

run ttl-analysis | grep -q '"total_users_analyzed": 0,' || fail "rows expected outside the wall-clock window"
iso=$(run --now 2025-12-24T12:00:00Z ttl-analysis)
grep -q '"total_users_analyzed": [1-9]' <<<"$iso" || fail "no groups with --now: $iso"
# Option anywhere, other spellings of the same instant: identical output.
[[ $(run ttl-analysis --now 1766577600) == "$iso" ]] || fail "epoch seconds differ"
[[ $(run ttl-analysis --now=2025-12-24T20:00:00+08:00) == "$iso" ]] || fail "+08:00 differs"
[[ $(run ttl-analysis --now '2025-12-24 07:00:00-0500') == "$iso" ]] || fail "-0500 differs"
run --now 2025-12-24T12:00:00Z hit-analysis | grep -q '"total_requests": [1-9]' || fail "hit-analysis empty"
run --now 2025-12-24T12:00:00Z timeline | grep -q '"total_points": [1-9]' || fail "timeline empty"
for bad in 2025-12-24T12:00:00 2025-02-29T00:00:00Z 2025-12-24T24:00:00Z 2025-12-24T12:00:00Zx \
    -5 nan x ''; do
    set +e
    err=$(run --now "$bad" ttl-analysis 2>&1 >/dev/null)
    rc=$?
    set -e
    [[ $rc == 2 && $err == *"--now"* ]] || fail "--now '$bad': exit $rc, $err"
done
"$acache" --help | grep -q -- '--now TIME' || fail "--now not in --help"
echo "cli-now: 7 passed, 0 failed"
