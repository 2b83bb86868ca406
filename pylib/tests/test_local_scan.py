"""The run() contract of mtapy.local_scan, as the worker calls it from C++."""

import hashlib
import os
import sys
import tempfile
import time
import types

import pytest

import elspy
from elspy import (
    AcceptMessage,
    RejectMessage,
    RejectSpam,
    RejectVirus,
    TempRejectMessage,
    parse_message,
    read_data,
)
from mtapy.local_scan import ACCEPT, FAILURE, REJECT, TEMPREJECT, run

INFO = {
    "sender_address": b"sender@example.org",
    "recipients": [b"a@example.net", b"b@example.net"],
    "sender_host_address": b"192.0.2.1",
    "sender_host_name": b"mx.example.org",
    "sender_host_port": 40000,
    "sender_host_authenticated": b"",
    "interface_address": b"192.0.2.25",
    "interface_port": 25,
    "received_protocol": b"esmtp",
    "message_id": b"1qAbCd-000001-Xy",
    "body_linecount": 1,
    "body_zerocount": 0,
}
HEADERS = [
    b"Received: from mx.example.org\n\tby here; Sat, 1 Jan 2000 00:00:00 +0000\n",
    b"From: Sender <sender@example.org>\n",
    b"To: a@example.net, b@example.net\n",
    b"Subject: hello world\n",
]


@pytest.fixture
def body_fd():
    with tempfile.TemporaryFile() as spool:
        spool.write(b"1qAbCd-000001-Xy-D\nhello body\n")
        spool.flush()
        os.lseek(spool.fileno(), 19, os.SEEK_SET)
        yield spool.fileno()


def call(scan, fd, headers=HEADERS, **info):
    """run() with a plain function as the policy."""
    return run(types.SimpleNamespace(local_scan=scan), {**INFO, **info}, headers, fd)


def test_a_policy_that_returns_normally_accepts_with_no_changes(body_fd):
    assert call(lambda i, h, f: None, body_fd) == (ACCEPT, b"", [], [], [], [], "")


def test_reject_message_gives_verdict_1_and_its_text(body_fd):
    def scan(info, headers, fd):
        raise RejectMessage("go away")

    assert call(scan, body_fd) == (REJECT, b"go away", [], [], [], [], "")


def test_temp_reject_message_gives_verdict_2_and_its_text(body_fd):
    def scan(info, headers, fd):
        raise TempRejectMessage("later")

    assert call(scan, body_fd)[:2] == (TEMPREJECT, b"later")


def test_a_verdict_without_a_message_has_empty_text(body_fd):
    def scan(info, headers, fd):
        raise RejectMessage

    assert call(scan, body_fd)[:2] == (REJECT, b"")


def test_accept_message_keeps_its_text_and_the_changes_made_before_it(body_fd):
    def scan(info, headers, fd):
        info.recipients_list.append("c@example.net")
        headers.add("X-Scanned", "yes")
        raise AcceptMessage("scan-data")

    verdict, text, added, _, add_headers, _, _ = call(scan, body_fd)
    assert (verdict, text, added, add_headers) == (
        ACCEPT,
        b"scan-data",
        [b"c@example.net"],
        [b"X-Scanned: yes"],
    )


def test_a_reject_discards_recipient_and_header_changes(body_fd):
    def scan(info, headers, fd):
        info.recipients_list.clear()
        headers.add("X-Late", "1")
        raise RejectMessage("no")

    assert call(scan, body_fd) == (REJECT, b"no", [], [], [], [], "")


def test_reject_spam_and_reject_virus_come_from_elspy_and_reject(body_fd):
    assert issubclass(RejectSpam, RejectMessage) and issubclass(RejectVirus, RejectMessage)
    assert elspy.RejectSpam is RejectSpam and elspy.RejectVirus is RejectVirus
    for kind in (RejectSpam, RejectVirus, elspy.RejectVirusRelated):

        def scan(info, headers, fd, kind=kind):
            raise kind(f"{kind.__name__} text")

        assert call(scan, body_fd)[:2] == (REJECT, f"{kind.__name__} text".encode())


def test_a_returned_verdict_counts_like_a_raised_one(body_fd):
    assert call(lambda i, h, f: RejectMessage("returned"), body_fd)[:2] == (REJECT, b"returned")


def test_bytes_and_non_ascii_verdict_texts_reach_exim_as_bytes(body_fd):
    def raw(info, headers, fd):
        raise RejectMessage(b"\xff raw")

    def korean(info, headers, fd):
        raise RejectMessage("거부")

    assert call(raw, body_fd)[1] == b"\xff raw"
    assert call(korean, body_fd)[1] == "거부".encode()


def test_a_policy_exception_is_a_failure_with_message_and_traceback(body_fd):
    def scan(info, headers, fd):
        raise ValueError("bad thing")

    verdict, text, *lists, trace = call(scan, body_fd)
    assert (verdict, text, lists) == (FAILURE, b"ValueError: bad thing", [[], [], [], []])
    assert trace.startswith("Traceback (most recent call last):\n")
    assert "in scan\n" in trace and trace.endswith("ValueError: bad thing\n")
    assert "in run\n" not in trace


def test_sys_exit_in_a_policy_is_a_failure_not_an_exit(body_fd):
    verdict, text, *_ = call(lambda i, h, f: sys.exit(3), body_fd)
    assert (verdict, text) == (FAILURE, b"SystemExit: 3")


def test_a_policy_without_local_scan_is_a_failure(body_fd):
    verdict, text, *_, trace = run(types.SimpleNamespace(), INFO, HEADERS, body_fd)
    assert verdict == FAILURE and text.startswith(b"LookupError: ")
    assert "local_scan" in trace


def test_a_recipient_of_the_wrong_type_is_a_failure(body_fd):
    verdict, text, *_ = call(lambda i, h, f: i.recipients_list.append(42), body_fd)
    assert (verdict, text) == (FAILURE, b"TypeError: recipients_list items must be str, not int")


def test_an_exception_with_a_broken_str_is_still_reported(body_fd):
    class Weird(Exception):
        def __str__(self):
            raise RuntimeError("no")

    def scan(info, headers, fd):
        raise Weird()

    verdict, text, *_ = call(scan, body_fd)
    assert (verdict, text) == (FAILURE, b"Weird: <unprintable exception>")


def test_info_has_every_field_as_python_types(body_fd):
    seen = {}

    def scan(info, headers, fd):
        seen.update(vars(info), recipients=info.recipients, count=info.recipients_count)

    call(scan, body_fd)
    assert seen["sender_address"] == "sender@example.org"
    assert seen["recipients_list"] == ["a@example.net", "b@example.net"]
    assert seen["recipients"] == seen["recipients_list"] and seen["count"] == 2
    assert seen["sender_host_port"] == 40000 and seen["interface_port"] == 25
    assert seen["sender_host_name"] == "mx.example.org" and seen["received_protocol"] == "esmtp"
    assert seen["message_id"] == "1qAbCd-000001-Xy" and seen["body_linecount"] == 1
    assert seen["sender_helo_name"] == ""  # present even when the worker does not send it


def test_an_8bit_sender_decodes_with_surrogates_and_round_trips(body_fd):
    seen = []
    call(lambda i, h, f: seen.append(i.sender_address), body_fd, sender_address=b"\xc7\xd1@x.kr")
    assert seen[0].encode("utf-8", "surrogateescape") == b"\xc7\xd1@x.kr"


def test_recipients_appended_and_removed_are_reported(body_fd):
    def scan(info, headers, fd):
        info.recipients_list.remove("a@example.net")
        info.recipients_list.append("c@example.net")

    assert call(scan, body_fd)[2:4] == ([b"c@example.net"], [b"a@example.net"])


def test_assigning_a_new_recipient_list_reports_the_difference(body_fd):
    def scan(info, headers, fd):
        info.recipients_list = ["b@example.net", "d@example.net", b"e@example.net"]

    assert call(scan, body_fd)[2:4] == ([b"d@example.net", b"e@example.net"], [b"a@example.net"])


def test_duplicate_recipients_are_diffed_as_a_multiset(body_fd):
    def scan(info, headers, fd):
        info.recipients_list.remove("a@example.net")

    recipients = [b"a@example.net", b"a@example.net", b"b@example.net"]
    assert call(scan, body_fd, recipients=recipients)[2:4] == ([], [b"a@example.net"])


def test_reordering_recipients_changes_nothing(body_fd):
    assert call(lambda i, h, f: i.recipients_list.reverse(), body_fd)[2:4] == ([], [])


def test_five_thousand_recipients_are_diffed_quickly(body_fd):
    recipients = [f"user{n}@example.net".encode() for n in range(5000)]

    def scan(info, headers, fd):
        info.recipients_list[:] = info.recipients_list[::2] + ["new@example.net"]

    started = time.monotonic()
    added, removed = call(scan, body_fd, recipients=recipients)[2:4]
    assert time.monotonic() - started < 1.0
    assert added == [b"new@example.net"] and removed == recipients[1::2]


def test_headers_can_be_read_by_name_ignoring_case(body_fd):
    seen = {}

    def scan(info, headers, fd):
        seen["subject"] = headers.get("SUBJECT")
        seen["received"] = headers.get("received")
        seen["missing"] = headers.get("X-Missing")
        seen["default"] = headers.get("X-Missing", "dflt")
        seen["to"] = headers.get_all("to")
        seen["none"] = headers.get_all("X-Missing")
        seen["pairs"] = list(headers)
        seen["contains"] = "subject" in headers

    call(scan, body_fd)
    assert seen["subject"] == "hello world"
    assert seen["received"] == "from mx.example.org\tby here; Sat, 1 Jan 2000 00:00:00 +0000"
    assert seen["missing"] is None and seen["default"] == "dflt" and seen["none"] == []
    assert seen["to"] == ["a@example.net, b@example.net"] and seen["contains"]
    assert seen["pairs"][3] == ("Subject", "hello world") and len(seen["pairs"]) == 4


def test_headers_added_and_removed_are_reported_for_exim(body_fd):
    def scan(info, headers, fd):
        headers.add("X-One", "1")
        headers.add("X-Two", "2")
        headers.remove("x-two")  # added then removed: never reaches Exim
        headers.remove("Received")  # received: Exim removes it
        headers.remove("X-Not-There")

    assert call(scan, body_fd)[4:6] == ([b"X-One: 1"], [b"Received"])


def test_removing_then_adding_a_header_replaces_it(body_fd):
    def scan(info, headers, fd):
        headers.remove("Subject")
        headers.add("Subject", "new")
        assert headers.get_all("subject") == ["new"]

    assert call(scan, body_fd)[4:6] == ([b"Subject: new"], [b"Subject"])


def test_an_added_non_ascii_header_is_rfc2047_encoded(body_fd):
    def scan(info, headers, fd):
        headers.add("X-Note", "한국어 note")
        assert headers.get_decoded("X-Note") == "한국어 note"

    (line,) = call(scan, body_fd)[4]
    assert line.isascii() and line.startswith(b"X-Note: =?utf-8?")


def test_adding_a_header_that_would_inject_another_is_a_failure(body_fd):
    verdict, text, *_ = call(lambda i, h, f: h.add("X-A", "x\nBcc: evil@example.com"), body_fd)
    assert verdict == FAILURE and text.startswith(b"ValueError: ")


@pytest.mark.parametrize(
    "raw, charset",
    [(b"\xc7\xd1\xb1\xdb", "euc-kr"), ("한글".encode("utf-8"), "utf-8")],
    ids=["euc-kr", "utf-8"],
)
def test_raw_8bit_korean_subjects_never_raise_and_round_trip(body_fd, raw, charset):
    seen = {}

    def scan(info, headers, fd):
        seen["value"] = headers.get("Subject")
        seen["decoded"] = headers.get_decoded("Subject", charsets=["euc-kr"])
        seen["upper"] = seen["value"].upper()  # ordinary str operations work
        headers.add("X-Copy", seen["value"])

    outcome = call(scan, body_fd, headers=[b"Subject: " + raw + b"\n"])
    assert outcome[0] == ACCEPT
    assert seen["value"].encode("utf-8", "surrogateescape") == raw
    assert seen["decoded"] == "한글"
    assert outcome[4][0].isascii()


def test_an_empty_body_reads_as_empty(body_fd):
    seen = []
    os.lseek(body_fd, 0, os.SEEK_END)
    call(lambda i, h, f: seen.append(read_data(f)), body_fd, body_linecount=0)
    assert seen == [b""]


def test_a_message_without_headers_is_scanned(body_fd):
    seen = []

    def scan(info, headers, fd):
        seen.append((len(headers), headers.get("Subject"), headers.get_decoded("Subject", "")))

    assert call(scan, body_fd, headers=[])[0] == ACCEPT
    assert seen == [(0, None, "")]


def test_broken_mime_parses_without_raising(body_fd):
    headers = [
        b"MIME-Version: 1.0\n",
        b'Content-Type: multipart/mixed; boundary="never-used\n',
        b"Content-Transfer-Encoding: base64\n",
    ]
    seen = []
    call(lambda i, h, f: seen.append(parse_message(h, f)), body_fd, headers=headers)
    assert seen[0].get_content_maintype() == "multipart"


def test_a_50_mb_body_is_read_through_the_fd(tmp_path):
    block = bytes(range(256)) * 4096  # 1 MiB
    path = tmp_path / "big.spool"
    with path.open("wb") as spool:
        for _ in range(50):
            spool.write(block)
    expected = hashlib.sha256(block * 50).hexdigest()
    seen = []

    def scan(info, headers, fd):
        digest = hashlib.sha256()
        with open(fd, "rb", closefd=False) as body:
            for chunk in iter(lambda: body.read(1 << 20), b""):
                digest.update(chunk)
        seen.append(digest.hexdigest())

    fd = os.open(path, os.O_RDONLY)
    try:
        started = time.monotonic()
        assert call(scan, fd)[0] == ACCEPT
        assert time.monotonic() - started < 5
        os.fstat(fd)  # run() left the fd open
    finally:
        os.close(fd)
    assert seen == [expected]


def test_run_leaves_the_fd_open_even_on_failure(body_fd):
    call(lambda i, h, f: 1 / 0, body_fd)
    assert os.read(body_fd, 5) == b"hello"
