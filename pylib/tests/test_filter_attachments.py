"""mtapy.filters.attachments: executables are found by name, by content, and inside zips."""

import io
import random
import zipfile
from email.message import EmailMessage

import pytest

from mtapy.filters import attachments
from mtapy.filters.attachments import AttachmentFilter
from mtapy.testing import scan

PE_HEADER = b"MZ" + b"\x90\x00" * 11 + b"\x40\x00" + b"\x00" * 100  # byte 24 is 0x40


def mail(*parts):
    """A multipart message with a text part and (filename, data[, maintype/subtype]) parts."""
    msg = EmailMessage()
    msg["From"] = "a@example.org"
    msg["Subject"] = "files"
    msg.set_content("see attached\n")
    for filename, data, *kind in parts:
        maintype, subtype = (kind[0] if kind else "application/octet-stream").split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes()


def zipped(**members):
    """An in-memory zip file of name=bytes members (names use __ for a dot)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name.replace("__", "."), data)
    return buffer.getvalue()


def verdict(message, check=attachments):
    return scan(check, message).verdict


@pytest.mark.parametrize(
    "filename", ["setup.exe", "INVOICE.PDF.SCR", "run.bat", "x.js", "trick.exe. . ", "a.vbs"]
)
def test_an_executable_attachment_name_is_rejected(filename):
    result = scan(attachments, mail((filename, b"data")))
    assert result.verdict == "reject" and "looks like a virus" in result.message


@pytest.mark.parametrize(
    "filename", ["report.pdf", "photo.jpg", "notes.txt", "exe", "data.exe.txt"]
)
def test_harmless_attachment_names_are_accepted(filename):
    assert verdict(mail((filename, b"data"))) == "accept"


def test_a_non_ascii_rfc2231_file_name_is_decoded_and_checked():
    assert verdict(mail(("설치파일.exe", b"data"))) == "reject"
    assert verdict(mail(("보고서.pdf", b"data"))) == "accept"


def test_rfc2047_names_and_content_type_names_are_checked():
    body = (
        b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n"
        b"--b\nContent-Type: text/plain\n\nhi\n"
        b'--b\nContent-Type: application/octet-stream; name="=?utf-8?q?evil=2Eexe?="\n\nxx\n'
        b"--b--\n"
    )
    assert verdict(body) == "reject"


def test_windows_executable_content_is_found_under_any_name():
    assert verdict(mail(("photo.jpg", PE_HEADER))) == "reject"
    assert (
        verdict(mail(("photo.jpg", PE_HEADER)), AttachmentFilter(check_content=False)) == "accept"
    )


def test_an_executable_inside_a_zip_is_rejected():
    result = scan(attachments, mail(("docs.zip", zipped(readme__txt=b"hi", setup__scr=b"x"))))
    assert result.verdict == "reject" and "setup.scr" in result.message


def test_a_zip_of_harmless_files_is_accepted():
    assert verdict(mail(("docs.zip", zipped(readme__txt=b"hi", data__csv=b"1,2")))) == "accept"


def test_executable_content_inside_a_zip_is_rejected():
    assert verdict(mail(("docs.zip", zipped(notes__txt=PE_HEADER)))) == "reject"


def test_a_renamed_zip_is_recognised_by_its_signature():
    assert verdict(mail(("archive.dat", zipped(evil__exe=b"x")))) == "reject"


def test_nested_zips_are_opened_down_to_zip_depth():
    inner = zipped(run__js=b"alert(1)")
    message = mail(("outer.zip", zipped(inner__zip=inner)))
    assert verdict(message) == "reject"
    assert verdict(message, AttachmentFilter(zip_depth=1)) == "accept"


def test_an_unreadable_zip_is_rejected_unless_configured_otherwise():
    message = mail(("broken.zip", b"PK\x03\x04 this is not really a zip"))
    assert verdict(message) == "reject"
    assert verdict(message, AttachmentFilter(invalid_zip="accept")) == "accept"


def test_a_uuencoded_executable_in_the_body_is_rejected():
    body = b"Subject: old school\n\nhere it is\nbegin 644 game.exe\nM9&%T80``\n`\nend\n"
    assert verdict(body) == "reject"


def test_an_executable_in_a_forwarded_message_is_rejected():
    inner = EmailMessage()
    inner["Subject"] = "inner"
    inner.set_content("x")
    inner.add_attachment(b"data", maintype="application", subtype="octet-stream", filename="a.exe")
    outer = EmailMessage()
    outer["Subject"] = "fwd"
    outer.set_content("forwarded")
    outer.add_attachment(inner)
    assert verdict(outer.as_bytes()) == "reject"


@pytest.mark.parametrize(
    "body",
    [
        b'Content-Type: multipart/mixed; boundary="x"\n\n--x\nContent-Type: text/plain\n\nno end',
        b"Content-Type: multipart/mixed\n\nno boundary parameter\n",
        b"Content-Type: application/octet-stream; name=a.txt\n"
        b"Content-Transfer-Encoding: base64\n\n%%%% not base64 !!!\n",
        b"Content-Type: text/plain; charset=no-such-charset\n\n\xff\xfe\n",
        b"Content-Type: application/x; name*=bogus''%ZZ.txt\n\nx\n",
        b"Content-Type: multipart/mixed; boundary=a\n\n--a\nContent-Type: multipart/mixed; "
        b"boundary=a\n\n--a\n--a--\n",
        b"Content-Disposition: attachment; filename=\n\nx\n",
        b"Content-Type: ;;;; name=\n\n\x00\x01\x02",
    ],
    ids=[
        "no-end",
        "no-boundary",
        "bad-base64",
        "bad-charset",
        "bad-rfc2231",
        "nested-same",
        "empty-filename",
        "garbage",
    ],
)
def test_broken_mime_is_accepted_without_crashing(body):
    assert verdict(body) == "accept"


def test_randomly_damaged_messages_never_crash_the_filter():
    rng = random.Random(2004)
    original = mail(("docs.zip", zipped(readme__txt=b"hi")), ("a.pdf", b"%PDF"))
    for _ in range(150):
        damaged = bytearray(original)
        for _ in range(rng.randint(1, 20)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        cut = rng.randrange(len(damaged) // 2, len(damaged) + 1)
        assert verdict(bytes(damaged[:cut])) in ("accept", "reject")


def test_messages_over_max_size_are_accepted_unscanned():
    assert verdict(mail(("a.exe", b"x" * 1000)), AttachmentFilter(max_size=100)) == "accept"
