#!/usr/bin/env bash
# Every public header compiles on its own, in C11 and C++, with -Wextra -pedantic.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
n=0
for h in $(cd "$src/include" && find aether_cache -name '*.h' | sort); do
  printf '#include <%s>\n#include <%s>\nint main(void) { return 0; }\n' "$h" "$h" > "$tmp/t.c"
  cc -std=c11 -Wall -Wextra -Werror -pedantic -Wstrict-prototypes -I"$src/include" -c "$tmp/t.c" -o "$tmp/t.o"
  if command -v g++ >/dev/null; then
    cp "$tmp/t.c" "$tmp/t.cpp"
    g++ -std=c++11 -Wall -Wextra -Werror -pedantic -I"$src/include" -c "$tmp/t.cpp" -o "$tmp/t.o"
  fi
  n=$((n + 1))
done
cc -std=c11 -Wall -Wextra -Werror -pedantic -Wmissing-field-initializers -I"$src/include" \
   -c "$src/tests/headertest/init_macros.c" -o "$tmp/i.o"
echo "headers: $n headers compile standalone: $((n + 1)) passed, 0 failed"
