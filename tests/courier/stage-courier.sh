#!/bin/bash
# stage-courier.sh - Debian's Courier 1.0.16 unpacked into a tree, for courier_harness.py.
#
# Courier cannot be installed beside Exim (courier-mta conflicts with mail-transport-agent),
# so its .debs are fetched with `apt-get download` and unpacked with `dpkg -x`; nothing is
# installed and no maintainer script runs. The harness lays the tree over / in a private
# mount namespace. Idempotent: a second run only compares file names (a few ms).
# Usage: bash tests/courier/stage-courier.sh [CACHE]   (default /var/cache/mtapy-tests/courier)
# Prints the tree's path (CACHE/root) on stdout.
set -euo pipefail
cache=${1:-${MTAPY_COURIER_CACHE:-/var/cache/mtapy-tests/courier}}
# libidn12 is not on a stock host and courier-base links it; the rest is Courier itself and
# the libraries its packages depend on that a build machine does not already have.
packages=(courier-base courier-mta courier-authlib courier-authdaemon courier-authlib-userdb
          libcourier-unicode4 libgamin0 libltdl7 libidn12)

mkdir -p "$cache/debs"
exec 9>"$cache/lock"
flock 9   # two test runs at once must not unpack into the same tree

have_all() {
  local p
  for p in "${packages[@]}"; do
    compgen -G "$cache/debs/${p}_*.deb" >/dev/null || return 1
  done
}

if ! have_all; then
  # _apt must be able to write the folder, or apt-get warns and downloads unsandboxed.
  chown _apt "$cache/debs" 2>/dev/null || true
  if ! (cd "$cache/debs" && apt-get download -q "${packages[@]}" >/dev/null 2>&1); then
    # A fresh machine may have no package lists yet.
    apt-get update -qq
    (cd "$cache/debs" && apt-get download -q "${packages[@]}" >/dev/null) || {
      echo "stage-courier.sh: apt-get download ${packages[*]} failed; the tests need Debian's" \
           "package mirror once (later runs use $cache/debs)" >&2
      exit 1
    }
  fi
fi

# The stamp names the .debs the tree was made from; a new package version remakes it.
stamp=$(cd "$cache/debs" && ls ./*.deb | sort)
if [ ! -f "$cache/root/.staged" ] || [ "$(cat "$cache/root/.staged")" != "$stamp" ]; then
  rm -rf "$cache/root.new"
  mkdir "$cache/root.new"
  for deb in "$cache"/debs/*.deb; do
    dpkg -x "$deb" "$cache/root.new"
  done
  # The packages' lib/ holds only systemd units. A real lib/ in the upper layer would hide
  # the host's /lib -> usr/lib symlink and no binary could find its loader.
  rm -rf "$cache/root.new/lib"
  # Links that update-alternatives would make at install time.
  ln -sfn makedat.courier "$cache/root.new/usr/bin/makedat"
  ln -sfn maildirmake.courier "$cache/root.new/usr/bin/maildirmake"
  echo "$stamp" > "$cache/root.new/.staged"
  rm -rf "$cache/root"
  mv "$cache/root.new" "$cache/root"
fi
echo "$cache/root"
