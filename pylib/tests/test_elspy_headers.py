"""elspy's HeaderList and its decoding rules: lossless, never raising, valid on the way out."""

import base64
import io

import pytest

from elspy import HeaderList
from elspy.encoding import decode_8bit, decode_rfc2047, encoded_charsets, format_header


def b64word(charset, data):
    return f"=?{charset}?B?{base64.b64encode(data).decode()}?="


def test_rfc2047_words_are_decoded_for_display():
    assert decode_rfc2047("=?utf-8?q?caf=C3=A9_au_lait?=") == "café au lait"
    assert decode_rfc2047(b64word("euc-kr", "한국".encode("euc-kr"))) == "한국"
    assert decode_rfc2047(b64word("ks_c_5601-1987", "한국".encode("cp949"))) == "한국"


def test_white_space_between_encoded_words_is_dropped_but_kept_around_text():
    value = "Re: =?utf-8?q?a?= =?utf-8?q?b?=  tail"
    assert decode_rfc2047(value) == "Re: ab  tail"


def test_a_character_split_across_two_encoded_words_is_rejoined():
    raw = "한".encode("utf-8")
    value = b64word("utf-8", raw[:1]) + " " + b64word("utf-8", raw[1:])
    assert decode_rfc2047(value) == "한"


@pytest.mark.parametrize(
    "value",
    [
        "=?utf-8?B?%%%not-base64?=",
        "=?utf-8?B?YQ?=",  # missing padding
        "=?utf-8?B?Y?=",  # one stray character
        "=?utf-8?Q?=ZZ=?=",
        "=?no-such-charset?Q?x?=",
        "=?utf-8?X?bogus-encoding?=",
        "=?euc-kr?B?" + base64.b64encode(b"\xff\xfe\xfd").decode() + "?=",
        "=?",
        "?=",
        "\udcc7\udcd1 =?utf-8?q?x?=",
    ],
)
def test_broken_encoded_words_never_raise(value):
    assert isinstance(decode_rfc2047(value), str)


def test_an_unknown_charset_leaves_the_word_as_it_was():
    assert decode_rfc2047("a =?x-unknown?q?b?= c") == "a =?x-unknown?q?b?= c"


def test_unlabelled_8bit_text_is_reread_in_the_first_charset_that_fits():
    text = b"\xc7\xd1\xb1\xdb".decode("utf-8", "surrogateescape")
    assert decode_8bit(text, ["utf-8", "euc-kr"]) == "한글"
    assert decode_8bit(text, []) == text
    assert decode_8bit("plain", ["euc-kr"]) == "plain"


def test_encoded_charsets_lists_each_words_charset():
    assert encoded_charsets("=?GB2312?B?xxx?= =?utf-8*en?q?y?=") == ["gb2312", "utf-8"]


def test_format_header_keeps_ascii_and_encodes_only_what_needs_it():
    assert format_header("X-A", "plain value") == "X-A: plain value"
    assert format_header("X-A", "value\n") == "X-A: value"
    assert format_header("X-A", "") == "X-A:"
    line = format_header("From", "김민수 <kim@example.kr>")
    assert line.isascii() and line.endswith(" <kim@example.kr>")
    assert decode_rfc2047(line) == "From: 김민수 <kim@example.kr>"


def test_format_header_folds_long_values_at_white_space():
    line = format_header("X-Long", " ".join(["word"] * 40))
    assert all(len(part) <= 78 for part in line.split("\n"))
    assert line.replace("\n", "") == "X-Long: " + " ".join(["word"] * 40)


def test_format_header_encodes_raw_8bit_text_as_unknown_8bit():
    line = format_header("X-Raw", b"\xc7\xd1".decode("utf-8", "surrogateescape"))
    assert line.isascii() and "unknown-8bit" in line


@pytest.mark.parametrize("name", ["", "Bad Name", "Colon:", "Ünicode", "Line\nBreak"])
def test_format_header_refuses_invalid_names(name):
    with pytest.raises(ValueError):
        format_header(name, "x")


def test_pre_folded_values_are_kept_but_header_injection_is_refused():
    assert format_header("X-A", "one\n two") == "X-A: one\n two"
    for bad in ("one\ntwo", "one\r\nX-B: two", "one\rtwo"):
        with pytest.raises(ValueError):
            format_header("X-A", bad)


def test_header_values_are_unfolded_and_stripped_but_raw_bytes_stay_exact():
    lines = [b"Subject:  folded\n\tsubject \xff\n", b"X-Empty:\n"]
    headers = HeaderList(lines)
    assert headers.get("subject") == "folded\tsubject \udcff"
    assert headers.get("x-empty") == ""
    assert headers.get_raw("SUBJECT") == lines[0]
    assert headers.raw_lines() == lines


def test_a_line_without_a_colon_is_kept_but_matches_no_name():
    headers = HeaderList([b"garbage line\n", b"Subject: ok\n"])
    assert headers.get("garbage line") is None and headers.get("subject") == "ok"
    assert headers.as_bytes() == b"garbage line\nSubject: ok\n"


def test_headers_index_by_name_or_position_and_iterate_as_pairs():
    headers = HeaderList([b"A: 1\n", b"B: 2\n", b"a: 3\n"])
    assert headers["a"] == "1" and headers[1] == ("B", "2") and headers["zz"] is None
    assert list(headers) == [("A", "1"), ("B", "2"), ("a", "3")]
    assert headers.keys() == ["A", "B", "a"] and headers.values() == ["1", "2", "3"]
    assert headers.get_all("A") == ["1", "3"] and len(headers) == 3


def test_remove_drops_every_occurrence_and_says_how_many():
    headers = HeaderList([b"A: 1\n", b"B: 2\n", b"a: 3\n"])
    assert headers.remove("A") == 2 and headers.remove("A") == 0
    del headers["b"]
    assert len(headers) == 0 and headers.changes() == ([], [b"A", b"b"])


def test_write_gives_the_exact_bytes_to_binary_text_and_fd_targets(tmp_path):
    lines = [b"Subject: \xc7\xd1\xb1\xdb\n", b"X-A: 1\n"]
    headers = HeaderList(lines)
    headers.add("X-B", "2")
    expected = b"".join(lines) + b"X-B: 2\n"

    binary = io.BytesIO()
    headers.write(binary)
    assert binary.getvalue() == expected

    with (tmp_path / "text").open("w", encoding="utf-8") as text_file:
        text_file.write("before\n")
        headers.write(text_file)
    assert (tmp_path / "text").read_bytes() == b"before\n" + expected

    memory = io.StringIO()
    headers.write(memory)
    assert memory.getvalue().encode("utf-8", "surrogateescape") == expected

    with (tmp_path / "fd").open("wb") as target:
        headers.write(target.fileno())
    assert (tmp_path / "fd").read_bytes() == expected
    assert headers.as_string().encode("utf-8", "surrogateescape") == expected
