#!/bin/sh
# Per-call cost of a `get` hit on memory:// from C, Python (ctypes) and Go
# (cgo), in one run on one machine. Not a test: numbers for the docs.
#
#   bindings/bench_bindings.sh [BUILD_DIR]     (a plain, non-sanitized build)
#
# BUILD_DIR defaults to ./build and must hold libaethercache.so; for Go it
# also needs bindings-pkgconfig/aether-cache.pc (written by cmake).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
N=${N:-1000000}
LIB=$BUILD/libaethercache.so
[ -f "$LIB" ] || { echo "no $LIB" >&2; exit 1; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

cat > "$TMP/bench.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <aether_cache/aether_cache.h>
int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    acache *c = NULL;
    acache_touch t = ACACHE_TOUCH_INIT;
    t.affinity_key = "bench-key";
    t.api_format = "claude";
    t.model_name = "claude-sonnet";
    t.provider_id = "p";
    t.endpoint_id = "e";
    t.key_id = "k";
    if (acache_open(&c, NULL) < 0 || acache_affinity_touch(NULL, c, &t) < 0)
        return 1;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) {
        acache_affinity *out = NULL;
        if (acache_affinity_get(&out, c, "bench-key", "claude", "claude-sonnet") < 0)
            return 1;
        acache_affinity_free(out);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ns = ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / (double)n;
    printf("C       get: %8.0f ns/call (%ld calls)\n", ns, n);
    acache_close(c);
    return 0;
}
C
cc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -I"$ROOT/include" -o "$TMP/bench" "$TMP/bench.c" \
    -L"$BUILD" -laethercache -Wl,-rpath,"$BUILD"
"$TMP/bench" "$N"

PY=python3
/usr/bin/python3 -c 'import ctypes' 2>/dev/null && PY=/usr/bin/python3
ACACHE_LIBRARY=$LIB PYTHONPATH=$ROOT/bindings/python PYTHONDONTWRITEBYTECODE=1 "$PY" - "$N" <<'PYEOF'
import sys, time
from aether_cache import Cache
n = max(int(sys.argv[1]) // 5, 1)
with Cache() as c:
    c.touch(affinity_key="bench-key", api_format="claude", model_name="claude-sonnet",
            provider_id="p", endpoint_id="e", key_id="k")
    get = c.get
    t = time.perf_counter()
    for _ in range(n):
        get("bench-key", "claude", "claude-sonnet")
    dt = time.perf_counter() - t
print("Python  get: %8.0f ns/call (%d calls)" % (dt / n * 1e9, n))
PYEOF

if command -v go >/dev/null 2>&1 && [ -f "$BUILD/bindings-pkgconfig/aether-cache.pc" ]; then
    cd "$ROOT/bindings/go"
    PKG_CONFIG_PATH=$BUILD/bindings-pkgconfig LD_LIBRARY_PATH=$BUILD \
    GOCACHE=$BUILD/go/cache GOPATH=$BUILD/go/path GOFLAGS=-mod=mod GOPROXY=off \
        go test -run '^$' -bench '^BenchmarkGet$' -benchtime 1s . |
        awk '/^BenchmarkGet/ { printf "Go      get: %8.0f ns/call (%d calls)\n", $3, $2 }'
fi
