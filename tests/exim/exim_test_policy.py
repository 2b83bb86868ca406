"""exim_test_policy - the Python side of every decision tests/exim's Exim configs ask for.

DESCRIPTION  Loaded by mtapy-workerd as the "acl" pool's policy (module name __exim__). Each
             function answers one ACL question; the tests know the answers from the rules below.
"""

BLOCKED_CLIENTS = {"127.0.0.66", "192.0.2.66"}


def client_blocked(ip):
    """Connect ACL: refuse these client addresses."""
    return ip in BLOCKED_CLIENTS


def sender_blocked(sender):
    """MAIL ACL: refuse every sender at blocked.example."""
    return sender.lower().endswith("@blocked.example")


def recipient_blocked(local_part):
    """RCPT ACL: refuse spamtrap* recipients; "boom" raises, to show a policy error."""
    if local_part == "boom":
        return 1 / 0
    return local_part.startswith("spamtrap")


def tri(word):
    """True for "true", False for "false", None (Exim: forced failure) for anything else."""
    return {"true": True, "false": False}.get(word)


def hexargs(*args):
    """The exact bytes of each argument, in hex ("-" for an empty one), space separated."""
    return " ".join(a.encode("utf-8", "surrogateescape").hex() or "-" for a in args)


def count(*args):
    """How many arguments arrived, and the last one."""
    return f"{len(args)} {args[-1] if args else ''}"


def huge_error():
    """An exception whose text is longer than Exim's 32 KiB string_sprintf() limit."""
    raise ValueError("x" * 40000)
