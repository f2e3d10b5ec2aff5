#!/usr/bin/env bash
# The shared object exports exactly docs/symbols.txt: only acache_* names,
# each declared ACACHE_EXTERN in a public header. Regenerate the list with
#   tests/scripts/check-symbols.sh LIB docs/symbols.txt --update
set -euo pipefail
lib=$1 list=$2 src=$(cd "$(dirname "$0")/../.." && pwd)
actual=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' | sort -u)
if [ "${3:-}" = "--update" ]; then printf '%s\n' "$actual" > "$list"; exit 0; fi
status=0
bad=$(printf '%s\n' "$actual" | grep -v '^acache_' || true)
if [ -n "$bad" ]; then echo "exported symbols without the acache_ prefix:"; echo "$bad"; status=1; fi
if ! diff -u "$list" <(printf '%s\n' "$actual"); then
  echo "exported symbols differ from $list (run with --update after an intended API change)"
  status=1
fi
# Declarations may wrap: join each header into one line before matching.
declared=$(find "$src/include" -name '*.h' -exec cat {} + | tr '\n' ' ' |
           grep -oE 'ACACHE_EXTERN[^;(]*\(' | grep -oE 'acache_[a-z0-9_]+ *\($' |
           tr -d ' (' | sort -u)
undeclared=$(comm -23 <(printf '%s\n' "$actual") <(printf '%s\n' "$declared"))
if [ -n "$undeclared" ]; then echo "exported but not declared ACACHE_EXTERN in include/:"; echo "$undeclared"; status=1; fi
missing=$(comm -13 <(printf '%s\n' "$actual") <(printf '%s\n' "$declared"))
if [ -n "$missing" ]; then echo "declared in include/ but not exported:"; echo "$missing"; status=1; fi
[ $status = 0 ] && echo "symbols: $(printf '%s\n' "$actual" | wc -l) exported, all acache_, all declared: 1 passed, 0 failed"
exit $status
