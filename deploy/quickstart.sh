#!/bin/bash
# quickstart.sh - set up mtapy on this Debian 12 machine and watch Python decide about mail.
#   Installs packages, builds and installs mtapy under /usr, creates the "mtapy" user, writes
#   /etc/mtapy/ from deploy/ (never overwriting), starts mtapy-workerd and a private Exim on
#   127.0.0.1:2525, then sends mail through it with swaks. Run as root; safe to run again.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
qs=/var/lib/mtapy-quickstart

[ "$(id -u)" = 0 ] || { echo "quickstart.sh: run as root" >&2; exit 1; }
say() { printf '\n== %s\n' "$*"; }

say "Installing Debian packages and building mtapy"
bash "$top/deploy/install-deps.sh"
cmake -S "$top" -B "$top/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr >/dev/null
cmake --build "$top/build" -j "$(nproc)"
cmake --install "$top/build" >/dev/null

say "Configuring /etc/mtapy"
id mtapy >/dev/null 2>&1 || adduser --system --group --no-create-home --quiet mtapy
install -d -m 0755 /etc/mtapy
install_once() { [ -e "$2" ] || install -m 0644 "$1" "$2"; }
install_once "$top/deploy/workerd.toml" /etc/mtapy/workerd.toml
chmod 0600 /etc/mtapy/workerd.toml  # root's alone: it may hold Redis passwords
install_once "$top/deploy/shim.conf" /etc/mtapy/shim.conf
install_once "$top/deploy/policies/sample.py" /etc/mtapy/policy.py
install -m 0644 "$top/deploy/quickstart/exim.conf" /etc/mtapy/exim-quickstart.conf
mtapy-workerd --check-config

say "Starting mtapy-workerd"
if [ -d /run/systemd/system ]; then
  install -m 0644 "$top/deploy/mtapy-workerd.service" /etc/systemd/system/
  systemctl daemon-reload
  systemctl restart mtapy-workerd
else
  # No systemd (a container): run it in the background, logging to a file.
  pkill -x mtapy-workerd 2>/dev/null && sleep 1 || true
  install -d -m 0755 /run/mtapy
  nohup mtapy-workerd >>/var/log/mtapy-workerd.log 2>&1 &
fi
for _ in $(seq 50); do mtapyctl status 2>/dev/null | grep -q " idle," && break; sleep 0.1; done
mtapyctl status

say "Calling the policy directly (no MTA involved)"
echo "\$ mtapyctl call exim reject_recipient spamtrap"
mtapyctl call exim reject_recipient spamtrap

say "Starting a private Exim on 127.0.0.1:2525"
install -d -o Debian-exim -g Debian-exim -m 0750 "$qs" "$qs/spool" "$qs/log" "$qs/mail"
[ -f "$qs/exim.pid" ] && kill "$(cat "$qs/exim.pid")" 2>/dev/null && sleep 0.5 || true
exim4 -C /etc/mtapy/exim-quickstart.conf -oP "$qs/exim.pid" -bd
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/2525) 2>/dev/null && break; sleep 0.05; done

send() {
  echo "\$ swaks --server 127.0.0.1:2525 $*"
  swaks --server 127.0.0.1:2525 --helo client.test --hide-informational --suppress-data "$@" \
    | grep -E '^<[-*~]+ +[245][0-9][0-9] ' | grep -v ' 221 ' | tail -1 || true
}
say "Mail accepted by Python"
send --from alice@client.test --to bob@mtapy.test --header "Subject: hello"
say "Mail rejected by Python (RCPT: a spamtrap recipient)"
send --from alice@client.test --to spamtrap@mtapy.test
say "Mail rejected by Python (MAIL: a refused sender domain)"
send --from mallory@example.invalid --to bob@mtapy.test
say "Mail rejected by Python (local_scan: the subject)"
send --from alice@client.test --to bob@mtapy.test --header "Subject: buy cheap pills"

say "Done"
cat <<MSG
Delivered mail: $qs/mail/inbox   Exim's log: $qs/log/mainlog
mtapy's log: journalctl -u mtapy-workerd, or /var/log/mtapy-workerd.log without systemd
Edit /etc/mtapy/policy.py, then run mtapyctl reload: the change is live without a failed call.
Stop the demo Exim: kill \$(cat $qs/exim.pid)
MSG
