#!/bin/bash
# install.sh - put mtapy in front of Courier as a global filter (as root; idempotent).
#   bash deploy/courier/install.sh [BUILD_DIR]
# Installs mtapy-courierfilter as Courier's filter "mtapy", the sample Courier pool's files
# under /etc/mtapy/courier/ (kept if present), and enables the filter. Append
# deploy/courier/pool.toml to /etc/mtapy/workerd.toml (and `mtapyctl reload`) first: until the
# pool answers, Courier gets 451 for every message, and keeps them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../../build}
filters=/usr/lib/courier/filters
[ -d "$filters" ] || { echo "install.sh: no $filters: is courier-mta installed?" >&2; exit 1; }

install -m 0755 "$build/shim/mtapy-courierfilter" "$filters/mtapy"
id mtapy-courier >/dev/null 2>&1 || adduser --system --group --no-create-home mtapy-courier
install -d -m 0755 /etc/mtapy/courier
for f in policy.py pythonfilter.conf spamsubject.py whitelist_relayclients.py; do
  [ -e "/etc/mtapy/courier/$f" ] || install -m 0644 "$here/$f" "/etc/mtapy/courier/$f"
done
# mtapy-courierfilter reads the daemon's socket_dir (and pool, timeout) from shim.conf.
[ -e /etc/mtapy/shim.conf ] || install -m 0644 "$here/../shim.conf" /etc/mtapy/shim.conf
if [ -L /etc/courier/filters/active/mtapy ]; then
  # filterctl start would fail; restarting filters here would let mail pass unfiltered while
  # they start, so that is left to the admin.
  echo "mtapy was already Courier's filter: it runs the new program after" \
       "'courierfilter stop; courierfilter start' (at a quiet time: mail arriving meanwhile" \
       "may pass unfiltered)"
else
  filterctl start mtapy
  echo "mtapy is Courier's filter; its log lines go to syslog (courierfilter:)"
fi
