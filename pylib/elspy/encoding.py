"""elspy.encoding - turn raw header bytes into text and text back into valid header lines.

DESCRIPTION  Exim hands over header lines as raw bytes; spam carries unencoded 8-bit subjects
             (EUC-KR, UTF-8, anything), and the seed slides show elspy's unicode() call dying
             on one. The rules here never raise on input from the network:
             - raw -> text: UTF-8 with errors="surrogateescape" (decode_raw). Every byte string
               decodes; bytes that are not UTF-8 become lone surrogates U+DC80..U+DCFF, and
               ``text.encode("utf-8", "surrogateescape")`` gives back the exact bytes.
             - RFC 2047 encoded words (``=?euc-kr?B?...?=``) are left as they are in that text;
               decode_rfc2047() decodes them for display and matching: adjacent words of one
               charset are joined before decoding (broken mailers split characters across
               words), undecodable bytes become U+FFFD, an unknown charset leaves the word as
               it was. decode_8bit() optionally re-reads unlabelled 8-bit text in a guessed
               charset (e.g. "euc-kr").
             - text -> header: format_header() RFC 2047-encodes non-ASCII values with
               email.policy (only the words that need it; address headers keep their
               addresses), folding long lines with "\\n " as Exim stores them.
SEE ALSO     elspy/headers.py
"""

import base64
import binascii
import codecs
import email.policy
import re
from typing import Any, Iterable, List, Optional, Tuple

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([qQbB])\?([^?\s]*)\?=")
_BLANK = re.compile(r"[ \t\r\n]*\Z")
_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+\Z")
_BAD_BREAK = re.compile(r"\r?\n(?![ \t])|\r(?!\n)")
_SURROGATE = re.compile("[\udc80-\udcff]")
_POLICY = email.policy.EmailPolicy(linesep="\n", refold_source="all", max_line_length=76)


def decode_raw(raw: bytes) -> str:
    """Raw header bytes as text: UTF-8, surrogateescape; lossless and never raises."""
    return raw.decode("utf-8", "surrogateescape")


def encode_raw(text: str) -> bytes:
    """The inverse of decode_raw: the exact original bytes."""
    return text.encode("utf-8", "surrogateescape")


def unfold(text: str) -> str:
    """RFC 5322 unfolding: drop each line break that is followed by white space."""
    return re.sub(r"\r?\n(?=[ \t])", "", text)


def _word_bytes(encoding: str, payload: str) -> bytes:
    """The bytes of one encoded word's payload; tolerant of bad padding and stray bytes."""
    data = payload.encode("utf-8", "surrogateescape")
    if encoding in "bB":
        data = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
        if len(data) % 4 == 1:
            data = data[:-1]  # a lone trailing character carries no whole byte
        return base64.b64decode(data + b"=" * (-len(data) % 4))
    return binascii.a2b_qp(data.replace(b"_", b" "))


def _charset_codec(charset: str) -> Optional[str]:
    """The Python codec for an RFC 2047/2231 charset name ("utf-8*ko" too), or None."""
    try:
        return codecs.lookup(charset.split("*", 1)[0].strip()).name
    except (LookupError, ValueError):
        return None


def _words(value: str) -> Iterable[Tuple[str, Optional[Tuple[str, bytes]]]]:
    """Split into (text, None) gaps and (original, (codec, bytes)) decodable words."""
    pos = 0
    for match in _ENCODED_WORD.finditer(value):
        codec = _charset_codec(match.group(1))
        if codec is None:
            continue  # unknown charset: the word stays in the surrounding text
        if match.start() > pos:
            yield value[pos : match.start()], None
        try:
            data = _word_bytes(match.group(2), match.group(3))
        except (binascii.Error, ValueError):
            data = None
        if data is None:
            yield match.group(0), None
        else:
            yield match.group(0), (codec, data)
        pos = match.end()
    if pos < len(value):
        yield value[pos:], None


def decode_rfc2047(value: str) -> str:
    """Decode RFC 2047 encoded words for display or matching; never raises."""
    if "=?" not in value:
        return value
    out: List[str] = []
    pending: Optional[Tuple[str, bytes]] = None  # run of adjacent words, one charset
    gap = ""  # white space seen after the last word, dropped if another word follows
    for text, word in _words(value):
        if word is None:
            if pending is not None and _BLANK.match(text):
                gap += text
                continue
            if pending is not None:
                out.append(pending[1].decode(pending[0], "replace"))
                pending = None
            out.append(gap + text)
            gap = ""
            continue
        gap = ""
        if pending is not None and pending[0] == word[0]:
            pending = (pending[0], pending[1] + word[1])
            continue
        if pending is not None:
            out.append(pending[1].decode(pending[0], "replace"))
        pending = word
    if pending is not None:
        out.append(pending[1].decode(pending[0], "replace"))
    out.append(gap)
    return "".join(out)


def encoded_charsets(value: str) -> List[str]:
    """The charsets named by the RFC 2047 encoded words in `value`, lower-cased, in order."""
    return [m.group(1).split("*", 1)[0].lower() for m in _ENCODED_WORD.finditer(value)]


def decode_8bit(text: str, charsets: Iterable[str] = ()) -> str:
    """Re-read unlabelled 8-bit text (surrogates) in the first charset that fits it."""
    if not _SURROGATE.search(text):
        return text
    raw = encode_raw(text)
    for charset in charsets:
        try:
            return raw.decode(charset)
        except (UnicodeDecodeError, LookupError):
            continue
    return text


def check_field_name(name: str) -> str:
    """Return `name` if it is a valid RFC 5322 field name, else raise ValueError."""
    if not isinstance(name, str) or not _FIELD_NAME.match(name):
        raise ValueError(f"invalid header name {name!r}")
    return name


def _encode_words(name: str, value: str) -> str:
    """Last resort: the whole value as base64 encoded words of at most 45 bytes each."""
    raw = encode_raw(value)
    try:
        raw.decode("utf-8")
        charset = "utf-8"
    except UnicodeDecodeError:
        charset = "unknown-8bit"
    chunks, start = [], 0
    while start < len(raw):
        end = min(start + 45, len(raw))
        if charset == "utf-8":
            while end < len(raw) and (raw[end] & 0xC0) == 0x80:
                end -= 1  # never split a UTF-8 character across words
        chunks.append(f"=?{charset}?b?{base64.b64encode(raw[start:end]).decode()}?=")
        start = end
    return f"{name}: " + "\n ".join(chunks)


def _fold_ascii(line: str, width: int = 78) -> str:
    """Fold an over-long ASCII header line at white space; pre-folded lines pass as given."""
    if "\n" in line or len(line) <= width:
        return line
    out, current = [], ""
    for word in re.split(r"(?<=\S)(?=[ \t])", line):
        if current and len(current) + len(word) > width:
            out.append(current)
            current = word
        else:
            current += word
    out.append(current)
    return "\n".join(out)


def format_header(name: str, value: str) -> str:
    """One header line "Name: value" (no final newline), RFC 2047-encoded when needed.

    ASCII values pass unchanged (pre-folded values keep their folds); a value may end in a
    newline (elspy style), and may contain line breaks only before white space.
    """
    check_field_name(name)
    if not isinstance(value, str):
        raise TypeError(f"header value must be str, not {type(value).__name__}")
    value = value.rstrip("\r\n")
    if _BAD_BREAK.search(value):
        raise ValueError(f"header value for {name} contains a line break that starts a new line")
    value = value.replace("\r\n", "\n").lstrip(" \t")
    if value.isascii():
        return _fold_ascii(f"{name}: {value}" if value else f"{name}:")
    try:
        header: Any = _POLICY.header_factory(name, value)
        line = header.fold(policy=_POLICY).rstrip("\n")
    except Exception:  # email's parser has corner cases; never let them reach the policy
        line = ""
    if not line.isascii() or not line.lower().startswith(name.lower() + ":"):
        line = _encode_words(name, unfold(value))
    return line
