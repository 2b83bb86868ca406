"""elspy.util - body access, message parsing and logging helpers for local_scan() authors.

DESCRIPTION  elspy kept these in elspy.util and re-exported them from elspy; filters written
             for it import from either place (``from elspy.util import parse_message``).
             The body fd is shared by every filter of a chain, so the readers here leave its
             offset where they found it (pread, or seek back).
             Logging goes to the Python logger "elspy"; the worker routes it to the daemon's
             log with the pool and message id.
SEE ALSO     elspy/__init__.py
"""

import email.message
import email.parser
import email.policy
import logging
import os
from typing import IO, Any, List

from elspy.verdicts import (  # elspy.util re-exported the verdicts; old filters import them here
    AcceptMessage,
    MessageDisposition,
    RejectMessage,
    RejectSpam,
    RejectVirus,
    RejectVirusRelated,
    TempRejectMessage,
)

# Exim's log_write() selectors (local_scan.h).
LOG_MAIN = 1
LOG_PANIC = 2
LOG_REJECT = 16

logger = logging.getLogger("elspy")
_LEVELS = {LOG_PANIC: logging.ERROR, LOG_REJECT: logging.WARNING}


def log_write(which: int, msg: str) -> None:
    """Log one line; LOG_PANIC as an error, LOG_REJECT as a warning, LOG_MAIN as info."""
    level = max((lvl for bit, lvl in _LEVELS.items() if which & bit), default=logging.INFO)
    logger.log(level, "%s", msg)


def log_error(msg: str) -> None:
    """elspy's log_error: "error: msg" to the main log."""
    log_write(LOG_MAIN, "error: " + msg)


def log_warning(msg: str) -> None:
    """elspy's log_warning: "warning: msg" to the main log."""
    log_write(LOG_MAIN, "warning: " + msg)


def get_fdpos(fd: int) -> int:
    """The current offset of file descriptor `fd`."""
    return os.lseek(fd, 0, os.SEEK_CUR)


def set_fdpos(fd: int, pos: int) -> None:
    """Set the offset of file descriptor `fd`."""
    os.lseek(fd, pos, os.SEEK_SET)


def read_data(fd: int) -> bytes:
    """The rest of the body from the fd's offset, leaving the offset unchanged."""
    pos = get_fdpos(fd)
    size = max(os.fstat(fd).st_size - pos, 0)
    chunks: List[bytes] = []
    while True:
        chunk = os.pread(fd, max(size, 1 << 16), pos)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        pos += len(chunk)
        size = 0


def transfer_data(in_fd: int, out_fd: int) -> None:
    """Copy the rest of in_fd (offset left unchanged) to out_fd, then fsync out_fd."""
    pos = get_fdpos(in_fd)
    while True:
        chunk = os.pread(in_fd, 1 << 16, pos)
        if not chunk:
            break
        pos += len(chunk)
        view = memoryview(chunk)
        while view:
            view = view[os.write(out_fd, view) :]
    os.fsync(out_fd)


def open_body(fd: int) -> IO[bytes]:
    """A binary file on the body fd; closing it leaves the fd open. Reading moves the offset."""
    return os.fdopen(fd, "rb", closefd=False)


def message_tostring(headers: Any, fd: int) -> bytes:
    """The whole message as bytes: headers, blank line, body."""
    return headers.as_bytes() + b"\n" + read_data(fd)


def parse_message(headers: Any, fd: int, onerror: str = "raise") -> email.message.Message:
    """Parse headers + body with the email package (compat32, as elspy did).

    The parser records broken MIME as defects instead of raising; if it fails anyway,
    `onerror` decides: "raise", "accept", "tempreject" or "reject".
    """
    data = message_tostring(headers, fd)
    try:
        return email.parser.BytesParser(policy=email.policy.compat32).parsebytes(data)
    except Exception as err:
        error = f"unable to parse message ({err})"
        if onerror == "accept":
            raise AcceptMessage(error + ", forcing acceptance") from err
        if onerror == "tempreject":
            raise TempRejectMessage(error) from err
        if onerror == "reject":
            raise RejectMessage(error) from err
        raise


__all__ = [
    "AcceptMessage",
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
