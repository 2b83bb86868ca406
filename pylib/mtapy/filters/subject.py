"""mtapy.filters.subject - reject a message by its Subject, decoded the way a reader sees it.

DESCRIPTION  The elspy talk's first example rejected subjects starting with "spam"; spam hides
             such words in RFC 2047 encoded words (=?utf-8?B?...?=) and raw 8-bit bytes, on
             which the Python 2 original crashed. Here every Subject header is decoded with
             elspy's never-raising rules (raw bytes: UTF-8 or CHARSETS_8BIT, then RFC 2047),
             white space runs collapse to one space, and the text is searched, ignoring case,
             for each of PATTERNS. elspy's subject_charset module is folded in: an encoded
             word in a BANNED_CHARSETS charset rejects too.
CONFIG       PATTERNS          regexes (str or compiled), re.search; default none.
                               The talk's example is PATTERNS = [r"^spam"].
             BANNED_CHARSETS   charset names, e.g. ["big5", "gb2312", "koi8-r"]; default none.
             CHARSETS_8BIT     charsets to try on unlabelled 8-bit subjects, e.g. ["euc-kr"].
             EXEMPT_SENDERS    sender addresses (any case) never checked.
             MESSAGE           the SMTP reply text; "{subject}" and "{charset}" expand.
             Or: local_scan = SubjectFilter(patterns=[...], message="...").
DIAGNOSTICS  Raises RejectSpam (a RejectMessage: 550). Never raises on broken subjects.
"""

import re
from typing import Any, Iterable, List, Optional, Pattern, Union

from elspy.encoding import decode_8bit, decode_rfc2047, encoded_charsets
from elspy.verdicts import RejectSpam

PATTERNS: List[Union[str, Pattern[str]]] = []
BANNED_CHARSETS: List[str] = []
CHARSETS_8BIT: List[str] = []
EXEMPT_SENDERS: List[str] = []
MESSAGE = "message rejected: subject not accepted here"
CHARSET_MESSAGE = "message rejected: banned charset in subject: {charset}"


def decoded_subjects(headers: Any, charsets: Iterable[str] = ()) -> List[str]:
    """Every Subject as display text: 8-bit and RFC 2047 decoded, white space collapsed."""
    texts = []
    for value in headers.get_all("subject") or []:
        text = decode_rfc2047(decode_8bit(value, charsets))
        texts.append(" ".join(text.split()))
    return texts


def _compile(pattern: Union[str, Pattern[str]]) -> Pattern[str]:
    """A pattern as given (compiled) or compiled ignoring case."""
    if isinstance(pattern, str):
        return re.compile(pattern, re.IGNORECASE)
    return pattern


class SubjectFilter:
    """A configured subject check; None for a setting means "the module constant"."""

    def __init__(
        self,
        patterns: Optional[Iterable[Union[str, Pattern[str]]]] = None,
        banned_charsets: Optional[Iterable[str]] = None,
        charsets_8bit: Optional[Iterable[str]] = None,
        exempt_senders: Optional[Iterable[str]] = None,
        message: Optional[str] = None,
    ) -> None:
        self.patterns = [_compile(p) for p in (PATTERNS if patterns is None else patterns)]
        banned = BANNED_CHARSETS if banned_charsets is None else banned_charsets
        self.banned = {charset.lower() for charset in banned}
        self.charsets_8bit = list(CHARSETS_8BIT if charsets_8bit is None else charsets_8bit)
        exempt = EXEMPT_SENDERS if exempt_senders is None else exempt_senders
        self.exempt = {address.lower() for address in exempt}
        self.message = MESSAGE if message is None else message

    def __call__(self, info: Any, headers: Any, fd: int) -> None:
        if info.sender_address.lower() in self.exempt:
            return
        for raw in headers.get_all("subject") or []:
            for charset in encoded_charsets(raw):
                if charset in self.banned:
                    raise RejectSpam(CHARSET_MESSAGE.format(charset=charset, subject=raw))
        for subject in decoded_subjects(headers, self.charsets_8bit):
            for pattern in self.patterns:
                if pattern.search(subject):
                    raise RejectSpam(self.message.format(subject=subject, charset=""))


def local_scan(info: Any, headers: Any, fd: int) -> None:
    """Reject per this module's constants."""
    SubjectFilter()(info, headers, fd)
