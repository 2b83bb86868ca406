"""mtapy.filters.chain: several filters in one policy, each reading the body from its start."""

from elspy import RejectMessage, read_data
from mtapy.filters import chain, spamtrap, subject
from mtapy.testing import scan

MESSAGE = b"Subject: hello\n\nthe body\n"


def test_each_filter_reads_the_body_from_its_start():
    seen = []

    def consume(info, headers, fd):
        with open(fd, "rb", closefd=False) as body:
            seen.append(body.read())

    assert scan(chain(consume, consume), MESSAGE).verdict == "accept"
    assert seen == [b"the body\n", b"the body\n"]


def test_the_first_verdict_ends_the_chain():
    calls = []

    def reject(info, headers, fd):
        calls.append("reject")
        raise RejectMessage("first")

    def later(info, headers, fd):
        calls.append("later")

    result = scan(chain(reject, later), MESSAGE)
    assert (result.verdict, result.message, calls) == ("reject", "first", ["reject"])


def test_modules_and_their_changes_combine(monkeypatch):
    monkeypatch.setattr(spamtrap, "SPAMTRAPS", ["trap@example.org"])
    monkeypatch.setattr(spamtrap, "ACTION", "remove")
    monkeypatch.setattr(subject, "PATTERNS", [r"^spam"])

    def label(info, headers, fd):
        headers.add("X-Body-Size", str(len(read_data(fd))))

    policy = chain(spamtrap, subject, label)
    result = scan(policy, MESSAGE, recipients=["a@example.org", "trap@example.org"])
    assert result.verdict == "accept" and result.recipients == ["a@example.org"]
    assert result.header("X-Body-Size") == "9"
    assert scan(policy, b"Subject: spam\n\nx\n").verdict == "reject"
