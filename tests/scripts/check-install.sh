#!/usr/bin/env bash
# Install into a temporary prefix and build an outside program against it,
# once with pkg-config and once with find_package(AetherCache); then check the
# installed operator programs (run without LD_LIBRARY_PATH), man pages and
# bash completion.
set -euo pipefail
build=$1 src=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" > "$tmp/install.log"
libdir=$(ls -d "$tmp"/prefix/lib*/ | head -1)
# The project's version from the build, so a version bump needs no edit here.
version=$(sed -n 's/^CMAKE_PROJECT_VERSION:[A-Z]*=//p' "$build/CMakeCache.txt")
majmin=${version%.*}
cat > "$tmp/app.c" <<'C'
#include <aether_cache/aether_cache.h>
#include <stdio.h>
#include <string.h>
int main(void)
{
    acache_options o = ACACHE_OPTIONS_INIT;
    acache *c = NULL;
    if (acache_open(&c, &o) != ACACHE_OK) return 1;
    acache_touch t = ACACHE_TOUCH_INIT;
    t.affinity_key = "ak"; t.api_format = "claude"; t.model_name = "m";
    t.provider_id = "p"; t.endpoint_id = "e"; t.key_id = "k";
    acache_touch_result r;
    if (acache_affinity_touch(&r, c, &t) || r != ACACHE_TOUCH_CREATED) return 2;
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
find_package(AetherCache @MAJMIN@ REQUIRED)
add_executable(app app.c)
target_link_libraries(app PRIVATE AetherCache::aethercache)
CM
sed -i "s/@MAJMIN@/$majmin/" "$tmp/cm/CMakeLists.txt"
cmake -S "$tmp/cm" -B "$tmp/cm/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" > "$tmp/cm.log"
cmake --build "$tmp/cm/build" >> "$tmp/cm.log"
LD_LIBRARY_PATH="$libdir" "$tmp/cm/build/app"
# The installed tree holds no private header and the SONAME is versioned.
test ! -e "$tmp/prefix/include/aether_cache/../core.h"
readelf -d "$libdir/libaethercache.so" | grep -q "SONAME.*libaethercache\.so\.$majmin\]"
passed=2

# The operator programs, their man pages and the bash completion (when the build
# has them: ACACHE_BUILD_EXAMPLES, ACACHE_INSTALL_PROGRAMS, help2man found).
cache_off() { grep -Eiq "^$1:[A-Z]+=(OFF|FALSE|0|NO)\$" "$build/CMakeCache.txt"; }
if ! cache_off ACACHE_BUILD_EXAMPLES && ! cache_off ACACHE_INSTALL_PROGRAMS; then
    for p in acache acache-admin acache-replay; do
        test -x "$tmp/prefix/bin/$p" || { echo "install: bin/$p missing"; exit 1; }
    done
    # No LD_LIBRARY_PATH: the programs find the library through their RPATH.
    out=$(env -u LD_LIBRARY_PATH "$tmp/prefix/bin/acache" --version)
    [[ $out == "acache "* ]] || { echo "install: acache --version printed: $out"; exit 1; }
    readelf -d "$tmp/prefix/bin/acache" | grep -Eq '(RUNPATH|RPATH).*\$ORIGIN/\.\./lib'
    # ... and it works: --now on the example catalog's usage rows.
    env -u LD_LIBRARY_PATH "$tmp/prefix/bin/acache" --catalog "$src/examples/catalog.json" \
        --now 2025-12-24T12:00:00Z ttl-analysis | grep -q '"total_users_analyzed": *[1-9]'
    passed=$((passed + 2))
    if grep -Eq '^ACACHE_HELP2MAN:FILEPATH=/' "$build/CMakeCache.txt"; then
        for p in acache acache-admin acache-replay; do
            page="$tmp/prefix/share/man/man1/$p.1"
            test -s "$page" || { echo "install: man page $page missing"; exit 1; }
            grep -q "^\.TH \"\?${p^^}" "$page" || { echo "install: $page is no man page"; exit 1; }
        done
        # The acache page is its --help: every command is in it.
        grep -q 'ttl\\-analysis\|ttl-analysis' "$tmp/prefix/share/man/man1/acache.1"
        passed=$((passed + 1))
    else
        echo "install: help2man was not found at configure time: man pages not checked"
    fi
    comp="$tmp/prefix/share/bash-completion/completions/acache"
    test -s "$comp" || { echo "install: $comp missing"; exit 1; }
    # The completion loads, completes commands and options, and lists exactly the
    # commands of `acache --help` and each command's options of `acache CMD --help`.
    bash -c '
        set -e
        source "$1"
        complete -p acache | grep -q _acache
        comp() { COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=(); _acache; echo "${COMPREPLY[*]}"; }
        [[ " $(comp acache ttl-) " == *" ttl-analysis "* ]]
        [[ " $(comp acache list --li) " == *" --limit "* ]]
        [[ " $(comp acache --store x timeline --inc) " == *" --include-user-info "* ]]
        helped=$("$2" --help | sed -n "/^Commands:/,/^\$/p" | awk "/^  [a-z]/ {print \$1}" | sort)
        completed=$(comp acache "" | tr " " "\n" | sort)
        [[ "$helped" == "$completed" ]] || { echo "commands: help [$helped] completion [$completed]"; exit 1; }
        for cmd in $helped; do
            want=$("$2" "$cmd" --help | grep -oE "^  (-[a-zA-Z], )?--[a-z-]+" | grep -oE -- "--[a-z-]+" | sort -u)
            have=$(comp acache "$cmd" -- | tr " " "\n" | grep -- "^--" | sort -u)
            [[ "$want" == "$have" ]] || { echo "$cmd: help [$want] completion [$have]"; exit 1; }
        done
    ' _ "$comp" "$tmp/prefix/bin/acache" || { echo "install: bash completion check failed"; exit 1; }
    passed=$((passed + 1))
else
    echo "install: programs not built or not installed (ACACHE_INSTALL_PROGRAMS=OFF): not checked"
fi
echo "install: $passed passed, 0 failed"
