"""mtapy-workerd's ${readsocket} listener as Exim 4.96 uses it (`exim -be`, run as root).

The request is "POOL:FUNCTION ARG...\\n" with each argument written by Exim's ${quote:...};
the reply is the value exactly, "" for None, or "DEFER: ..." when the call failed.
"""

import pytest

pytest_plugins = ["exim_fixtures"]


def ask(exim, request, eol="\\n"):
    """The expansion of ${readsocket} sending REQUEST, in brackets (so "" is visible)."""
    r = exim.be("[${readsocket{MTAPY_RS_PATH}{%s%s}{5s}{}{FALLBACK}}]" % (request, eol))
    assert r.returncode == 0, r
    out = r.stdout
    assert out.startswith(b"[") and out.endswith(b"]\n"), out
    return out[1:-2]


def test_the_reply_is_the_value_exactly(exim_readsocket):
    assert ask(exim_readsocket, "acl:tri true") == b"true"
    assert ask(exim_readsocket, "acl:tri false") == b"false"
    assert ask(exim_readsocket, "acl:tri none") == b""  # None
    assert ask(exim_readsocket, "acl:count a b c") == b"3 c"


def test_a_request_without_newline_ends_when_exim_shuts_down_its_side(exim_readsocket):
    assert ask(exim_readsocket, "acl:tri true", eol="") == b"true"


def test_failures_answer_defer_with_the_reason(exim_readsocket):
    assert (
        ask(exim_readsocket, "acl:recipient_blocked boom")
        == b"DEFER: ZeroDivisionError: division by zero"
    )
    assert ask(exim_readsocket, "acl:no_such").startswith(b"DEFER: LookupError: ")
    # Each pool has its own ${readsocket} socket: a bare name is that pool's function, and
    # naming another pool is refused with where to go instead.
    assert ask(exim_readsocket, "tri true") == b"true"
    assert ask(exim_readsocket, "geo:tri true") == (
        b"DEFER: malformed request: this socket serves pool acl, not geo "
        b"(use that pool's readsocket)")


def test_blanks_separate_words(exim_readsocket):
    assert ask(exim_readsocket, "acl:hexargs a\\tb   c") == b"61 62 63"


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        "",
        "two words",
        'a "quoted" word',
        "back\\\\slash",
        "tab\\there",
        "caf\udcc3\udca9 \udcff",  # argv bytes caf\xc3\xa9 \xff: UTF-8 and a lone 0xff
    ],
    ids=["plain", "empty", "blank", "quotes", "backslash", "tab", "8bit"],
)
def test_quote_arguments_arrive_byte_exact(exim_readsocket, value):
    """${quote:VALUE} as the argument (twice); VALUE is written in Exim's escapes."""
    plain = exim_readsocket.be("<%s>" % value).stdout[1:-2]  # VALUE after Exim's escapes
    got = ask(exim_readsocket, "acl:hexargs ${quote:%s} ${quote:%s}" % (value, value))
    assert got == b" ".join([plain.hex().encode() or b"-"] * 2)


def test_quote_of_a_newline_arrives_as_a_newline(exim_readsocket):
    """${quote:} writes a newline as \\n and a carriage return as \\r (e.g. $h_subject: of a
    folded header holds a newline), so the listener must read them back as those bytes."""
    assert exim_readsocket.be("${quote:a\\nb\\rc}").stdout == b'"a\\nb\\rc"\n'
    got = ask(exim_readsocket, "acl:hexargs ${quote:a\\nb\\rc}")
    assert got == b"a\nb\rc".hex().encode()
