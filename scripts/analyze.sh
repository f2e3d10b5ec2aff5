#!/usr/bin/env bash
# The clang static analyzer over lib/ and examples/ with the build's own flags
# (compile_commands.json of a clang build), two files at a time; exits 1 on any
# report and prints it with its path (-analyzer-output=text).
# Usage: scripts/analyze.sh [BUILD_DIR [FILE...]]   (default build-analyze, configured
# here; FILEs limit the run to those sources, e.g. lib/store/redis/scan.c)
# A false positive gets a short comment and the narrowest hint (an assert the
# analyzer can see, a defined initial value), never a disabled checker.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-analyze}
shift || true
jobs=${JOBS:-2}
cmake -S . -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_EXPORT_COMPILE_COMMANDS=ON \
    -DCMAKE_BUILD_TYPE=Debug -DACACHE_BUILD_BENCH=OFF -DBUILD_TESTING=OFF >/dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# One NUL-separated shell command per translation unit: the compile command
# with -c/-o replaced by --analyze (same defines, includes and warnings).
python3 - "$build/compile_commands.json" "$PWD" "$out" "$@" >"$out/cmds" <<'EOF'
import json, os, shlex, sys
db, root, out = sys.argv[1], sys.argv[2].rstrip('/') + '/', sys.argv[3]
only = {os.path.abspath(f) for f in sys.argv[4:]}
for i, e in enumerate(json.load(open(db))):
    f = os.path.abspath(os.path.join(e['directory'], e['file']))
    if not f.startswith((root + 'lib/', root + 'examples/')) or (only and f not in only):
        continue
    args = e.get('arguments') or shlex.split(e['command'])
    keep, skip = [], False
    for a in args[1:]:
        if skip:
            skip = False
        elif a == '-o':
            skip = True
        elif a != '-c':
            keep.append(a)
    cmd = ['clang', '--analyze', '-Xclang', '-analyzer-output=text', '-o', '/dev/null'] + keep
    log = '%s/%d.log' % (out, i)
    sys.stdout.write('cd %s && %s >%s 2>&1; true\0' % (shlex.quote(e['directory']),
                     ' '.join(map(shlex.quote, cmd)), log))
EOF
n=$(tr -cd '\0' <"$out/cmds" | wc -c)
xargs -0 -P "$jobs" -n 1 bash -c <"$out/cmds"
if grep -q . "$out"/*.log; then
    cat "$out"/*.log
    echo "analyze: $(cat "$out"/*.log | grep -c ': warning: ') report(s) in $n files"
    exit 1
fi
echo "analyze: $n files, 0 reports"
