"""mtapy.filters.attachments - reject messages that carry executable attachments.

DESCRIPTION  A port of elspy's execontent_smart (after Neil Schemenauer's qmail filter), from
             the elspy talk. The message is parsed with the email package, which records
             broken MIME as defects instead of failing, and every leaf part is checked:
             - its file names (Content-Disposition filename, Content-Type name; RFC 2231 and
               RFC 2047 forms decoded; trailing dots and spaces ignored, as Windows does) by
               extension against BAD_EXTENSIONS;
             - with CHECK_CONTENT, its decoded content for a Windows executable header;
             - a zip file (by name or by its "PK" signature) is opened with zipfile and its
               member names (and contents) checked the same way, nested zips up to ZIP_DEPTH;
             - uuencoded files ("begin 644 name") anywhere in the body, by name.
CONFIG       BAD_EXTENSIONS  lower-case extensions without the dot.
             CHECK_CONTENT   also reject Windows executables by content (default True).
             ZIP_DEPTH       how deep to look into zips within zips (0: do not open zips).
             INVALID_ZIP     "reject" (elspy's choice: malware hides in broken zips) or
                             "accept" a zip attachment that cannot be read.
             MAX_SIZE        larger messages are accepted unscanned (bytes; default 64 MiB).
             MESSAGE         the reply text; "{why}" expands to the reason.
             Or: local_scan = AttachmentFilter(bad_extensions=[...], zip_depth=1).
DIAGNOSTICS  Raises RejectVirus (a RejectMessage: 550). An unparseable message is accepted and
             logged, never a crash; so is an oversized one.
SEE ALSO     elspy/util.py (parse_message)
"""

import io
import os
import re
import zipfile
import zlib
from email.message import Message
from email.utils import collapse_rfc2231_value
from typing import Any, Iterable, Iterator, List, Optional

from elspy.encoding import decode_rfc2047
from elspy.util import LOG_MAIN, get_fdpos, log_write, parse_message
from elspy.verdicts import RejectVirus

BAD_EXTENSIONS: List[str] = (
    "ade adp app bas bat chm cmd com cpl exe hlp hta inf ins isp jar js jse lnk mde msc msi"
    " msp mst pcd pif ps1 reg scf scr sct shb shs url vb vbe vbs wsc wsf wsh"
).split()
CHECK_CONTENT = True
ZIP_DEPTH = 2
INVALID_ZIP = "reject"
MAX_SIZE = 64 * 1024 * 1024
MESSAGE = "message rejected -- looks like a virus ({why})"

_UUENCODE = re.compile(rb"^begin [0-7]{3,4} ([^\r\n]+)", re.MULTILINE)
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    NotImplementedError,
    RuntimeError,
    EOFError,
    OSError,
    ValueError,
    zlib.error,
)


def extension(name: str) -> str:
    """The lower-case extension of a file name's last component, as Windows would see it."""
    base = re.split(r"[/\\]", name.strip())[-1].rstrip(". \t\0")
    return base.rpartition(".")[2].lower() if "." in base else ""


def is_executable(data: bytes) -> bool:
    """True if `data` starts like a Windows (MZ/PE) executable, as elspy tested it."""
    return len(data) > 24 and data[:2] == b"MZ" and data[24] == 0x40


def part_names(part: Message) -> List[str]:
    """A part's file names (disposition filename, content-type name), decoded, no repeats."""
    names: List[str] = []
    for param, header in (("filename", "content-disposition"), ("name", "content-type")):
        try:
            value = part.get_param(param, header=header)
            text = collapse_rfc2231_value(value) if isinstance(value, tuple) else value
        except Exception:  # broken parameters or charsets: no name rather than a crash
            text = None
        if isinstance(text, str) and text.strip():
            name = decode_rfc2047(text.strip().strip('"'))
            if name not in names:
                names.append(name)
    return names


class AttachmentFilter:
    """A configured attachment check; None for a setting means "the module constant"."""

    def __init__(
        self,
        bad_extensions: Optional[Iterable[str]] = None,
        check_content: Optional[bool] = None,
        zip_depth: Optional[int] = None,
        invalid_zip: Optional[str] = None,
        max_size: Optional[int] = None,
        message: Optional[str] = None,
    ) -> None:
        bad = BAD_EXTENSIONS if bad_extensions is None else bad_extensions
        self.bad = {ext.lower().lstrip(".") for ext in bad}
        self.check_content = CHECK_CONTENT if check_content is None else check_content
        self.zip_depth = ZIP_DEPTH if zip_depth is None else zip_depth
        self.invalid_zip = INVALID_ZIP if invalid_zip is None else invalid_zip
        self.max_size = MAX_SIZE if max_size is None else max_size
        self.message = MESSAGE if message is None else message

    def __call__(self, info: Any, headers: Any, fd: int) -> None:
        size = os.fstat(fd).st_size - get_fdpos(fd)
        if size > self.max_size:
            log_write(LOG_MAIN, f"attachments: {size} byte body not scanned (over max_size)")
            return
        try:
            msg = parse_message(headers, fd)
        except Exception as err:
            log_write(LOG_MAIN, f"attachments: message not scanned, cannot parse it: {err}")
            return
        for why in self.problems(msg):
            raise RejectVirus(self.message.format(why=why))

    def problems(self, msg: Message) -> Iterator[str]:
        """Why `msg` looks like it carries an executable, most obvious reason first."""
        for part in msg.walk():
            if not part.is_multipart():
                yield from self._part_problems(part)
        for match in _UUENCODE.finditer(_text_payloads(msg)):
            name = match.group(1).decode("utf-8", "surrogateescape").strip()
            if extension(name) in self.bad:
                yield f"uuencoded file {name!r} indicates executable content"

    def _part_problems(self, part: Message) -> Iterator[str]:
        """Problems of one leaf part: its names, its content, its zip members."""
        names = part_names(part)
        for name in names:
            if extension(name) in self.bad:
                yield f"attachment name {name!r} indicates executable content"
        payload = _payload(part)
        label = names[0] if names else "unnamed attachment"
        if self.check_content and is_executable(payload):
            yield f"attachment {label!r} is executable on Windows"
        is_zip = payload[:4] in _ZIP_MAGIC or any(extension(n) == "zip" for n in names)
        if is_zip and self.zip_depth > 0:
            yield from self.zip_problems(label, payload, 1)

    def zip_problems(self, label: str, data: bytes, depth: int) -> Iterator[str]:
        """Problems inside the zip file `data`, opened with zipfile."""
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                for member in archive.infolist():
                    yield from self._member_problems(label, archive, member, depth)
        except _ZIP_ERRORS as err:
            if self.invalid_zip == "reject":
                yield f"attachment {label!r} is an invalid zip file: {err}"

    def _member_problems(
        self, label: str, archive: zipfile.ZipFile, member: zipfile.ZipInfo, depth: int
    ) -> Iterator[str]:
        """Problems of one zip member: its name, its content, a nested zip."""
        if extension(member.filename) in self.bad:
            yield f"attachment {label!r} contains executable file {member.filename!r}"
            return
        if member.is_dir() or member.flag_bits & 0x1:  # encrypted: only the name is visible
            return
        nested = extension(member.filename) == "zip"
        if nested and depth < self.zip_depth and member.file_size <= self.max_size:
            yield from self.zip_problems(
                f"{label}/{member.filename}", archive.read(member), depth + 1
            )
        elif self.check_content:
            with archive.open(member) as stream:
                if is_executable(stream.read(64)):
                    yield f"attachment {label!r} contains Windows executable {member.filename!r}"


def _payload(part: Message) -> bytes:
    """A leaf part's decoded content; broken transfer encodings give what can be decoded."""
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        return b""
    return payload if isinstance(payload, bytes) else b""


def _text_payloads(msg: Message) -> bytes:
    """The leaf parts' undecoded payloads, for the uuencode search."""
    chunks = []
    for part in msg.walk():
        payload = part.get_payload()
        if isinstance(payload, str):
            chunks.append(payload.encode("utf-8", "surrogatepass"))
    return b"\n".join(chunks)


def local_scan(info: Any, headers: Any, fd: int) -> None:
    """Check per this module's constants."""
    AttachmentFilter()(info, headers, fd)
