"""The Courier harness itself: real Courier 1.0.16 runs a courierfilter and delivers to a maildir.

The filter below is written from courierfilter(8), not from mtapy: its socket goes into the
directory its -mode file names (.NAME, chmod 0660, rename), it closes fd 3 when ready and
exits on EOF on stdin. Per connection it reads the data file's path, the control files'
paths and an empty line, and replies by the Subject. One Courier serves the whole module.
"""

import os
import pathlib
import re
import shutil
import socket
import struct
import subprocess
import tempfile

import pytest

from courier_harness import COURIER_GID, COURIER_UID, ME, Courier, CourierUnavailable, wait_for

FILTER = r'''#!/usr/bin/python3
import email, email.policy, os, select, socket, sys
NAME = os.path.basename(sys.argv[0])
LSD = "/var/lib/courier"
with open(f"/etc/courier/filters/{NAME}-mode") as f:
    DIR = LSD + ("/allfilters" if f.read().strip() == "all" else "/filters")
for stale in (f"{LSD}/filters/{NAME}", f"{LSD}/allfilters/{NAME}", f"{DIR}/.{NAME}"):
    try:
        os.unlink(stale)
    except FileNotFoundError:
        pass
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(f"{DIR}/.{NAME}")
os.chmod(f"{DIR}/.{NAME}", 0o660)
server.listen(16)
os.rename(f"{DIR}/.{NAME}", f"{DIR}/{NAME}")
os.close(3)                       # ready: `courierfilter start` returns
print(f"{NAME} ready uid={os.getuid()}", file=sys.stderr, flush=True)
while True:
    readable, _, _ = select.select([0, server], [], [])
    if 0 in readable and not os.read(0, 16):
        break                     # courierfilter stop: stdin closed
    if server in readable:
        conn, _ = server.accept()
        lines = []
        with conn, conn.makefile("rb") as f:
            while (line := f.readline()) not in (b"\n", b""):
                lines.append(line.decode().rstrip("\n"))
            with open(lines[0], "rb") as body:
                subject = str(email.message_from_binary_file(
                    body, policy=email.policy.default).get("Subject", ""))
            print(f"{NAME} request {lines}", file=sys.stderr, flush=True)
            if "spam" in subject:
                conn.sendall(b"550-5.7.1 Rejected by the test filter\n"
                             b"550 5.7.1 Subject contains spam\n")
            elif "silent" not in subject:    # "silent": close without a reply
                conn.sendall(b"200 Ok\n")
os.unlink(f"{DIR}/{NAME}")
'''


def requests_logged(courier, name):
    return [line for line in courier.syslog() if f"{name} request" in line]


def message(subject):
    return (f"From: sender@example.net\nTo: alice@{ME}\nSubject: {subject}\n"
            f"Message-ID: <{abs(hash(subject))}@example.net>\n\nBody of {subject}\n").encode()


@pytest.fixture(scope="module")
def courier():
    try:
        c = Courier().start()
    except CourierUnavailable as e:
        pytest.skip(str(e))
    c.install_filter("testfilter", FILTER, mode="all")
    yield c
    c.close()


def test_filter_is_running_as_courier_with_its_socket_in_allfilters(courier):
    assert courier.filter_socket("testfilter").parent.name == "allfilters"
    assert courier.wait_syslog(f"testfilter ready uid={COURIER_UID}"), courier.syslog_text()


def test_accepted_message_is_delivered_to_the_maildir(courier):
    sent = courier.send("sender@example.net", [f"alice@{ME}"], message("hello"))
    assert sent.rcpt == [(250, "Ok.")]
    assert sent.data[0] == 250, sent
    mails = courier.wait_maildir("alice")
    assert len(mails) == 1 and b"Subject: hello\n" in mails[0], mails
    # The filter was given the data file and the not-yet-renamed first control file.
    request = courier.wait_syslog("testfilter request")
    assert re.search(r"\['/var/lib/courier/tmp/\d+/D\d+', '/var/lib/courier/tmp/\d+/\d+\.\d+\."
                     + re.escape(ME) + r"'\]", request), request
    assert courier.wait_queue_empty(), courier.queue_files()


def test_filter_rejection_reaches_the_client_and_nothing_is_delivered(courier):
    before = len(courier.maildir("bob"))
    sent = courier.send("sender@example.net", [f"bob@{ME}"], message("buy spam now"))
    assert sent.data == (550, "5.7.1 Rejected by the test filter\n5.7.1 Subject contains spam")
    assert courier.queue_files() == []
    assert len(courier.maildir("bob")) == before


def test_filter_closing_without_reply_is_a_temporary_failure(courier):
    sent = courier.send("sender@example.net", [f"carol@{ME}"], message("silent please"))
    assert sent.data == (432, "Mail filters temporarily unavailable."), sent
    assert courier.maildir("carol") == []


def test_filter_in_filters_mode_is_skipped_for_whitelisted_mail(courier):
    """filters/ (unlike allfilters/) is skipped when every recipient is "whitelisted", and
    without a per-recipient maildrop filter (localmailfilter(7)) every recipient is: submit
    counts a recipient whose module has no filter hook, or whose hook says 0, as whitelisted.
    So with this configuration only allfilters/ sees mail (measured with Courier 1.0.16)."""
    courier.install_filter("optfilter", FILTER, mode="filters")
    try:
        assert courier.filter_socket("optfilter").parent.name == "filters"
        requests = len(requests_logged(courier, "testfilter"))
        sent = courier.send("sender@example.net", [f"bob@{ME}"], message("two filters"))
        assert sent.data[0] == 250, sent
        assert wait_for(lambda: len(requests_logged(courier, "testfilter")) > requests)
        assert requests_logged(courier, "optfilter") == []
    finally:
        courier.remove_filter("optfilter")
    assert courier.filter_socket("optfilter") is None


@pytest.fixture
def shared():
    """A host folder the chroot's courier user may enter (pytest's tmp_path is 0700)."""
    folder = pathlib.Path(tempfile.mkdtemp(prefix="mtapy-courier-shared-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


def test_bound_folder_is_shared_and_close_leaves_nothing(shared):
    """A host daemon's socket in a bound folder answers the chroot's courier user, who shows up
    as COURIER_UID in SO_PEERCRED; after close() no process or mount remains."""
    (shared / "from-host").write_text("hello\n")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(shared / "daemon.sock"))
    (shared / "daemon.sock").chmod(0o666)
    server.listen()
    server.settimeout(10)
    try:
        c = Courier(binds=[shared]).start()
    except CourierUnavailable as e:
        pytest.skip(str(e))
    with c, server:
        assert c.run(["cat", f"{shared}/from-host"]).stdout == b"hello\n"
        client = subprocess.Popen(
            ["nsenter", "-t", str(c.pid), "-m", "-p", "--", "chroot", "--userspec=courier:courier",
             c.root, "/usr/bin/python3", "-c",
             "import socket, sys; s = socket.socket(socket.AF_UNIX); "
             f"s.connect('{shared}/daemon.sock'); sys.stdout.buffer.write(s.recv(16))"],
            stdout=subprocess.PIPE)
        conn, _ = server.accept()
        pid, uid, gid = struct.unpack("3i", conn.getsockopt(
            socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
        conn.sendall(b"pong")
        conn.close()
        assert client.communicate(timeout=10)[0] == b"pong"
        assert (uid, gid) == (COURIER_UID, COURIER_GID)
        pid, base = c.pid, c.base
    assert not os.path.exists(f"/proc/{pid}")
    assert not base.exists()
    assert str(base) not in pathlib.Path("/proc/self/mountinfo").read_text()
