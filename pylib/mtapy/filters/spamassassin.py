"""mtapy.filters.spamassassin - ask spamd about the message; reject spam, label the rest.

DESCRIPTION  Speaks spamd's own protocol (SPAMC/1.5, as spamc does) over TCP or a Unix socket,
             so no spamc process is spawned per message, as in elspy's spamassassin module:
               -> SYMBOLS SPAMC/1.5 / Content-length: N / [User: u] / blank line / message
               <- SPAMD/1.1 0 EX_OK / Spam: True ; 15.0 / 5.0 / blank line / GTUBE,...
             A message scoring at least REJECT_THRESHOLD (default: whenever spamd calls it
             spam) is rejected; any other gets X-Spam-Status (and X-Spam-Flag: YES when spamd
             called it spam), after removing such headers that came with the message.
CONFIG       SPAMD_HOST, SPAMD_PORT  TCP address of spamd (127.0.0.1, 783).
             SPAMD_SOCKET      a Unix socket path; when set, used instead of host and port.
             SPAMD_USER        the "User:" whose preferences spamd applies (None: spamd's).
             COMMAND           "SYMBOLS" (rule names in X-Spam-Status) or "CHECK".
             TIMEOUT           seconds for the whole exchange.
             MAX_SIZE          bigger messages are not scanned (spamc's default, 500 KiB).
             REJECT_THRESHOLD  score to reject at; None means spamd's own required score.
             ADD_HEADERS       add X-Spam-Status / X-Spam-Flag to accepted mail.
             ON_ERROR          spamd down, timed out or answering nonsense: "tempreject"
                               (451, the sender retries) or "accept" unscanned.
             MESSAGE           reject text; "{score}" and "{required}" expand.
             Or: local_scan = SpamAssassin(socket_path="/run/spamd.sock", reject_threshold=10).
DIAGNOSTICS  RejectSpam (550) for spam, TempRejectMessage (451) on errors by default; each
             error is logged once through elspy's logger.
"""

import os
import re
import socket
import time
from dataclasses import dataclass, field
from typing import Any, List, Optional

from elspy.util import LOG_MAIN, get_fdpos, log_write
from elspy.verdicts import RejectSpam, TempRejectMessage

SPAMD_HOST = "127.0.0.1"
SPAMD_PORT = 783
SPAMD_SOCKET: Optional[str] = None
SPAMD_USER: Optional[str] = None
COMMAND = "SYMBOLS"
TIMEOUT = 30.0
MAX_SIZE = 500 * 1024
REJECT_THRESHOLD: Optional[float] = None
ADD_HEADERS = True
ON_ERROR = "tempreject"
MESSAGE = "message rejected as spam (score {score:.1f}, required {required:.1f})"
TEMP_MESSAGE = "spam scanner unavailable, please try again later"

_STATUS = re.compile(rb"SPAMD/(\d+\.\d+) +(\d+) *(.*)")
_SPAM = re.compile(rb"Spam: *(True|False|Yes|No) *; *(-?[\d.]+) */ *(-?[\d.]+)", re.IGNORECASE)
_MAX_RESPONSE = 1 << 20


class SpamdError(Exception):
    """spamd could not be reached, timed out, or answered something we cannot read."""


@dataclass
class Report:
    """spamd's answer."""

    is_spam: bool
    score: float
    required: float
    symbols: List[str] = field(default_factory=list)

    def status(self) -> str:
        """The X-Spam-Status value, in SpamAssassin's own style."""
        text = f"{'Yes' if self.is_spam else 'No'}, score={self.score:.1f}"
        text += f" required={self.required:.1f}"
        return text + (f" tests={','.join(self.symbols)}" if self.symbols else "")


def parse_response(data: bytes) -> Report:
    """Parse spamd's reply to CHECK or SYMBOLS; SpamdError if it is not a good one."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = _STATUS.match(lines[0])
    if not status:
        raise SpamdError(f"spamd answered {lines[0][:80]!r}")
    if status.group(2) != b"0":
        raise SpamdError(
            f"spamd error {int(status.group(2))} {status.group(3).decode(errors='replace')}"
        )
    for line in lines[1:]:
        spam = _SPAM.match(line)
        if spam:
            symbols = [s.strip() for s in body.decode("ascii", "replace").split(",") if s.strip()]
            return Report(
                spam.group(1).lower() in (b"true", b"yes"),
                float(spam.group(2)),
                float(spam.group(3)),
                symbols,
            )
    raise SpamdError("spamd's answer has no Spam: line")


class SpamAssassin:
    """A configured spamd client and filter; None for a setting means "the module constant"."""

    def __init__(
        self,
        host: Optional[str] = None,
        port: Optional[int] = None,
        socket_path: Optional[str] = None,
        user: Optional[str] = None,
        command: Optional[str] = None,
        timeout: Optional[float] = None,
        max_size: Optional[int] = None,
        reject_threshold: Optional[float] = None,
        add_headers: Optional[bool] = None,
        on_error: Optional[str] = None,
        message: Optional[str] = None,
    ) -> None:
        self.host = SPAMD_HOST if host is None else host
        self.port = SPAMD_PORT if port is None else port
        self.socket_path = SPAMD_SOCKET if socket_path is None else socket_path
        self.user = SPAMD_USER if user is None else user
        self.command = COMMAND if command is None else command
        self.timeout = TIMEOUT if timeout is None else timeout
        self.max_size = MAX_SIZE if max_size is None else max_size
        self.reject_threshold = REJECT_THRESHOLD if reject_threshold is None else reject_threshold
        self.add_headers = ADD_HEADERS if add_headers is None else add_headers
        self.on_error = ON_ERROR if on_error is None else on_error
        self.message = MESSAGE if message is None else message
        if self.on_error not in ("tempreject", "accept"):
            raise ValueError(f'on_error must be "tempreject" or "accept", not {self.on_error!r}')
        if self.command not in ("CHECK", "SYMBOLS"):
            raise ValueError(f'command must be "CHECK" or "SYMBOLS", not {self.command!r}')

    def __call__(self, info: Any, headers: Any, fd: int) -> None:
        header_block = headers.as_bytes()
        size = len(header_block) + 1 + max(_body_size(fd), 0)
        if size > self.max_size:
            log_write(LOG_MAIN, f"spamassassin: {size} byte message not scanned (over max_size)")
            return
        try:
            report = self.query(header_block, fd)
        except (OSError, SpamdError) as err:
            self._error(err)
            return
        self.judge(report, headers)

    def judge(self, report: Report, headers: Any) -> None:
        """Reject `report`'s message, or label it in `headers`."""
        limit = self.reject_threshold
        if report.is_spam if limit is None else report.score >= limit:
            text = self.message.format(score=report.score, required=report.required)
            raise RejectSpam(text)
        if self.add_headers:
            headers.remove("X-Spam-Status")
            headers.remove("X-Spam-Flag")
            headers.add("X-Spam-Status", report.status())
            if report.is_spam:
                headers.add("X-Spam-Flag", "YES")

    def query(self, header_block: bytes, fd: int) -> Report:
        """Send the message to spamd and parse its report."""
        deadline = time.monotonic() + self.timeout
        body_size = max(_body_size(fd), 0)
        request = f"{self.command} SPAMC/1.5\r\n"
        request += f"Content-length: {len(header_block) + 1 + body_size}\r\n"
        if self.user:
            request += f"User: {self.user}\r\n"
        with self.connect(deadline) as sock:
            sock.sendall(request.encode("ascii") + b"\r\n" + header_block + b"\n")
            _send_body(sock, fd, body_size, deadline)
            sock.shutdown(socket.SHUT_WR)
            return parse_response(_receive(sock, deadline))

    def connect(self, deadline: float) -> socket.socket:
        """A connected socket to spamd, with the deadline's time left as its timeout."""
        if self.socket_path:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(_left(deadline))
                sock.connect(self.socket_path)
            except BaseException:
                sock.close()
                raise
            return sock
        return socket.create_connection((self.host, self.port), timeout=_left(deadline))

    def _error(self, err: Exception) -> None:
        """Log a failed scan; temporarily reject unless on_error is "accept"."""
        where = self.socket_path or f"{self.host}:{self.port}"
        what = "timed out" if isinstance(err, TimeoutError) else f"failed: {err}"
        log_write(LOG_MAIN, f"spamassassin: spamd at {where} {what}")
        if self.on_error == "tempreject":
            raise TempRejectMessage(TEMP_MESSAGE)


def _body_size(fd: int) -> int:
    """Bytes from the fd's offset to the end of the body file."""
    return os.fstat(fd).st_size - get_fdpos(fd)


def _left(deadline: float) -> float:
    """Seconds left before `deadline`; a timeout once it has passed."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("spamd did not answer in time")
    return left


def _send_body(sock: socket.socket, fd: int, size: int, deadline: float) -> None:
    """Send `size` body bytes from the fd's offset, leaving the offset unchanged."""
    pos = get_fdpos(fd)
    while size > 0:
        chunk = os.pread(fd, min(size, 1 << 16), pos)
        if not chunk:
            raise SpamdError("the body file is shorter than its size")
        sock.settimeout(_left(deadline))
        sock.sendall(chunk)
        pos += len(chunk)
        size -= len(chunk)


def _receive(sock: socket.socket, deadline: float) -> bytes:
    """Everything spamd sends until it closes the connection."""
    chunks: List[bytes] = []
    total = 0
    while True:
        sock.settimeout(_left(deadline))
        chunk = sock.recv(1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > _MAX_RESPONSE:
            raise SpamdError("spamd's answer is too long")


def local_scan(info: Any, headers: Any, fd: int) -> None:
    """Scan per this module's constants."""
    SpamAssassin()(info, headers, fd)
