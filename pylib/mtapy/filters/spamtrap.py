"""mtapy.filters.spamtrap - stop mail sent to spam trap addresses.

DESCRIPTION  A spam trap is an address no person uses: whatever reaches it is spam, and so are
             its other recipients' copies. The elspy talk's example rejects the whole message
             (ACTION = "reject", the default): the sender gets a 550 and no recipient gets it.
             ACTION = "remove" instead drops only the trap recipients and accepts the message
             for the rest; if only traps were addressed, no recipient is left and Exim
             discards the message silently (its local_scan "blackhole").
CONFIG       SPAMTRAPS  addresses ("trap@example.org") or whole domains ("@trap.example.org"),
                        compared ignoring case; default none.
             ACTION     "reject" or "remove".
             MESSAGE    the reject reply text.
             Or: local_scan = SpamtrapFilter(["trap@example.org"], action="remove").
DIAGNOSTICS  Raises RejectSpam (550). Logs one line per trap hit through elspy's logger.
"""

from typing import Any, Iterable, List, Optional

from elspy.util import LOG_REJECT, log_write
from elspy.verdicts import RejectSpam

SPAMTRAPS: List[str] = []
ACTION = "reject"
MESSAGE = "message rejected: spam trap address in recipients"


class SpamtrapFilter:
    """A configured trap check; None for a setting means "the module constant"."""

    def __init__(
        self,
        spamtraps: Optional[Iterable[str]] = None,
        action: Optional[str] = None,
        message: Optional[str] = None,
    ) -> None:
        traps = [t.lower() for t in (SPAMTRAPS if spamtraps is None else spamtraps)]
        self.addresses = {t for t in traps if not t.startswith("@")}
        self.domains = {t for t in traps if t.startswith("@")}
        self.action = ACTION if action is None else action
        if self.action not in ("reject", "remove"):
            raise ValueError(f'spamtrap action must be "reject" or "remove", not {self.action!r}')
        self.message = MESSAGE if message is None else message

    def is_trap(self, address: str) -> bool:
        """True if `address` is a trap address or in a trap domain."""
        address = address.lower()
        at = address.rfind("@")
        return address in self.addresses or (at >= 0 and address[at:] in self.domains)

    def __call__(self, info: Any, headers: Any, fd: int) -> None:
        traps = [r for r in info.recipients_list if self.is_trap(r)]
        if not traps:
            return
        log_write(LOG_REJECT, f"spam trap hit: {', '.join(traps)} from <{info.sender_address}>")
        if self.action == "reject":
            raise RejectSpam(self.message)
        info.recipients_list[:] = [r for r in info.recipients_list if not self.is_trap(r)]


def local_scan(info: Any, headers: Any, fd: int) -> None:
    """Check per this module's constants."""
    SpamtrapFilter()(info, headers, fd)
