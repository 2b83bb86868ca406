#!/bin/bash
# install-deps.sh - Debian 12 packages to build, test and run mtapy (idempotent).
set -euo pipefail
packages=(
  # build
  cmake g++ pkg-config capnproto libcapnp-dev libspdlog-dev doctest-dev python3-dev
  libtomlplusplus-dev exim4-dev liblmdb-dev
  # run and test: the real MTA, SMTP client, Python tests and the bundled filters' peers
  exim4-daemon-heavy swaks python3-pytest python3-spf spamassassin
  # shared state: Redis for several hosts (the embedded store is liblmdb, above); python3-lmdb
  # is a second LMDB client for a test
  python3-lmdb python3-redis redis-server
  # courier.config reads Courier's gdbm .dat files
  python3-gdbm
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
