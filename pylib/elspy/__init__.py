"""elspy - the local_scan() API of elspy (Exim + Python), as mtapy runs it out of process.

DESCRIPTION  A policy for an Exim pool defines ``local_scan(info, headers, fd)``:
               info     EximInfo: sender_address, recipients_list (mutable), sender_host_*,
                        interface_*, received_protocol, message_id, body_linecount, ...
               headers  HeaderList: get(), get_all(), get_decoded(), add(), remove(),
                        write(), iteration over (name, value)
               fd       int, readable, positioned at the start of the body (do not close it)
             Return normally to accept; raise AcceptMessage, RejectMessage, TempRejectMessage
             (or RejectSpam, RejectVirus, RejectVirusRelated) to decide otherwise. Any other
             exception is a policy failure: the pool's on_error action (default: 451).
TEXT         Header bytes and Exim strings become str by UTF-8 with surrogateescape: never an
             exception, and ``s.encode("utf-8", "surrogateescape")`` restores the bytes. See
             elspy/encoding.py for RFC 2047 decoding and encoding.
SEE ALSO     mtapy/local_scan.py, mtapy/testing.py (unit-test a policy without Exim),
             mtapy/filters/ (the elspy talk's examples, ported)
"""

from elspy.headers import HeaderList
from elspy.info import EximInfo
from elspy.util import (
    LOG_MAIN,
    LOG_PANIC,
    LOG_REJECT,
    get_fdpos,
    log_error,
    log_warning,
    log_write,
    message_tostring,
    open_body,
    parse_message,
    read_data,
    set_fdpos,
    transfer_data,
)
from elspy.verdicts import (
    LOCAL_SCAN_ACCEPT,
    LOCAL_SCAN_REJECT,
    LOCAL_SCAN_TEMPREJECT,
    AcceptMessage,
    MessageDisposition,
    RejectMessage,
    RejectSpam,
    RejectVirus,
    RejectVirusRelated,
    TempRejectMessage,
)

__version__ = "0.2-mtapy"

__all__ = [
    "AcceptMessage",
    "EximInfo",
    "HeaderList",
    "LOCAL_SCAN_ACCEPT",
    "LOCAL_SCAN_REJECT",
    "LOCAL_SCAN_TEMPREJECT",
    "LOG_MAIN",
    "LOG_PANIC",
    "LOG_REJECT",
    "MessageDisposition",
    "RejectMessage",
    "RejectSpam",
    "RejectVirus",
    "RejectVirusRelated",
    "TempRejectMessage",
    "get_fdpos",
    "log_error",
    "log_warning",
    "log_write",
    "message_tostring",
    "open_body",
    "parse_message",
    "read_data",
    "set_fdpos",
    "transfer_data",
]
