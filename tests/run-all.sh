#!/bin/bash
# run-all.sh - the whole test suite on a fresh Debian 12 machine, as root:
#   install the build and test dependencies, build, then run every C++ unit test, the pylib
#   tests and the end-to-end tests with real Exim (all registered with CTest).
# Usage: bash tests/run-all.sh     (MTAPY_BUILD=dir to choose the build folder)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${MTAPY_BUILD:-$top/build}

if [ "$(id -u)" != 0 ]; then
  echo "run-all.sh: run as root (the tests start workers as other users and a real Exim)" >&2
  exit 1
fi
bash "$top/deploy/install-deps.sh"

cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$build" -j "$(nproc)"
cd "$build"
ctest --output-on-failure --timeout 600
