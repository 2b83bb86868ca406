"""local_scan_policy - the Python side of tests/exim/test_exim_local_scan.py.

The Subject picks what local_scan does, so each test sends one message and reads the SMTP
reply and the delivered copy. Every accepted message gets X-Scanned with what the policy saw
(uid, body length and SHA-256 read through fd, recipient count, the Subject's bytes in hex).
"""

import hashlib
import os
import time

from elspy import RejectMessage, TempRejectMessage


def local_scan(info, headers, fd):
    subject = headers.get("Subject") or ""
    seen = len(info.recipients_list)
    digest, length = hashlib.sha256(), 0
    while chunk := os.read(fd, 1 << 20):
        digest.update(chunk)
        length += len(chunk)
    if "reject-me" in subject:
        raise RejectMessage("rejected by Python: no thanks")
    if "later-please" in subject:
        raise TempRejectMessage("Python says: try again later")
    if "raise-error" in subject:
        raise RuntimeError("policy bug on purpose")
    if "sleep-long" in subject:
        time.sleep(30)
    if "crash-worker" in subject:
        os._exit(3)
    if "change-recipients" in subject:
        info.recipients_list.remove("user2@mtapy.test")
        info.recipients_list.append("postmaster@mtapy.test")
    if "huge-header" in subject:
        headers.add("X-Huge", "y" * 40000)  # past Exim's 32 KiB header_add() limit
    if "keep-user1-only" in subject:
        info.recipients_list[:] = ["user1@mtapy.test"]
    headers.remove("X-Remove-Me")
    raw_subject = subject.encode("utf-8", "surrogateescape").hex()  # lossless: the exact bytes
    headers.add(
        "X-Scanned",
        f"uid={os.getuid()} len={length} sha256={digest.hexdigest()}"
        f" rcpts={seen}"
        f" subject={raw_subject or '-'}",
    )
