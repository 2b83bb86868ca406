"""mtapy.testing: scan() as policy authors use it (the header/body split: test_message_split)."""

import os
import textwrap

import pytest

from elspy import RejectMessage, get_fdpos, read_data
from mtapy.testing import new_message_id, scan

MESSAGE = (
    b"Received: from x\r\n\tby y\r\n"
    b"Subject: hi\r\n"
    b"\r\n"
    b"body line 1\r\n"
    b"body line 2\r\n"
)


def test_message_ids_look_like_exims():
    assert all(len(part) == n for part, n in zip(new_message_id().split("-"), (6, 6, 2)))


def test_scan_hands_the_policy_an_exim_like_message():
    seen = {}

    def local_scan(info, headers, fd):
        seen.update(vars(info))
        seen["subject"] = headers.get("subject")
        seen["body"] = read_data(fd)
        seen["pos"] = get_fdpos(fd)
        os.lseek(fd, 0, os.SEEK_SET)
        seen["spool_first_line"] = os.read(fd, 100).split(b"\n")[0]

    result = scan(local_scan, MESSAGE, sender="s@example.org", recipients=["r@example.net"])
    assert result.verdict == "accept" and result.smtp_code == 250 and result.accepted
    assert seen["subject"] == "hi" and seen["body"] == b"body line 1\nbody line 2\n"
    assert seen["sender_address"] == "s@example.org"
    assert seen["recipients_list"] == ["r@example.net"]
    assert seen["sender_host_address"] == "192.0.2.1" and seen["body_linecount"] == 2
    assert seen["spool_first_line"] == (seen["message_id"] + "-D").encode()
    assert seen["pos"] == len(seen["spool_first_line"]) + 1


def test_scan_reports_changes_and_final_recipients():
    def local_scan(info, headers, fd):
        info.recipients_list.remove("a@x.net")
        info.recipients_list.append("c@x.net")
        headers.add("X-Seen", "yes")
        headers.remove("Subject")

    result = scan(local_scan, MESSAGE, recipients=["a@x.net", "b@x.net"])
    assert (result.added_recipients, result.removed_recipients) == (["c@x.net"], ["a@x.net"])
    assert result.recipients == ["b@x.net", "c@x.net"]
    assert result.added_headers == ["X-Seen: yes"] and result.removed_headers == ["Subject"]
    assert result.header("x-seen") == "yes" and result.header("X-Other") is None


def test_scan_reports_rejects_and_failures():
    def reject(info, headers, fd):
        raise RejectMessage("nope")

    rejected = scan(reject, MESSAGE)
    assert (rejected.verdict, rejected.message, rejected.smtp_code) == ("reject", "nope", 550)
    failed = scan(lambda i, h, f: {}["missing"], MESSAGE)
    assert failed.verdict == "failure" and failed.smtp_code == 451
    assert failed.message == "KeyError: 'missing'" and "KeyError" in str(failed)


def test_scan_loads_a_policy_file_and_reads_an_eml_file(tmp_path):
    (tmp_path / "helper.py").write_text("WORD = 'spam'\n")
    policy = tmp_path / "policy.py"
    policy.write_text(
        textwrap.dedent(
            """\
            from elspy import RejectMessage
            import helper

            def local_scan(info, headers, fd):
                if __name__ != "__exim__":
                    raise RuntimeError(__name__)
                if helper.WORD in (headers.get("subject") or "").lower():
                    raise RejectMessage("obvious spam rejected")
            """
        )
    )
    eml = tmp_path / "spam.eml"
    eml.write_bytes(b"Subject: SPAM offer\n\nbuy\n")
    assert scan(str(policy), eml).verdict == "reject"
    assert scan(policy, b"Subject: hello\n\nhi\n").verdict == "accept"


def test_scan_of_local_mail_has_no_host():
    seen = []
    scan(lambda i, h, f: seen.append((i.sender_host_address, i.received_protocol)), b"", host="")
    assert seen == [("", "local")]


def test_scan_accepts_extra_info_fields():
    seen = []
    scan(lambda i, h, f: seen.append(i.sender_helo_name), b"", sender_helo_name="mx.example.org")
    assert seen == ["mx.example.org"]


def test_scan_flags_a_policy_that_closes_the_body_fd():
    with pytest.raises(AssertionError, match="closed the body fd"):
        scan(lambda info, headers, fd: os.close(fd), MESSAGE)
