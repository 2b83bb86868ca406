"""A pool's policy that is the seed's sender rate limiter (see README.md "Rate limiting").

workerd.toml:   [pools.ratelimit] clients = ["Debian-exim"], user = "mtapy",
                policy = "/etc/mtapy/ratelimit/policy.py", readsocket = "/run/mtapy/sender.sock"
Exim:           deploy/ratelimit/acl_check_rcpt (either style)
"""

from mtapy.filters import ratelimit

ratelimit.read_conf("/etc/mtapy/ratelimit/sender_warn.conf")
# The pool's user must be able to read it for the alert's top subjects (e.g. group adm).
ratelimit.EXIM_LOG = "/var/log/exim4/mainlog"

over = ratelimit.over                # ${dlfunc}: True past the limit
sender_warn = ratelimit.sender_warn  # ${readsocket}: "yes" past the limit, as the seed said


def self_test():
    # A reload that cannot reach the shared state fails and keeps the running generation.
    from mtapy import state

    state.get("self-test")
