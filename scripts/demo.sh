#!/usr/bin/env bash
# The main demo on the embedded defaults (memory store, JSON catalog, no
# server): records traffic, then shows a listing with masked keys, an
# invalidation, stats, metrics, mapping stats and a TTL recommendation.
# Then the admin HTTP server on the same defaults, answering a few curl calls.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-demo -DCMAKE_BUILD_TYPE=Release -DACACHE_BUILD_TESTS=OFF -DACACHE_BUILD_BENCH=OFF > /dev/null
cmake --build build-demo -j"${JOBS:-2}" > /dev/null
build-demo/examples/acache-demo examples/catalog.json examples/traffic.jsonl

if [ -x build-demo/examples/acache-admin ]; then
  echo
  echo "==== 10. the admin HTTP server (acache-admin) on the same defaults ===="
  tmp=$(mktemp -d)
  pid=
  cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$tmp"; }
  trap cleanup EXIT
  head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$tmp/token"
  printf 'demo-encryption-key' > "$tmp/key"
  build-demo/examples/acache-admin --listen 127.0.0.1:0 --port-file "$tmp/port" \
      --token-file "$tmp/token" --catalog examples/catalog.json \
      --encryption-key-file "$tmp/key" --replay examples/traffic.jsonl \
      > "$tmp/out" 2> "$tmp/access.log" &
  pid=$!
  for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.05; done
  port=$(cat "$tmp/port")
  token=$(cat "$tmp/token")
  base="http://127.0.0.1:$port/api/admin/monitoring/cache"
  for path in "/stats" "/affinities?limit=2" "/affinity/bob"; do
    echo "\$ curl -s -H 'Authorization: Bearer \$TOKEN' '$base$path'"
    curl -s -H "Authorization: Bearer $token" "$base$path" | head -c 600
    echo " ..."; echo
  done
  echo "\$ curl -s -X DELETE -H 'Authorization: Bearer \$TOKEN' '$base/users/bob'"
  curl -s -X DELETE -H "Authorization: Bearer $token" "$base/users/bob"; echo; echo
  echo "\$ curl -s -i '$base/stats'   # no token"
  curl -s -i "$base/stats" | head -1
fi

if command -v redis-server > /dev/null && command -v redis-cli > /dev/null; then
  echo
  echo "==== 11. the same library on a private Redis: the model-mapping cache ===="
  rtmp=$(mktemp -d)
  rport=$(( 20000 + RANDOM % 20000 ))
  redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$rtmp" \
      > "$rtmp/log" 2>&1 &
  rpid=$!
  stop_redis() { kill "$rpid" 2>/dev/null; wait "$rpid" 2>/dev/null; rm -rf "$rtmp"; }
  trap 'stop_redis; cleanup' EXIT
  for _ in $(seq 100); do redis-cli -p "$rport" ping > /dev/null 2>&1 && break; sleep 0.05; done
  # Keys as Aether's gateway fills them (examples/model-mapping-demo.redis).
  redis-cli -p "$rport" < examples/model-mapping-demo.redis > /dev/null
  acache="build-demo/examples/acache --store redis://127.0.0.1:$rport --catalog examples/catalog.json"
  echo "\$ acache --store redis://... --catalog examples/catalog.json --pretty mapping-stats"
  $acache --pretty mapping-stats
  echo "\$ acache ... mapping-clear 'claude-sonnet-4-5'   # a literal name, never a pattern"
  $acache mapping-clear 'claude-sonnet-4-5'
fi

if [ -x build-demo/examples/acache ]; then
  echo
  echo "==== 12. the operator CLI on the example catalog ===="
  # The catalog's usage rows are from 2025-12-24: --now puts the analysis
  # window's end there (without it the window ends today and holds no rows).
  echo "\$ build-demo/examples/acache --catalog examples/catalog.json --now 2025-12-24T12:00:00Z ttl-analysis --hours 24"
  build-demo/examples/acache --catalog examples/catalog.json --now 2025-12-24T12:00:00Z \
      ttl-analysis --hours 24 | head -c 400
  echo " ..."
fi

echo
echo "Done. The programs are in build-demo/examples/: try build-demo/examples/acache --help"
echo "(or install them: cmake --install build-demo --prefix ~/.local; docs/getting-started.md)."
