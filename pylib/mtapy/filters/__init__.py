"""mtapy.filters - ready-made local_scan() filters: the elspy talk's examples, in Python 3.

DESCRIPTION  Each module defines ``local_scan(info, headers, fd)``, configured by its
             upper-case module constants (read on every call), and a class taking the same
             settings as keyword arguments, for a second, differently configured instance:
               subject       reject a Subject (RFC 2047-decoded) matching a pattern or charset
               spamtrap      reject (or drop the recipient of) mail sent to spam trap addresses
               attachments   reject executable attachments, also inside zip files
               spamassassin  ask spamd (SPAMC/1.5): reject spam, add X-Spam-Status otherwise
               spf           check the sender with Debian's python3-spf; reject SPF "fail"
             chain() runs several in one policy:

                 from mtapy.filters import chain, spamtrap, subject
                 spamtrap.SPAMTRAPS = ["trap@example.org"]
                 subject.PATTERNS = [r"^spam\\b"]
                 local_scan = chain(spamtrap, subject)
SEE ALSO     elspy/, mtapy/testing.py
"""

from typing import Any, Callable

from elspy.util import get_fdpos, set_fdpos

Scanner = Callable[[Any, Any, int], Any]


def chain(*scanners: Any) -> Scanner:
    """One local_scan running `scanners` (modules or callables) in order; a verdict ends it.

    Each scanner gets the body fd at the body's start, whatever the previous one read.
    """
    steps = [getattr(scanner, "local_scan", scanner) for scanner in scanners]

    def local_scan(info: Any, headers: Any, fd: int) -> None:
        start = get_fdpos(fd)
        try:
            for step in steps:
                set_fdpos(fd, start)
                step(info, headers, fd)
        finally:
            set_fdpos(fd, start)

    return local_scan


__all__ = ["chain"]
