"""elspy.util: body helpers leave the shared fd where they found it; logging; old imports."""

import logging
import os
import tempfile

import pytest

import elspy
from elspy import HeaderList, get_fdpos, open_body, parse_message, read_data, set_fdpos
from elspy.util import LOG_MAIN, LOG_PANIC, LOG_REJECT, log_error, log_write, transfer_data


@pytest.fixture
def fd():
    with tempfile.TemporaryFile() as spool:
        spool.write(b"id-D\nline 1\nline 2\n")
        spool.flush()
        os.lseek(spool.fileno(), 5, os.SEEK_SET)
        yield spool.fileno()


def test_read_data_reads_the_body_and_leaves_the_offset(fd):
    assert read_data(fd) == b"line 1\nline 2\n" and get_fdpos(fd) == 5
    set_fdpos(fd, 12)
    assert read_data(fd) == b"line 2\n"


def test_transfer_data_copies_the_rest_of_the_body(fd, tmp_path):
    with (tmp_path / "copy").open("wb") as target:
        transfer_data(fd, target.fileno())
    assert (tmp_path / "copy").read_bytes() == b"line 1\nline 2\n" and get_fdpos(fd) == 5


def test_open_body_gives_a_file_that_does_not_close_the_fd(fd):
    with open_body(fd) as body:
        assert body.readline() == b"line 1\n"
    assert os.fstat(fd)


def test_parse_message_joins_headers_and_body(fd):
    msg = parse_message(HeaderList([b"Subject: s\n"]), fd)
    assert msg["Subject"] == "s" and msg.get_payload() == "line 1\nline 2\n"


def test_log_write_maps_exim_selectors_to_levels(caplog):
    caplog.set_level(logging.DEBUG, logger="elspy")
    log_write(LOG_MAIN, "main")
    log_write(LOG_REJECT, "reject")
    log_write(LOG_MAIN | LOG_PANIC, "panic")
    log_error("oops")
    levels = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert levels == [
        (logging.INFO, "main"),
        (logging.WARNING, "reject"),
        (logging.ERROR, "panic"),
        (logging.INFO, "error: oops"),
    ]


def test_elspy_02_style_imports_still_work():
    from elspy.util import RejectVirus, RejectVirusRelated
    from elspy.util import parse_message as old_parse_message

    assert RejectVirus is elspy.RejectVirus and old_parse_message is parse_message
    assert issubclass(RejectVirusRelated, elspy.RejectMessage)
    assert elspy.RejectMessage.disposition == elspy.LOCAL_SCAN_REJECT
    assert elspy.RejectMessage("x").msg == "x" and str(elspy.RejectMessage(b"\xff")) == "\udcff"
