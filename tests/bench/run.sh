#!/bin/bash
# run.sh - mtapy's performance benchmarks, not pass/fail (method: docs/design.md section 4).
# Compiles the small bench programs in a temp folder against the installed Debian packages
# (capnp, python3.11, exim4-dev headers), stages them with the build's daemon, worker and
# shim, runs everything unpinned and pinned (taskset -c 0), and prints markdown tables.
# Usage (as root):  MTAPY_BUILD=build [MTAPY_OLD_BUILD=DIR] bash tests/bench/run.sh [bench.py options]
#   MTAPY_BEFORE_SHIM: also measure the first call through this mtapy_exim.so (e.g. a build of
#   the commit before a change to the shim), against the same daemon in the same runs.
#   MTAPY_OLD_BUILD: also measure a build of the old design (before 98fae6c: the daemon forwards
#   every call), e.g. of cac056b, whose source folder (named in its CMakeCache.txt) must still
#   exist; bench.py stages its binaries and its source's pylib.
#   options: --calls N (20000) --warmup N (1000) --forks N (200) --reps N (3) --iso-pairs N (5)
#            --first-call-only: only the first-call tests (~1 min)
#            --syscalls: instead of timing, count syscalls and context switches per call (perf)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
build=${MTAPY_BUILD:-$top/build}
python=/usr/bin/python3

if [ "$(id -u)" != 0 ]; then
  echo "run.sh: run as root (the daemon starts workers as an unprivileged user)" >&2
  exit 1
fi
for f in workerd/mtapy-workerd workerd/mtapy-worker workerd/mtapyctl shim/mtapy_exim.so; do
  [ -e "$build/$f" ] || { echo "run.sh: $build/$f is missing: build first" >&2; exit 1; }
  if [ -n "${MTAPY_OLD_BUILD:-}" ] && [ ! -e "$MTAPY_OLD_BUILD/$f" ]; then
    echo "run.sh: $MTAPY_OLD_BUILD/$f is missing" >&2; exit 1
  fi
done
old=()
[ -z "${MTAPY_OLD_BUILD:-}" ] || old=(--old-build "$MTAPY_OLD_BUILD")
[ -z "${MTAPY_BEFORE_SHIM:-}" ] || old+=(--before-shim "$MTAPY_BEFORE_SHIM")

work=$(mktemp -d /tmp/mtapy-bench-bin.XXXXXX)
trap 'rm -rf "$work"' EXIT
capnp compile -oc++:"$work" --src-prefix="$here" "$here/bench.capnp"
# Bound at load, as Debian links exim4 (BIND_NOW): else a forked child's first call would also
# time the dynamic linker binding the bench program's own libc calls.
gcc -O2 -Wall -Wl,-z,now -o "$work/rawpp" "$here/rawpp.c"
gcc -O2 -Wall -Wl,-z,now -I/usr/include/exim4 -rdynamic -o "$work/shimbench" "$here/shimbench.c" \
  "$here/../tools/exim-standins.c" -ldl
# shellcheck disable=SC2046
g++ -O2 -std=c++17 -Wall -Wno-unused-function -I"$work" -I"$here" \
  $($python-config --embed --cflags | sed 's/-Wsign-compare//') \
  -o "$work/rpc1" "$here/rpc1.c++" "$work/bench.capnp.c++" \
  $(pkg-config --libs capnp-rpc) $($python-config --embed --ldflags)

$python "$here/bench.py" --build "$build" --bin "$work" "${old[@]}" "$@"
