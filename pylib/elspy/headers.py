"""elspy.headers - HeaderList, the message's header lines as local_scan() sees them.

DESCRIPTION  Built from the lines Exim holds, each exactly b"Name: value\\n" (folded lines and
             raw 8-bit bytes included). Reading never raises and never loses a byte:
             - get(name) / get_all(name) / iteration give the value as text: the raw bytes
               decoded as UTF-8 with errors="surrogateescape", unfolded (line breaks before
               white space removed, RFC 5322 2.2.3) and stripped of surrounding white space.
               RFC 2047 encoded words are left as they are, as elspy did; get_decoded() decodes
               them (see elspy/encoding.py). raw_lines() and get_raw() give the exact bytes.
             - names compare case-insensitively; get() is the first occurrence.
             Changes are recorded for Exim: add(name, value) appends a header (RFC 2047-encoding
             non-ASCII values), remove(name) drops every header of that name. changes() lists
             them for mtapy.local_scan; Exim applies removals to the received headers first,
             then appends the additions, so "remove then add" replaces a header.
SEE ALSO     elspy/encoding.py, mtapy/local_scan.py
"""

import os
from typing import IO, Any, Iterable, Iterator, List, NamedTuple, Tuple, Union

from elspy.encoding import (
    check_field_name,
    decode_8bit,
    decode_raw,
    decode_rfc2047,
    encode_raw,
    format_header,
    unfold,
)


class _Line(NamedTuple):
    name: str  # as written in the message
    key: str  # lower-case name, for lookups
    raw: bytes  # the whole line, final newline included
    added: bool  # added by the policy (not one Exim received)


def _parse(raw: Union[bytes, str], added: bool = False) -> _Line:
    """Split one raw header line into its name; a line without a colon gets the name ""."""
    if isinstance(raw, str):
        raw = encode_raw(raw)
    if not raw.endswith(b"\n"):
        raw += b"\n"
    colon = raw.find(b":")
    name = decode_raw(raw[:colon]).rstrip(" \t") if colon > 0 else ""
    return _Line(name, name.lower(), raw, added)


def _value(line: _Line) -> str:
    """The line's value as text: after the colon, unfolded, outer white space stripped."""
    text = decode_raw(line.raw)
    if line.name:
        text = text.split(":", 1)[1]
    return unfold(text).strip(" \t\r\n")


class HeaderList:
    """The message's headers: read them, add some, remove some (elspy's HeaderList)."""

    def __init__(self, lines: Iterable[Union[bytes, str]] = ()) -> None:
        self._lines: List[_Line] = [_parse(line) for line in lines]
        self._removed: List[str] = []

    # -- reading --------------------------------------------------------------------------

    def get(self, name: str, default: Any = None) -> Any:
        """The first `name` header's value (see the module docstring), or `default`."""
        key = name.lower()
        for line in self._lines:
            if line.key == key:
                return _value(line)
        return default

    def get_all(self, name: str, default: Any = None) -> Any:
        """Every `name` header's value, in message order; [] (or `default`) if none."""
        key = name.lower()
        found = [_value(line) for line in self._lines if line.key == key]
        if not found and default is not None:
            return default
        return found

    def get_decoded(self, name: str, default: Any = None, charsets: Iterable[str] = ()) -> Any:
        """The first `name` value with RFC 2047 words decoded; never raises.

        Unlabelled 8-bit bytes stay surrogates unless one of `charsets` (e.g. "euc-kr")
        decodes them.
        """
        value = self.get(name)
        if value is None:
            return default
        return decode_rfc2047(decode_8bit(value, charsets))

    def get_raw(self, name: str, default: Any = None) -> Any:
        """The first `name` header's exact line as bytes (newline included), or `default`."""
        key = name.lower()
        for line in self._lines:
            if line.key == key:
                return line.raw
        return default

    def raw_lines(self) -> List[bytes]:
        """Every header line's exact bytes, newline included, in message order."""
        return [line.raw for line in self._lines]

    def keys(self) -> List[str]:
        """Header names in message order, repeated names repeated."""
        return [line.name for line in self._lines]

    def values(self) -> List[str]:
        """Header values in message order."""
        return [_value(line) for line in self._lines]

    def items(self) -> List[Tuple[str, str]]:
        """(name, value) pairs in message order."""
        return [(line.name, _value(line)) for line in self._lines]

    def __iter__(self) -> Iterator[Tuple[str, str]]:
        return iter(self.items())

    def __len__(self) -> int:
        return len(self._lines)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get_raw(name) is not None

    def __getitem__(self, index: Union[int, str]) -> Any:
        """headers["Subject"] is get("Subject"); headers[0] is the first (name, value)."""
        if isinstance(index, str):
            return self.get(index)
        line = self._lines[index]
        return (line.name, _value(line))

    # -- changing -------------------------------------------------------------------------

    def add(self, name: str, value: Union[str, bytes]) -> None:
        """Append a header; non-ASCII values are RFC 2047-encoded, long ones folded."""
        if isinstance(value, (bytes, bytearray)):
            value = decode_raw(bytes(value))
        self._lines.append(_parse(format_header(name, value), added=True))

    def remove(self, name: str) -> int:
        """Remove every `name` header (received or added); return how many went."""
        key = check_field_name(name).lower()
        kept = [line for line in self._lines if line.key != key]
        gone = [line for line in self._lines if line.key == key]
        if any(not line.added for line in gone) and key not in map(str.lower, self._removed):
            self._removed.append(name)
        self._lines = kept
        return len(gone)

    def __delitem__(self, name: str) -> None:
        self.remove(name)

    def changes(self) -> Tuple[List[bytes], List[bytes]]:
        """(added lines without their final newline, names of removed received headers)."""
        added = [line.raw[:-1] for line in self._lines if line.added]
        return added, [encode_raw(name) for name in self._removed]

    # -- output ---------------------------------------------------------------------------

    def as_bytes(self) -> bytes:
        """The header block as the message now has it (no blank line after it)."""
        return b"".join(line.raw for line in self._lines)

    def as_string(self) -> str:
        """as_bytes() as text (surrogateescape, so it encodes back exactly)."""
        return decode_raw(self.as_bytes())

    def __str__(self) -> str:
        return self.as_string()

    def __repr__(self) -> str:
        return f"<HeaderList {self.keys()!r}>"

    def write(self, file: Union[IO[Any], int]) -> None:
        """Write the header block to a binary or text file (or an fd); bytes stay exact."""
        data = self.as_bytes()
        if isinstance(file, int):
            view = memoryview(data)
            while view:
                view = view[os.write(file, view) :]
            return
        try:
            file.write(data)
            return
        except TypeError:
            pass
        buffer = getattr(file, "buffer", None)
        if buffer is not None:
            file.flush()
            buffer.write(data)
        else:
            file.write(decode_raw(data))


__all__ = ["HeaderList"]
