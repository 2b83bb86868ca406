"""mtapy.filters.subject: subjects are matched as a reader sees them, and never crash it."""

import base64

import pytest

from mtapy.filters import subject
from mtapy.filters.subject import SubjectFilter
from mtapy.testing import scan


def message(subject_bytes):
    return b"From: a@example.org\nSubject: " + subject_bytes + b"\n\nbody\n"


@pytest.fixture
def talk_example(monkeypatch):
    """The elspy talk's example: reject subjects starting with "spam"."""
    monkeypatch.setattr(subject, "PATTERNS", [r"^spam"])
    return subject


def test_the_talks_example_rejects_a_spam_subject_and_accepts_others(talk_example):
    rejected = scan(talk_example, message(b"  SPAM: cheap stuff"))
    assert (rejected.verdict, rejected.message) == ("reject", subject.MESSAGE)
    assert scan(talk_example, message(b"hello spam fans")).verdict == "accept"
    assert scan(talk_example, b"From: a@example.org\n\nno subject\n").verdict == "accept"


def test_a_pattern_hidden_in_rfc2047_encoded_words_is_found(talk_example):
    hidden = b"=?utf-8?B?" + base64.b64encode(b"spam offer") + b"?="
    assert scan(talk_example, message(hidden)).verdict == "reject"
    split = b"=?utf-8?q?sp?= =?utf-8?q?am_now?="
    assert scan(talk_example, message(split)).verdict == "reject"


def test_korean_patterns_match_encoded_and_raw_8bit_subjects():
    check = SubjectFilter(patterns=["광고"], charsets_8bit=["euc-kr"])
    encoded = b"=?euc-kr?B?" + base64.b64encode("(광고) 특가".encode("euc-kr")) + b"?="
    assert scan(check, message(encoded)).verdict == "reject"
    assert scan(check, message("(광고) 특가".encode("euc-kr"))).verdict == "reject"
    assert scan(check, message("(광고) 특가".encode("utf-8"))).verdict == "reject"
    assert scan(check, message("안녕하세요".encode("euc-kr"))).verdict == "accept"


@pytest.mark.parametrize(
    "raw",
    [b"\xc7\xd1\xb1\xdb", b"=?euc-kr?B?%%%?=", b"=?bogus?Q?x?=", b"\xff\xfe", b""],
    ids=["raw-euc-kr", "bad-base64", "unknown-charset", "invalid-utf8", "empty"],
)
def test_broken_subjects_are_accepted_not_crashed_on(talk_example, raw):
    assert scan(talk_example, message(raw)).verdict == "accept"


def test_a_banned_charset_rejects_like_elspy_subject_charset():
    check = SubjectFilter(banned_charsets=["GB2312"])
    result = scan(check, message(b"=?gb2312?B?xOO6ww==?="))
    assert result.verdict == "reject" and "gb2312" in result.message
    assert scan(check, message(b"=?utf-8?B?xOO6ww==?=")).verdict == "accept"


def test_exempt_senders_are_not_checked(talk_example):
    check = SubjectFilter(exempt_senders=["Boss@Example.org"])
    assert scan(check, message(b"spam report"), sender="boss@example.org").verdict == "accept"
    assert scan(check, message(b"spam report"), sender="x@example.org").verdict == "reject"


def test_the_module_rejects_nothing_until_configured():
    assert subject.PATTERNS == [] and scan(subject, message(b"spam")).verdict == "accept"
