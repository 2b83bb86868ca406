#!/bin/bash
# exim-run.sh - mtapy through a real Exim 4.96 daemon (docs/design.md §4), not pass/fail: policy
# styles in the RCPT ACL (floor, mtapy ${dlfunc} with and without LD_PRELOAD, mtapy's
# ${readsocket} listener, a Twisted ${readsocket} daemon, Exim's embedded Perl) and
# local_scan_path = mtapy_exim.so for 2 KB / 100 KB / 1 MB messages; the ${readsocket} listeners
# also driven alone by a C client (rawpp lines). Prints markdown tables.
# Needs exim4-daemon-heavy (Perl, ${dlfunc}); installs python3-twisted for the seed's daemon.
# Takes about 8 minutes with the defaults.
# Usage (as root):  MTAPY_BUILD=build [MTAPY_OLD_BUILD=DIR] bash tests/bench/exim-run.sh [options]
#   MTAPY_BEFORE_SHIM: also measure the preload style through this mtapy_exim.so (e.g. a build
#   of the commit before a change to the shim), against the same daemon: style preload_before.
#   MTAPY_OLD_BUILD: also measure a build of the old design (before 98fae6c: the daemon forwards
#   every call), e.g. of cac056b, whose source folder (named in its CMakeCache.txt) must still
#   exist: styles old_preload and old_rs, and its listener alone.
#   options: --skip-rcpt --skip-scan --skip-alone --alone-calls N (5000) --alone-warmup N (200)
#            --reps N (3) --seconds1 S (2.5) --seconds8 S (2.5) --warmup S (0.3)
#            --scan-sessions N (8 rounds) --per-session N (20) --stage-root DIR (/dev/shm) --json FILE
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
build=${MTAPY_BUILD:-$top/build}

if [ "$(id -u)" != 0 ]; then
  echo "exim-run.sh: run as root (private Exim daemons, workers as an unprivileged user)" >&2
  exit 1
fi
for f in workerd/mtapy-workerd workerd/mtapy-worker workerd/mtapyctl shim/mtapy_exim.so; do
  [ -e "$build/$f" ] || { echo "exim-run.sh: $build/$f is missing: build first" >&2; exit 1; }
  if [ -n "${MTAPY_OLD_BUILD:-}" ] && [ ! -e "$MTAPY_OLD_BUILD/$f" ]; then
    echo "exim-run.sh: $MTAPY_OLD_BUILD/$f is missing" >&2; exit 1
  fi
done
old=()
[ -z "${MTAPY_OLD_BUILD:-}" ] || old=(--old-build "$MTAPY_OLD_BUILD")
[ -z "${MTAPY_BEFORE_SHIM:-}" ] || old+=(--before-shim "$MTAPY_BEFORE_SHIM")
/usr/sbin/exim4 -bV | grep -q 'Perl.*Expand_dlfunc' ||
  { echo "exim-run.sh: needs exim4-daemon-heavy (Perl and Expand_dlfunc)" >&2; exit 1; }
# The seed's ${readsocket} daemon is Twisted: the peer to measure against (idempotent).
dpkg-query -W -f='${Status}' python3-twisted 2>/dev/null | grep -q "ok installed" ||
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-twisted

work=$(mktemp -d /tmp/mtapy-bench-bin.XXXXXX)
trap 'rm -rf "$work"' EXIT
gcc -O2 -Wall -o "$work/rawpp" "$here/rawpp.c"
/usr/bin/python3 "$here/exim_bench.py" --build "$build" --bin "$work" "${old[@]}" "$@"
