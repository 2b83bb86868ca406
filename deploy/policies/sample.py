"""sample - mtapy's quick-start policy: Exim asks, Python answers.

DESCRIPTION  Every function here answers one question an Exim ACL can ask with
             ${dlfunc{/usr/lib/mtapy/mtapy_exim.so}{python}{FUNCTION}{ARG}...}, plus
             local_scan() for whole messages. The rules are deliberately obvious, so a first
             test shows who is refused:
               reject_sender("someone@example.invalid")  -> True   (any sender @example.invalid)
               reject_recipient("spamtrap-42")           -> True   (local parts spamtrap*)
               reject_client("192.0.2.7")                -> True   (a country geoip.py blocks)
               local_scan: a Subject containing "cheap pills" is rejected (550)
               everything else                           -> False / accepted
             True and False reach Exim as "true" and "false", which an ACL condition accepts.

EXIM         deny  condition = ${dlfunc{MTAPY_SO}{python}{reject_sender}{$sender_address}}
                   message   = sender refused by policy
             deny  condition = ${dlfunc{MTAPY_SO}{python}{reject_recipient}{$local_part}}
                   message   = recipient refused by policy
             (deploy/exim/ has complete snippets.) Try one call without sending mail:
               exim4 -be '${dlfunc{/usr/lib/mtapy/mtapy_exim.so}{python}{hello}{admin}}'

CLI          python3 sample.py ADDRESS...   says what the rules do with each ADDRESS as sender
             and as recipient, without Exim or mtapy.
"""

import sys

try:  # geoip.py ships beside this file; without it nobody is refused by country
    import geoip
except ImportError:
    geoip = None

REJECTED_SENDER_DOMAINS = {"example.invalid"}
REJECTED_RECIPIENT_PREFIX = "spamtrap"
REJECTED_SUBJECT_WORDS = ("cheap pills",)


def hello(name="world"):
    """A first call to check the wiring: Exim -> shim -> mtapy-workerd -> this worker."""
    return f"hello {name}, from mtapy ({__name__})"


def reject_sender(sender):
    """True for an envelope sender in REJECTED_SENDER_DOMAINS (the empty bounce sender passes)."""
    return sender.rpartition("@")[2].lower() in REJECTED_SENDER_DOMAINS


def reject_recipient(local_part):
    """True for a recipient local part starting with REJECTED_RECIPIENT_PREFIX."""
    return local_part.lower().startswith(REJECTED_RECIPIENT_PREFIX)


def reject_client(ip):
    """True for a client address in a country geoip.py blocks (its BLOCKED_COUNTRIES)."""
    return bool(geoip and geoip.blocked(ip))


def country(ip):
    """The client's country code, or "" when unknown.

    "" rather than None: None is a forced failure in Exim, which skips an add_header but makes
    a `deny condition =` fire.
    """
    return (geoip and geoip.country(ip)) or ""


def local_scan(info, headers, fd):
    """The whole message (local_scan_path = mtapy_exim.so): refuse some subjects, tag the rest."""
    from elspy import RejectMessage  # mtapy's pylib; imported here so the CLI needs no mtapy

    subject = headers.get_decoded("Subject", "").lower()
    if any(words in subject for words in REJECTED_SUBJECT_WORDS):
        raise RejectMessage("message refused by policy (subject)")
    headers.add("X-Mtapy-Sample", f"scanned for {len(info.recipients_list)} recipient(s)")


if __name__ == "__main__":
    for address in sys.argv[1:] or ["someone@example.invalid", "spamtrap@example.org"]:
        local_part = address.partition("@")[0]
        print(
            f"{address}: as sender {'rejected' if reject_sender(address) else 'accepted'},"
            f" as recipient {'rejected' if reject_recipient(local_part) else 'accepted'}"
        )
