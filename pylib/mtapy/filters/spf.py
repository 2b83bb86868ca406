"""mtapy.filters.spf - check the envelope sender's SPF record with Debian's python3-spf.

DESCRIPTION  The elspy talk's SPF example, on pyspf 2 (``import spf``; RFC 7208): the client
             address, MAIL FROM and HELO name go to spf.query(...).check(), as spf.check2()
             does, and the result picks an action from ACTIONS. Accepted mail gets a
             Received-SPF header (RFC 7208 section 9.1) built by pyspf. Local submissions
             (no client address), authenticated clients and SKIP_NETWORKS are not checked.
             The HELO name comes from info.sender_helo_name when the worker provides it; with
             a null sender (bounces) pyspf checks postmaster@<helo>.
CONFIG       ACTIONS         result -> "accept", "reject" (550) or "tempreject" (451); results
                             are pass, fail, softfail, neutral, none, temperror, permerror.
                             Default: fail rejects, temperror tempfails, the rest accept.
             ADD_HEADER      add Received-SPF to accepted mail (default True).
             RECEIVER        this host's name in Received-SPF (None: socket.gethostname()).
             TIMEOUT         seconds for all DNS lookups of one check (RFC 7208: 20).
             SKIP_NETWORKS   client networks never checked (default loopback).
             SKIP_AUTHENTICATED  do not check SMTP-authenticated clients (default True).
             MESSAGE, TEMP_MESSAGE  reply texts; "{result}", "{explanation}", "{sender}",
                             "{ip}" expand.
             Or: local_scan = SpfFilter(actions={"softfail": "reject"}).
DIAGNOSTICS  RejectMessage / TempRejectMessage per ACTIONS. DNS goes through pyspf's
             module-level spf.DNSLookup (tests replace it with a fake zone).
"""

import ipaddress
import socket
from typing import Any, Dict, Iterable, List, Optional

import spf as pyspf  # Debian's python3-spf, not this module

from elspy.util import LOG_MAIN, log_write
from elspy.verdicts import RejectMessage, TempRejectMessage

ACTIONS: Dict[str, str] = {"fail": "reject", "temperror": "tempreject"}
ADD_HEADER = True
RECEIVER: Optional[str] = None
TIMEOUT = 20.0
SKIP_NETWORKS: List[str] = ["127.0.0.0/8", "::1/128"]
SKIP_AUTHENTICATED = True
MESSAGE = "message rejected: SPF {result} for {sender} from {ip}: {explanation}"
TEMP_MESSAGE = "SPF check failed temporarily for {sender}: {explanation}"

RESULTS = ("pass", "fail", "softfail", "neutral", "none", "temperror", "permerror")


class SpfFilter:
    """A configured SPF check; None for a setting means "the module constant"."""

    def __init__(
        self,
        actions: Optional[Dict[str, str]] = None,
        add_header: Optional[bool] = None,
        receiver: Optional[str] = None,
        timeout: Optional[float] = None,
        skip_networks: Optional[Iterable[str]] = None,
        skip_authenticated: Optional[bool] = None,
    ) -> None:
        self.actions = {result: "accept" for result in RESULTS}
        self.actions.update(ACTIONS)
        self.actions.update(actions or {})
        for result, action in self.actions.items():
            if action not in ("accept", "reject", "tempreject"):
                raise ValueError(f"SPF action for {result!r} must be accept/reject/tempreject")
        self.add_header = ADD_HEADER if add_header is None else add_header
        self.receiver = RECEIVER if receiver is None else receiver
        self.timeout = TIMEOUT if timeout is None else timeout
        networks = SKIP_NETWORKS if skip_networks is None else skip_networks
        self.skip = [ipaddress.ip_network(n, strict=False) for n in networks]
        self.skip_authenticated = (
            SKIP_AUTHENTICATED if skip_authenticated is None else skip_authenticated
        )

    def applies(self, info: Any) -> bool:
        """False for local mail, authenticated clients and skipped networks."""
        if not info.sender_host_address:
            return False
        if self.skip_authenticated and info.sender_host_authenticated:
            return False
        try:
            address = ipaddress.ip_address(info.sender_host_address)
        except ValueError:
            return True  # let pyspf judge (permerror) what we cannot parse
        return not any(address in network for network in self.skip)

    def __call__(self, info: Any, headers: Any, fd: int) -> None:
        if not self.applies(info):
            return
        ip, sender = info.sender_host_address, info.sender_address
        helo = getattr(info, "sender_helo_name", "") or ""
        receiver = self.receiver or socket.gethostname()
        query = pyspf.query(i=ip, s=sender, h=helo, receiver=receiver, querytime=self.timeout)
        result, _code, explanation = query.check()
        action = self.actions.get(result, "accept")
        fields = dict(result=result, explanation=explanation, sender=sender or "<>", ip=ip)
        if action == "reject":
            raise RejectMessage(MESSAGE.format(**fields))
        if action == "tempreject":
            log_write(LOG_MAIN, f"spf: {result} for {sender or '<>'} from {ip}: {explanation}")
            raise TempRejectMessage(TEMP_MESSAGE.format(**fields))
        if self.add_header:
            headers.add("Received-SPF", query.get_header(result, receiver))


def local_scan(info: Any, headers: Any, fd: int) -> None:
    """Check per this module's constants."""
    SpfFilter()(info, headers, fd)
