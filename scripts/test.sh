#!/usr/bin/env bash
# Build and run every test: the C suites under ASan+UBSan, then a plain
# release build for the packaging checks, bindings and the HTTP server
# (a sanitized .so cannot be loaded by python3 or go test).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${JOBS:-2}
# clang for the sanitized suite: its UBSan has float-cast-overflow and more
# checks than GCC's (a build dir configured with another compiler starts afresh).
fresh=()
if [[ -f build-asan/CMakeCache.txt ]] &&
    ! grep -q '^CMAKE_C_COMPILER:[A-Z]*=.*clang' build-asan/CMakeCache.txt; then
    fresh=(--fresh)
fi
cmake "${fresh[@]}" -S . -B build-asan -DCMAKE_C_COMPILER=clang -DACACHE_SANITIZE=ON \
    -DCMAKE_BUILD_TYPE=Debug -DACACHE_BUILD_BENCH=OFF
cmake --build build-asan -j"$jobs"
cmake -S . -B build-rel -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build-rel -j"$jobs"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0"
# ThreadSanitizer: only the library and the stress program (Criterion cannot
# run under TSan).
cmake -S . -B build-tsan -DACACHE_TSAN=ON -DCMAKE_BUILD_TYPE=Debug -DACACHE_BUILD_BENCH=OFF -DACACHE_BUILD_EXAMPLES=OFF
cmake --build build-tsan -j"$jobs" --target tsan-threads
status=0
ctest --test-dir build-asan --output-on-failure --timeout 900 || status=1
ctest --test-dir build-rel --output-on-failure --timeout 900 -E '^(unit|integration)$' || status=1
ctest --test-dir build-tsan --output-on-failure --timeout 600 -L tsan || status=1
# libFuzzer targets (tests/fuzz, clang): each runs FUZZ_SECONDS over a temp
# copy of its seed corpus (new inputs never land in the repo); a crash leaves
# its input in build-fuzz/artifacts/.
fuzz_seconds=${FUZZ_SECONDS:-20}
cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DACACHE_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug \
    -DACACHE_BUILD_TESTS=OFF -DACACHE_BUILD_EXAMPLES=OFF -DACACHE_BUILD_BENCH=OFF
cmake --build build-fuzz -j"$jobs" --target acache_fuzz
mkdir -p build-fuzz/artifacts
for src in tests/fuzz/fuzz_*.c; do
    name=$(basename "$src" .c)
    corpus=$(mktemp -d)
    [[ -d tests/fuzz/corpus/${name#fuzz_} ]] && cp -R "tests/fuzz/corpus/${name#fuzz_}/." "$corpus/"
    echo "fuzz: $name for ${fuzz_seconds}s"
    if ! "build-fuzz/tests/fuzz/$name" -max_total_time="$fuzz_seconds" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=build-fuzz/artifacts/ \
        "$corpus" >"build-fuzz/$name.log" 2>&1; then
        tail -n 60 "build-fuzz/$name.log"
        echo "fuzz: $name FAILED (log: build-fuzz/$name.log)"
        status=1
    fi
    rm -rf "$corpus"
done
# Static checks (CONTRIBUTING.md), both at zero: the clang static analyzer over
# lib/ and examples/, then clang-format over the tracked C sources (the list is
# git ls-files, so build dirs, generated headers and the fuzz corpus are never
# checked).
scripts/analyze.sh build-analyze || status=1
if ! command -v clang-format >/dev/null; then
    echo "clang-format: not installed (Debian package clang-format)"
    status=1
elif ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    echo "clang-format: not a git checkout, nothing to list"
    status=1
else
    unformatted=()
    while IFS= read -r -d '' f; do
        clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || unformatted+=("$f")
    done < <(git ls-files -z -- 'lib/*.[ch]' 'include/*.[ch]' 'examples/*.[ch]' \
        'tests/*.[ch]' 'bench/*.[ch]' ':!:tests/fuzz/corpus/*' ':!:*/generated/*')
    if ((${#unformatted[@]})); then
        clang-format --dry-run --Werror "${unformatted[0]}" 2>&1 | head -n 20 || true
        printf 'clang-format: %s differs from .clang-format\n' "${unformatted[@]}"
        echo "clang-format: ${#unformatted[@]} file(s); run clang-format -i on them"
        status=1
    else
        echo "clang-format: every tracked C file matches .clang-format"
    fi
fi
exit $status
