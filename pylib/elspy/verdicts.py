"""elspy.verdicts - the exceptions a local_scan() raises to decide a message's fate.

DESCRIPTION  Returning normally from local_scan() accepts the message. Raising one of these
             ends the scan with that verdict; each takes an optional message, which Exim sends
             as the SMTP reply text (rejects) or stores as $local_scan_data (AcceptMessage).
             Names and hierarchy are elspy's (Greg Ward, 2002-2005), so existing policies
             import them unchanged: ``from elspy import RejectMessage``.
SEE ALSO     mtapy/local_scan.py (maps them to verdict codes), elspy/__init__.py
"""

from typing import Optional, Union

# Exim's local_scan.h return codes; elspy exposed them as each class's `disposition`.
LOCAL_SCAN_ACCEPT = 0
LOCAL_SCAN_ACCEPT_FREEZE = 1
LOCAL_SCAN_ACCEPT_QUEUE = 2
LOCAL_SCAN_REJECT = 3
LOCAL_SCAN_REJECT_NOLOGHDR = 4
LOCAL_SCAN_TEMPREJECT = 5
LOCAL_SCAN_TEMPREJECT_NOLOGHDR = 6

Text = Union[str, bytes, None]


class MessageDisposition(Exception):
    """Base of all verdicts; raise a subclass, not this."""

    disposition = LOCAL_SCAN_ACCEPT

    def __init__(self, msg: Text = None) -> None:
        super().__init__(*(() if msg is None else (msg,)))
        self.msg = msg

    @property
    def message(self) -> Text:
        """The text given when raising, or None (elspy called it `msg`)."""
        return self.msg

    def __str__(self) -> str:
        if self.msg is None:
            return ""
        if isinstance(self.msg, bytes):
            return self.msg.decode("utf-8", "surrogateescape")
        return str(self.msg)


class AcceptMessage(MessageDisposition):
    """Accept now, skipping the rest of local_scan(); the text becomes $local_scan_data."""

    disposition = LOCAL_SCAN_ACCEPT


class RejectMessage(MessageDisposition):
    """Reject permanently: SMTP 550 with the given text."""

    disposition = LOCAL_SCAN_REJECT


class TempRejectMessage(MessageDisposition):
    """Reject temporarily: SMTP 451 with the given text; the sender retries later."""

    disposition = LOCAL_SCAN_TEMPREJECT


class RejectSpam(RejectMessage):
    """Reject because the message is (or looks like) spam."""


class RejectVirus(RejectMessage):
    """Reject because the message carries (or looks like it carries) a virus."""


class RejectVirusRelated(RejectMessage):
    """Reject virus-related junk: defanged viruses, misguided "you sent a virus" notices."""


def verdict_text(verdict: MessageDisposition) -> Optional[bytes]:
    """The verdict's message as bytes (UTF-8, surrogateescape), or None if it has none."""
    msg = verdict.msg
    if msg is None:
        return None
    if isinstance(msg, (bytes, bytearray, memoryview)):
        return bytes(msg)
    try:
        return str(msg).encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that no decoding produced
        return str(msg).encode("utf-8", "replace")


__all__ = [
    "MessageDisposition",
    "AcceptMessage",
    "RejectMessage",
    "TempRejectMessage",
    "RejectSpam",
    "RejectVirus",
    "RejectVirusRelated",
    "verdict_text",
    "LOCAL_SCAN_ACCEPT",
    "LOCAL_SCAN_ACCEPT_FREEZE",
    "LOCAL_SCAN_ACCEPT_QUEUE",
    "LOCAL_SCAN_REJECT",
    "LOCAL_SCAN_REJECT_NOLOGHDR",
    "LOCAL_SCAN_TEMPREJECT",
    "LOCAL_SCAN_TEMPREJECT_NOLOGHDR",
]
