"""courier.xfilter: a header edit lands in the data file, and only through submit()."""

import pytest

from courier import xfilter

BODY = (b"Received: from client.example.net\n  by mx.example.test with ESMTP\n"
        b"From: a@example.net\nSubject: hello\n\nline one\nFrom the start\n")


def message(tmp_path):
    body, ctl = tmp_path / "D1", tmp_path / "C1"
    body.write_bytes(BODY)
    ctl.write_bytes(b"sa@example.net\nrb@example.test\nR\nN\n")
    return str(body), [str(ctl)]


def test_a_header_edit_is_written_back_by_submit(tmp_path):
    body, ctls = message(tmp_path)
    edit = xfilter.XFilter("test", body, ctls)
    assert edit.get_control_data()["s"] == "a@example.net"
    edit.get_message()["X-Test-Header"] = "A new header!"
    assert open(body, "rb").read() == BODY  # nothing until submit
    assert edit.submit() == ""
    written = open(body, "rb").read()
    assert b"X-Test-Header: A new header!\n" in written and b"\nFrom the start\n" in written
    assert written.endswith(b"\n") and b">From" not in written


def test_the_dummy_changes_nothing_and_a_missing_file_is_an_init_error(tmp_path):
    body, ctls = message(tmp_path)
    dummy = xfilter.DummyXFilter("test", body, ctls)
    dummy.getMessage()["X-Other"] = "x"
    assert dummy.submit() == "" and open(body, "rb").read() == BODY
    with pytest.raises(xfilter.InitError):
        xfilter.XFilter("test", str(tmp_path / "gone"), ctls)


def test_a_message_that_cannot_be_written_leaves_the_data_file_as_it_was(tmp_path):
    body, ctls = message(tmp_path)
    edit = xfilter.XFilter("test", body, ctls)
    edit.get_message().set_payload("café body\n")  # a str body without a charset
    with pytest.raises(UnicodeEncodeError):
        edit.submit()
    assert open(body, "rb").read() == BODY
