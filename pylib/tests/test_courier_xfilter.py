"""courier.xfilter: a header edit lands in the data file, and only through submit()."""

import os
import subprocess
import sys

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


def test_upstream_s_names_errors_and_attributes(tmp_path):
    body, ctls = message(tmp_path)
    edit = xfilter.XFilter("test", body, ctls)
    assert (edit.filter_name, edit.body_path, edit.control_paths) == ("test", body, ctls)
    assert edit.message is edit.get_message() and edit.control_data["s"] == "a@example.net"
    assert issubclass(xfilter.InitError, xfilter.XFilterError)
    with pytest.raises(xfilter.XFilterError):
        xfilter.XFilter("test", str(tmp_path / "gone"), ctls)
    with pytest.raises(xfilter.InitError):  # not only a missing file: any failure to load
        xfilter.XFilter("test", body, None)


def test_importing_xfilter_makes_courier_config_available_as_upstream_s_does():
    # Upstream's filters (add_signature) call courier.config having imported only xfilter.
    code = "import courier.xfilter, courier\nprint(hasattr(courier, 'config'))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out == "True\n"


def test_upstream_s_other_courier_modules_still_import_where_it_is_installed(tmp_path):
    # courier.authdaemon, .quarantine, .sendmail are upstream's alone; mtapy's modules win.
    upstream = tmp_path / "upstream" / "courier"
    upstream.mkdir(parents=True)
    (upstream / "__init__.py").write_text("")
    (upstream / "authdaemon.py").write_text("WHOSE = 'upstream'\n")
    (upstream / "control.py").write_text("WHOSE = 'upstream'\n")
    code = ("import courier.authdaemon, courier.control\n"
            "print(courier.authdaemon.WHOSE, hasattr(courier.control, 'get_sender'))\n")
    env = {**os.environ, "PYTHONPATH": os.environ["PYTHONPATH"] + os.pathsep +
           str(tmp_path / "upstream")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env).stdout
    assert out == "upstream True\n"
