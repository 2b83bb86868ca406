#!/bin/bash
# exim-run.sh - mtapy through a real Exim 4.96 daemon (docs/design.md §4), not pass/fail: policy
# styles in the RCPT ACL (floor, mtapy ${dlfunc} with and without LD_PRELOAD, mtapy's
# ${readsocket} listener, a Twisted ${readsocket} daemon, Exim's embedded Perl) and
# local_scan_path = mtapy_exim.so for 2 KB / 100 KB / 1 MB messages. Prints markdown tables.
# Needs exim4-daemon-heavy (Perl, ${dlfunc}) and, for the Twisted daemon, python3-twisted
# (without it a socketserver daemon stands in). Takes about 7 minutes with the defaults.
# Usage (as root):  MTAPY_BUILD=build bash tests/bench/exim-run.sh [exim_bench.py options]
#   options: --skip-rcpt --skip-scan --reps N (3) --seconds1 S (2.5) --seconds8 S (2.5) --warmup S (0.3)
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
done
/usr/sbin/exim4 -bV | grep -q 'Perl.*Expand_dlfunc' ||
  { echo "exim-run.sh: needs exim4-daemon-heavy (Perl and Expand_dlfunc)" >&2; exit 1; }
/usr/bin/python3 -c 'import twisted.internet' 2>/dev/null ||
  echo "exim-run.sh: python3-twisted missing; the readsocket daemon will be socketserver" >&2

exec /usr/bin/python3 "$here/exim_bench.py" --build "$build" "$@"
