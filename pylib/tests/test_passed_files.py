"""mtapy.passed_files: a Courier message's paths open through the descriptors passed in.

The paths here name nothing on disk, as Courier's spool is out of the pool user's reach: only
the descriptors reach the files.
"""

import builtins
import io
import os
import pathlib
import subprocess

import pytest

from mtapy import passed_files

BODY = b"Subject: hello\n\n" + b"".join(b"line %d\n" % i for i in range(20000))  # ~150 KB
DATA, CONTROL = "/spool/tmp/1/D1", "/spool/tmp/1/C1"


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.setattr(builtins, "open", passed_files.open)
    monkeypatch.setattr(io, "open", passed_files.open)
    for name in ("stat", "lstat", "access"):
        monkeypatch.setattr(os, name, getattr(passed_files, name))
    fds = []
    for name, content in (("data", BODY), ("control", b"sa@example.net\n")):
        (tmp_path / name).write_bytes(content)
        fds.append(os.open(tmp_path / name, os.O_RDWR))
    yield tmp_path, fds
    for fd in fds:
        os.close(fd)


def test_reads_whole_and_by_line_each_with_a_position_of_its_own(files):
    _, fds = files
    with passed_files.serving([DATA, CONTROL], fds):
        with open(DATA, "rb") as whole, open(DATA, "rb") as lines:
            assert lines.readline() == b"Subject: hello\n"
            assert whole.read() == BODY  # not moved by the other file object
            assert lines.readline() == b"\n"
            assert list(lines)[-1] == BODY.splitlines(True)[-1]
        with open(DATA) as text:  # text mode too
            assert text.read() == BODY.decode()
        with open(CONTROL, "rb") as control:
            assert control.read() == b"sa@example.net\n"
            assert os.fstat(control.fileno()).st_size == len(b"sa@example.net\n")
            with pytest.raises(io.UnsupportedOperation):
                control.write(b"x")


def test_appends_and_rewrites_land_in_the_passed_files(files):
    tmp_path, fds = files
    with passed_files.serving([DATA, CONTROL], fds):
        with open(CONTROL, "a") as control:
            control.write("rb@example.com\n")
        with open(DATA, "r+b") as body:
            body.seek(9)
            body.write(b"HELLO")
        with open(DATA, "rb") as body:
            assert body.read(14) == b"Subject: HELLO"
        with open(DATA, "wb") as body:  # truncated, as a fresh open() for writing would
            body.write(b"new\n")
    assert (tmp_path / "control").read_bytes() == b"sa@example.net\nrb@example.com\n"
    assert (tmp_path / "data").read_bytes() == b"new\n"


def test_only_the_calls_paths_and_only_during_the_call(files):
    tmp_path, fds = files
    with passed_files.serving([DATA, CONTROL], fds):
        assert open("/spool/tmp/1/./D1", "rb").read(7) == b"Subject"  # tidied, still found
        with pytest.raises(FileNotFoundError):
            open("/spool/tmp/1/D2", "rb")  # another message: opened as usual
        assert open(tmp_path / "control", "rb").read() == b"sa@example.net\n"
    with pytest.raises(FileNotFoundError):
        open(DATA, "rb")  # the call is over


def test_a_file_kept_past_its_call_keeps_its_own_descriptor(files):
    _, fds = files
    with passed_files.serving([DATA, CONTROL], fds):
        kept = open(DATA, "rb")
    assert kept.fileno() not in fds  # a dup: closing the passed descriptors spares it
    assert kept.read(7) == b"Subject"
    kept.close()


def test_stat_and_access_answer_for_the_calls_paths_only_during_the_call(files):
    _, fds = files
    os.close(fds[1])
    fds[1] = os.open(files[0] / "control", os.O_RDONLY)
    with passed_files.serving([DATA, CONTROL], fds):
        assert os.path.getsize(DATA) == len(BODY)  # upstream's spamassassin filter asks this
        assert os.path.isfile(CONTROL) and pathlib.Path(DATA).stat().st_size == len(BODY)
        assert os.lstat(CONTROL).st_size == len(b"sa@example.net\n")
        assert os.access(DATA, os.R_OK | os.W_OK) and os.access(CONTROL, os.R_OK)
        assert not os.access(CONTROL, os.W_OK) and not os.access(DATA, os.X_OK)
        assert not os.path.exists("/spool/tmp/1/D2")  # another message: as usual
    assert not os.path.exists(DATA)  # the call is over


def test_installed_wrappers_keep_shutil_s_symlink_safe_functions(tmp_path):
    # shutil picks its symlink-attack-safe rmtree() and copystat() by os.supports_*; a
    # wrapper missing there turned rmtree() unsafe and broke copystat(follow_symlinks=False).
    probe = """
import os, shutil, sys
from mtapy import passed_files
passed_files.install()
import shutil, importlib
importlib.reload(shutil)
folder = sys.argv[1]
os.symlink("nowhere", folder + "/a")
shutil.copystat(folder + "/a", folder + "/a", follow_symlinks=False)
print(shutil.rmtree.avoids_symlink_attacks, "ok")
"""
    r = subprocess.run(["/usr/bin/python3", "-c", probe, str(tmp_path)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.split() == ["True", "ok"], (r.stdout, r.stderr)
