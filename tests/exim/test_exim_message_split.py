"""Exim 4.96 itself splits every message of tests/vectors/message-split.txt as the vectors say.

DESCRIPTION  Each case goes through `exim4 -bh` (an SMTP session without a daemon, nothing
             delivered) with ignore_fromline_hosts = *, so the mbox "From " line is handled as
             for -bm; a DATA ACL writes $message_headers_raw and $message_body to the log. SMTP
             makes the body's line ends LF and ends a last line with one; the check allows for
             both and drops the Received: header Exim adds first.
SEE ALSO     tests/vectors/message-split.txt, workerd/ctl/message-split.c++, mtapy/testing.py
"""

import base64
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "vectors"))
from message_split_vectors import cases  # noqa: E402

EXIM = "/usr/sbin/exim4"
CONFIG = textwrap.dedent(
    """\
    message_body_newlines = true
    message_body_visible = 100000
    ignore_fromline_hosts = *
    acl_smtp_rcpt = accept
    acl_smtp_data = show
    begin acl
    show:
      warn logwrite = SPLIT <${base64:$message_headers_raw}> <${base64:$message_body}>
      deny
    """
)
CASES = cases()


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    if os.geteuid() != 0 or not os.path.exists(EXIM):
        pytest.skip("needs root and Debian's exim4 (a root -C config)")
    path = tmp_path_factory.mktemp("exim-split") / "exim.conf"
    path.write_text(CONFIG)
    return path


def smtp_session(raw):
    """An SMTP dialogue that sends `raw` as the message: dot-stuffed, ended by "."."""
    data = re.sub(rb"(?m)^\.", b"..", raw)
    if data and not data.endswith(b"\n"):
        data += b"\r\n"
    envelope = b"HELO client\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n"
    return envelope + data + b".\r\nQUIT\r\n"


def exim_split(config, raw):
    """(header lines, body) as Exim's DATA ACL sees them, without Exim's own Received:."""
    command = [EXIM, "-C", str(config), "-bh", "192.0.2.1"]
    done = subprocess.run(command, input=smtp_session(raw), capture_output=True, timeout=30)
    found = re.search(rb"LOG: \S+ SPLIT <([^>]*)> <([^>]*)>", done.stdout + done.stderr)
    assert found, (done.stdout + done.stderr)[-2000:]
    headers_raw, body = (base64.b64decode(part) for part in found.groups())
    headers = re.findall(rb"[^\n]*\n(?:[ \t][^\n]*\n)*", headers_raw)
    assert headers[0].startswith(b"Received: ")
    return headers[1:], body


def as_smtp_delivers(body):
    """The body as Exim stores an SMTP message's: LF line ends, a newline at the end."""
    body = body.replace(b"\r\n", b"\n")
    return body + b"\n" if body and not body.endswith(b"\n") else body


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_exim_splits_the_message_as_the_vector_says(config, case):
    assert exim_split(config, case.raw) == (case.headers, as_smtp_delivers(case.body))
