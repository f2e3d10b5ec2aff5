#!/usr/bin/env bash
# Install into a temporary prefix and build an outside program against it,
# once with pkg-config and once with find_package(AetherCache).
set -euo pipefail
build=$1 src=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" > "$tmp/install.log"
libdir=$(ls -d "$tmp"/prefix/lib*/ | head -1)
cat > "$tmp/app.c" <<'C'
#include <aether_cache/aether_cache.h>
#include <stdio.h>
#include <string.h>
int main(void)
{
    acache_options o = ACACHE_OPTIONS_INIT;
    acache *c = NULL;
    if (acache_open(&c, &o) != ACACHE_OK) return 1;
    acache_touch_result r;
    if (acache_affinity_set(&r, c, "ak", "claude", "m", "p", "e", "k", 1, 0) || r != ACACHE_TOUCH_CREATED) return 2;
    acache_affinity *a = NULL;
    if (acache_affinity_get(&a, c, "ak", "claude", "m") || strcmp(acache_affinity_key_id(a), "k")) return 3;
    acache_affinity_free(a);
    acache_close(c);
    printf("ok %s\n", acache_version());
    return 0;
}
C
export PKG_CONFIG_PATH="$libdir/pkgconfig"
cc -std=c11 -Wall -Wextra -Werror -pedantic "$tmp/app.c" -o "$tmp/app-pc" $(pkg-config --cflags --libs aether-cache)
LD_LIBRARY_PATH="$libdir" "$tmp/app-pc"
mkdir -p "$tmp/cm"
cp "$tmp/app.c" "$tmp/cm/app.c"
cat > "$tmp/cm/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.18)
project(outside C)
find_package(AetherCache 0.1 REQUIRED)
add_executable(app app.c)
target_link_libraries(app PRIVATE AetherCache::aethercache)
CM
cmake -S "$tmp/cm" -B "$tmp/cm/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" > "$tmp/cm.log"
cmake --build "$tmp/cm/build" >> "$tmp/cm.log"
LD_LIBRARY_PATH="$libdir" "$tmp/cm/build/app"
# The installed tree holds no private header and the SONAME is versioned.
test ! -e "$tmp/prefix/include/aether_cache/../core.h"
readelf -d "$libdir/libaethercache.so" | grep -q 'SONAME.*libaethercache.so.0.1'
echo "install: pkg-config and find_package programs built and ran: 2 passed, 0 failed"
