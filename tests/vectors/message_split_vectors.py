"""message_split_vectors - read message-split.txt, the cases that pin Exim's header/body split.

DESCRIPTION  cases() returns every case of message-split.txt (its header comment gives the
             format) as a Case of bytes. pylib/tests/test_message_split.py checks
             mtapy.testing.split_message() against them, tests/exim/test_exim_message_split.py
             checks them against Exim 4.96 itself; workerd/ctl/message-split-test.c++ reads
             the same file in C++.
"""

import pathlib
import re
from dataclasses import dataclass, field
from typing import List

FILE = pathlib.Path(__file__).resolve().parent / "message-split.txt"

_ESCAPE = re.compile(rb"\\(x[0-9a-fA-F]{2}|[nrt\\])")
_SIMPLE = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"\\": b"\\"}


@dataclass
class Case:
    """One message and how Exim splits it."""

    name: str
    raw: bytes = b""
    headers: List[bytes] = field(default_factory=list)
    body: bytes = b""


def unescape(text: bytes) -> bytes:
    """The bytes a value stands for: C escapes \\n \\r \\t \\\\ and \\xHH."""
    return _ESCAPE.sub(lambda m: _SIMPLE.get(m[1]) or bytes([int(m[1][1:], 16)]), text)


def cases() -> List[Case]:
    """Every case in message-split.txt, in file order."""
    found: List[Case] = []
    for number, line in enumerate(FILE.read_bytes().split(b"\n"), 1):
        if not line or line.startswith(b"#"):
            continue
        keyword, _, value = line.partition(b" ")
        if keyword == b"case":
            found.append(Case(value.decode()))
        elif keyword == b"raw" and found:
            found[-1].raw = unescape(value)
        elif keyword == b"header" and found:
            found[-1].headers.append(unescape(value))
        elif keyword == b"body" and found:
            found[-1].body = unescape(value)
        else:
            raise ValueError(f"{FILE}:{number}: expected case, raw, header or body")
    return found
