#!/bin/sh
# Install the package the way a user does and run the binding tests on the
# installed copy (ctest python-installed):
#   a fresh venv that sees the system's setuptools/wheel/pytest,
#   pip install --no-build-isolation --no-index (offline, no PyPI),
#   the library found through LD_LIBRARY_PATH (ACACHE_LIBRARY unset).
# Usage: test-installed.sh PYTHON WORKDIR PACKAGE_DIR LIBRARY_FILE
# Exit 77 (skipped) when venv, pip or wheel is missing: Debian packages
# python3-venv python3-pip python3-setuptools python3-wheel.
set -eu
PY=$1 WORK=$2 PKG=$3 LIB=$4
need="python3-venv python3-pip python3-setuptools python3-wheel"
for mod in venv pip setuptools wheel pytest; do
    if ! "$PY" -c "import $mod" 2>/dev/null; then
        echo "python-installed: $PY cannot import $mod (apt-get install $need python3-pytest)" >&2
        exit 77
    fi
done
rm -rf "$WORK"
mkdir -p "$WORK"
# Build from a copy: pip writes build/ and *.egg-info next to the sources.
cp -R "$PKG" "$WORK/src"
rm -rf "$WORK/src/build" "$WORK/src"/*.egg-info "$WORK/src/tests"
# --without-pip: the system pip (seen through the system site) installs
# into the venv, and ensurepip need not unpack a second pip (30 s here).
"$PY" -m venv --system-site-packages --without-pip "$WORK/venv"
"$WORK/venv/bin/python" -m pip install --no-build-isolation --no-index --no-cache-dir \
    --disable-pip-version-check -q "$WORK/src"
# The tests are the source tree's; they import the installed package.
cd "$WORK"
env -u ACACHE_LIBRARY -u PYTHONPATH ACACHE_TEST_INSTALLED=1 ACACHE_EXPECT_LIBRARY="$LIB" \
    LD_LIBRARY_PATH="$(dirname "$LIB")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    "$WORK/venv/bin/python" -m pytest -q -p no:cacheprovider "$PKG/tests"
