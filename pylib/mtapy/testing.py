"""mtapy.testing - run a local_scan() policy on a message in pytest, without Exim or workerd.

DESCRIPTION  scan() builds what Exim would hand over - the header lines, the envelope, an fd
             on a spool-like body file - and calls the same mtapy.local_scan.run() that the
             worker calls, so a policy behaves here as it will in production:

                 from mtapy.testing import scan
                 def test_spam_subject_is_rejected():
                     result = scan("policy.py", b"Subject: spam\\n\\nhi\\n", sender="a@b.example")
                     assert result.verdict == "reject"

             split_message() is Exim's header/body split; ``mtapyctl scan`` does the same in
             C++ (workerd/ctl/message-split.c++), and tests/vectors/message-split.txt, which
             states the rules, pins both: header lines keep their newlines (CRLF becomes LF,
             as Exim stores them); a blank line, or the first line that is neither a header nor
             a continuation, ends them; a leading mbox "From " line is dropped.
             The body file starts with the spool's "<id>-D" line and the fd is positioned
             after it, exactly as Exim's -D file: a policy that rewinds to offset 0 is wrong.
SEE ALSO     mtapy/local_scan.py, mtapy/policy_file.py, elspy/
"""

import os
import random
import re
import string
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

from mtapy.local_scan import VERDICT_NAMES, run
from mtapy.policy_file import import_policy

# Exim's test for a header line: a name of any bytes above space except ":" and DEL (8-bit
# bytes allowed, the name may even be empty), optional white space (C's isspace), then ":".
_HEADER = re.compile(rb"[^\x00-\x20\x7f:]*[ \t\n\v\f\r]*:")
_WHITESPACE = b" \t\n\v\f\r"
# Exim's default uucp_from_pattern: a leading mbox "From " line, which Exim drops.
_FROM_LINE = re.compile(
    rb"From\s+(\S+)\s+(?:[a-zA-Z]{3},?\s+)?"
    rb"(?:[a-zA-Z]{3}\s+\d?\d|\d?\d\s+[a-zA-Z]{3}\s+\d\d(?:\d\d)?)\s+\d\d?:\d\d?"
)

Message = Union[bytes, bytearray, str, os.PathLike]


def split_message(raw: bytes) -> Tuple[List[bytes], int]:
    """Exim's split: (header lines ending in b"\\n", offset of the body's first byte in raw)."""
    headers: List[bytes] = []
    pos = 0
    while pos < len(raw):
        line, end = _logical_line(raw, pos)
        if line == b"\n":
            return headers, end  # the blank line ends the headers
        if not headers and _FROM_LINE.match(line):
            pass  # an mbox separator line: Exim drops it
        elif line[:1] in _WHITESPACE or not _HEADER.match(line):
            return headers, pos  # not a header: the body starts here
        else:
            headers.append(_as_exim_stores(line))
        pos = end
    return headers, len(raw)


def _logical_line(raw: bytes, pos: int) -> Tuple[bytes, int]:
    """The line at pos joined with its continuation lines (a space or tab first), and its end."""
    line, end = b"", pos
    while True:
        start, end = end, _line_end(raw, end)
        line += _lf(raw[start:end])
        if line == b"\n" or raw[end : end + 1] not in (b" ", b"\t"):
            return line, end


def _line_end(raw: bytes, pos: int) -> int:
    """The offset just past the line starting at pos (its newline included)."""
    end = raw.find(b"\n", pos)
    return len(raw) if end < 0 else end + 1


def _lf(line: bytes) -> bytes:
    """A line as Exim stores it: CRLF -> LF, and a newline at the end."""
    if line.endswith(b"\r\n"):
        return line[:-2] + b"\n"
    return line if line.endswith(b"\n") else line + b"\n"


def _as_exim_stores(header: bytes) -> bytes:
    """NUL becomes "?"; white-space-only continuation lines at the end are dropped."""
    header = header.replace(b"\0", b"?")
    while True:
        shorter = header[:-1].rstrip(b" \t")
        if not shorter.endswith(b"\n"):
            return header
        header = shorter


def new_message_id() -> str:
    """A random id in Exim 4.96's format: 6-6-2 base-62 characters."""
    alphabet = string.digits + string.ascii_letters
    parts = ("".join(random.choices(alphabet, k=n)) for n in (6, 6, 2))
    return "-".join(parts)


def load_policy(policy: Union[str, os.PathLike, ModuleType, Any]) -> Any:
    """A policy from a file path (imported as "__exim__", as a worker does) or as given."""
    if not isinstance(policy, (str, os.PathLike)):
        return policy
    return import_policy(policy)


def read_message(message: Any) -> bytes:
    """The raw message: bytes as given, a str or path names a file, a Message is rendered."""
    if isinstance(message, (bytes, bytearray, memoryview)):
        return bytes(message)
    if isinstance(message, (str, os.PathLike)):
        return Path(message).read_bytes()
    if hasattr(message, "as_bytes"):
        return message.as_bytes()
    raise TypeError(f"cannot make a message from {type(message).__name__}")


@dataclass
class Result:
    """What a scan decided, in policy-author terms (str, not the worker's bytes)."""

    verdict: str  # "accept", "reject", "tempreject" or "failure"
    code: int  # mtapy.local_scan.ACCEPT ... FAILURE
    message: str
    added_recipients: List[str]
    removed_recipients: List[str]
    added_headers: List[str]
    removed_headers: List[str]
    traceback: str
    recipients: List[str] = field(default_factory=list)  # after the changes

    @property
    def accepted(self) -> bool:
        """True for accept (including AcceptMessage)."""
        return self.verdict == "accept"

    @property
    def smtp_code(self) -> int:
        """What Exim answers: 250, 550, or 451 (tempreject, and failure by default)."""
        return {"accept": 250, "reject": 550}.get(self.verdict, 451)

    def header(self, name: str) -> Optional[str]:
        """The value of the first added header called `name`, or None."""
        for line in self.added_headers:
            key, _, value = line.partition(":")
            if key.lower() == name.lower():
                return value.strip()
        return None

    def __str__(self) -> str:
        text = f"{self.verdict} ({self.smtp_code}) {self.message!r}"
        return text + ("\n" + self.traceback if self.traceback else "")


def _text(items: Iterable[bytes]) -> List[str]:
    return [item.decode("utf-8", "surrogateescape") for item in items]


def write_spool_body(body: bytes, message_id: str) -> int:
    """An unlinked temp file laid out like Exim's -D file; its fd, positioned at the body."""
    fd, path = tempfile.mkstemp(prefix="mtapy-spool-")
    try:
        os.unlink(path)
        first_line = f"{message_id}-D\n".encode()
        for data in (first_line, body):
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        os.lseek(fd, len(first_line), os.SEEK_SET)
        return fd
    except BaseException:
        os.close(fd)
        raise


def envelope(
    body: bytes,
    sender: str,
    recipients: Iterable[str],
    host: str,
    **fields: Any,
) -> Dict[str, Any]:
    """The info dict as the worker receives it from C++ (bytes and ints)."""
    info: Dict[str, Any] = {
        "sender_address": sender,
        "recipients": list(recipients),
        "sender_host_address": host,
        "sender_host_name": "",
        "sender_host_port": 0 if not host else 49152,
        "sender_host_authenticated": "",
        "sender_helo_name": "",
        "interface_address": "" if not host else "192.0.2.25",
        "interface_port": 0 if not host else 25,
        "received_protocol": "esmtp" if host else "local",
        "message_id": new_message_id(),
        "body_linecount": body.count(b"\n") + (1 if body and not body.endswith(b"\n") else 0),
        "body_zerocount": body.count(b"\0"),
    }
    info.update(fields)
    info["recipients"] = [_bytes(address) for address in info["recipients"]]
    return {key: _bytes(value) for key, value in info.items()}


def _bytes(value: Any) -> Any:
    """str -> bytes (UTF-8, surrogateescape), as C++ hands strings over; others as given."""
    return value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value


def scan(
    policy: Any,
    message: Message,
    sender: str = "sender@example.org",
    recipients: Iterable[str] = ("recipient@example.net",),
    host: str = "192.0.2.1",
    **fields: Any,
) -> Result:
    """Run `policy` (module, object with local_scan, callable, or file path) on `message`.

    `message` is the raw message as bytes, or a path (str or PathLike) to an .eml file.
    host="" means locally submitted mail. Keyword `fields` set any other info field by its
    elspy name, e.g. sender_helo_name="mx.example.org", sender_host_authenticated="plain".
    """
    raw = read_message(message)
    headers, offset = split_message(raw)
    body = raw[offset:].replace(b"\r\n", b"\n")
    info = envelope(body, sender, recipients, host, **fields)
    fd = write_spool_body(body, info["message_id"].decode())
    try:
        outcome = run(load_policy(policy), info, headers, fd)
    finally:
        try:
            os.close(fd)
        except OSError:
            message = "the policy closed the body fd; Exim closes it, not the policy"
            raise AssertionError(message) from None
    code, text, add_r, rm_r, add_h, rm_h, trace = outcome
    final = _text(info["recipients"])
    for address in _text(rm_r):
        final.remove(address)
    final += _text(add_r)
    return Result(
        VERDICT_NAMES[code],
        code,
        text.decode("utf-8", "surrogateescape"),
        _text(add_r),
        _text(rm_r),
        _text(add_h),
        _text(rm_h),
        trace,
        final,
    )
