#!/usr/bin/env bash
# Build and run every test: the C suites under ASan+UBSan, then a plain
# release build for the packaging checks, bindings and the HTTP server
# (a sanitized .so cannot be loaded by python3 or go test).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${JOBS:-2}
cmake -S . -B build-asan -DACACHE_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug -DACACHE_BUILD_BENCH=OFF
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
exit $status
