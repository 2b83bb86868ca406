"""deploy/courier/: install.sh and the sample pool, as an administrator uses them, in real Courier.

install.sh runs in Courier's chroot (where courier-mta is installed, as on a mail host), the
sample pool (deploy/courier/pool.toml, its policy and pythonfilter.conf) runs in a daemon on
the host, with only the paths and Courier's uid changed, and mail goes through.
"""

import pathlib
import shutil
import time

import pytest

from conftest import BUILD, TOP, Daemon, ensure_user
from courier_harness import COURIER_UID, ME, Courier, CourierUnavailable

SAMPLE = TOP / "deploy" / "courier"
ALICE = f"alice@{ME}"


@pytest.fixture(scope="module")
def installed(stage):
    """Courier after install.sh, its filter pointed at a daemon running the sample pool."""
    ensure_user("mtapy-courier")
    copy = stage / "deploy"  # what the pool user and the chroot can read
    shutil.copytree(TOP / "deploy", copy)
    (copy / "build" / "shim").mkdir(parents=True)
    shutil.copy2(BUILD / "shim" / "mtapy-courierfilter", copy / "build" / "shim")
    for path in [copy, *copy.rglob("*")]:
        path.chmod(0o755 if path.is_dir() or path.suffix in ("", ".sh") else 0o644)
    pool = (SAMPLE / "pool.toml").read_text()
    pool = pool.replace('clients = ["courier"]', f"clients = [{COURIER_UID}]")
    pool = pool.replace("/etc/mtapy/courier/", f"{copy}/courier/")
    daemon = Daemon(stage, "courier-install", pool)
    daemon.start()
    try:
        courier = Courier(binds=[stage]).start()
    except CourierUnavailable as why:
        daemon.stop()
        pytest.skip(str(why))
    try:
        first = courier.run(["bash", f"{copy}/courier/install.sh", f"{copy}/build"])
        # The sample shim.conf names /run/mtapy, a production daemon's: this one's is here.
        courier._write("/etc/mtapy/shim.conf", f"socket_dir = {daemon.dir}\ntimeout = 30s\n")
        courier.restart_filters()
        yield courier, daemon, first, copy
    finally:
        courier.close()
        daemon.stop()


def mail(subject):
    return (f"From: sender@example.net\nTo: {ALICE}\nSubject: {subject}\n"
            f"Message-ID: <{time.monotonic_ns()}@example.net>\n\nHello\n").encode()


def test_install_sh_installs_and_enables_the_filter(installed):
    courier, _, first, _ = installed
    assert b"mtapy is Courier's filter" in first.stdout
    assert courier.path("/usr/lib/courier/filters/mtapy").read_bytes() == \
        (BUILD / "shim" / "mtapy-courierfilter").read_bytes()
    assert courier.path("/etc/courier/filters/active/mtapy").is_symlink()  # filterctl start
    assert courier.filter_socket("mtapy") is not None
    for name in ("policy.py", "pythonfilter.conf", "spamsubject.py", "whitelist_relayclients.py"):
        assert courier.path(f"/etc/mtapy/courier/{name}").read_bytes() == \
            (SAMPLE / name).read_bytes()


def test_the_sample_pool_passes_mail_and_refuses_a_spam_subject(installed):
    courier, daemon, _, _ = installed
    subject = f"{time.monotonic_ns()} hello"
    sent = courier.send("sender@example.net", [ALICE], mail(subject))
    assert sent.data[0] == 250, (sent, daemon.log()[-2000:])
    assert courier.wait_maildir("alice") and any(
        f"Subject: {subject}".encode() in m for m in courier.maildir("alice"))
    refused = courier.send("sender@example.net", [ALICE], mail("cheap spam here"))
    assert refused.data == (550, "5.7.1 This message looks like spam\n"
                                 "5.7.1 sender sender@example.net please rephrase"), refused
    assert "Initialized the spamsubject python filter" in daemon.log()


def test_install_sh_again_keeps_the_admins_edits(installed):
    courier, _, _, copy = installed
    edited = courier.path("/etc/mtapy/courier/pythonfilter.conf")
    edited.write_text("spamsubject\n")
    again = courier.run(["bash", f"{copy}/courier/install.sh", f"{copy}/build"])
    assert again.returncode == 0 and b"already Courier's filter" in again.stdout
    assert edited.read_text() == "spamsubject\n"
    assert courier.filter_socket("mtapy") is not None
