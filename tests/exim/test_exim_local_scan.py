"""Exim local_scan through mtapy, end to end: a real Exim daemon with local_scan_path set to
mtapy_exim.so, a real mtapy-workerd whose pool runs as a user that cannot read Exim's spool,
swaks and smtplib as clients, and the delivered maildir files as the proof."""

import hashlib
import pathlib
import re
import smtplib

import pytest

from conftest import Daemon, pool_toml, wait_for, write_policy
from exim_harness import DOMAIN, Exim, free_port, main_config

HERE_POLICY = "local_scan_policy.py"

ACLS = """\
acl_connect:
  accept
acl_mail:
  accept
acl_rcpt:
  accept domains = +local_domains
  deny   message = relay not permitted
acl_data:
  accept
"""


def with_local_scan(config):
    """The harness's config plus Debian's local_scan_path and room for a 50 MB body."""
    return config.replace(
        "acl_smtp_connect",
        "local_scan_path    = MTAPY_SO\nlocal_scan_timeout = 60s\n"
        "message_size_limit = 80M\nrecipients_max     = 10000\n\nacl_smtp_connect",
        1,
    )


def start_scan_daemon(stage, name, **pool_options):
    source = (pathlib.Path(__file__).parent / HERE_POLICY).read_text()
    policy = write_policy(stage, f"{name}.py", source)
    pools = pool_toml(
        "scan", policy, user="mtapy-t2", clients=("Debian-exim", "root"), **pool_options
    )
    daemon = Daemon(stage, name, pools)
    daemon.start()
    conf = daemon.dir / "shim-scan.conf"
    conf.write_text(f"socket_dir = {daemon.dir}\npool = scan\ntimeout = 5s\n")
    conf.chmod(0o644)
    return daemon, conf


def start_exim(stage, name, daemon, shim_conf):
    directory = stage / "run" / f"{name}-exim"
    port = free_port()
    text = with_local_scan(
        main_config(
            directory, port, stage / "bin" / "mtapy_exim.so", daemon.readsocket, "dlfunc", ACLS
        )
    )
    return Exim(directory, text, shim_conf, port).start()


@pytest.fixture(scope="module")
def scanning(stage):
    daemon, conf = start_scan_daemon(stage, "local-scan", timeout="2s", process_limit=2)
    exim = start_exim(stage, "local-scan", daemon, conf)
    yield exim, daemon
    exim.stop()
    daemon.stop()


def send(exim, subject, to=("user1@mtapy.test",), body="hello\n", extra=()):
    """swaks one message; returns the last SMTP reply line and the queue id if accepted."""
    args = [
        "--from",
        "alice@client.test",
        "--to",
        ",".join(to),
        "--header",
        f"Subject: {subject}",
        "--body",
        body,
        *extra,
    ]
    _, transcript = exim.swaks(*args)
    replies = [
        r for r in re.findall(r"^<[-*~]+ +(\d{3} .*)$", transcript, re.M) if not r.startswith("221")
    ]
    queued = re.search(r"250 OK id=(\S+)", transcript)
    return replies[-1] if replies else transcript, queued.group(1) if queued else None


def delivered(exim, local_part, message_id):
    assert exim.wait_delivered(message_id), exim.mainlog()
    return exim.mailbox(local_part).decode(errors="replace")


def crlf(message):
    return message.replace(b"\n", b"\r\n")


def unfolded(mail):
    return re.sub(r"\r?\n[ \t]+", " ", mail.decode(errors="replace"))


def test_accepted_mail_carries_the_policy_header_and_the_policy_ran_as_the_pool_user(
    scanning, users
):
    exim, _ = scanning
    reply, qid = send(exim, "plain hello", extra=["--header", "X-Remove-Me: secret"])
    assert reply.startswith("250"), reply
    mail = delivered(exim, "user1", qid)
    assert f"uid={users['mtapy-t2'].pw_uid} " in unfolded(mail.encode())
    assert "X-Remove-Me" not in mail  # removed by the policy


def test_reject_gives_550_with_the_policy_text_and_nothing_is_delivered(scanning):
    exim, _ = scanning
    reply, qid = send(exim, "please reject-me")
    assert reply == "550 rejected by Python: no thanks"
    assert qid is None


def test_temporary_reject_gives_451_with_the_policy_text(scanning):
    exim, _ = scanning
    reply, _ = send(exim, "later-please")
    assert reply == "451 Python says: try again later"


def test_a_recipient_added_and_one_removed_show_in_delivery(scanning):
    exim, _ = scanning
    reply, qid = send(exim, "change-recipients", to=("user1@mtapy.test", "user2@mtapy.test"))
    assert reply.startswith("250"), reply
    assert exim.wait_delivered(qid), exim.mainlog()
    log = exim.mainlog()
    assert re.search(rf"{qid} => postmaster <postmaster@{DOMAIN}>", log), log
    assert re.search(rf"{qid} => user1 <user1@{DOMAIN}>", log), log
    assert not re.search(rf"{qid} => user2 ", log), log


@pytest.mark.parametrize("size", [1024, 50 * 1024 * 1024])
def test_the_body_the_policy_reads_is_the_body_exim_received(scanning, size):
    exim, _ = scanning
    line = b"0123456789abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789\n"
    body = (line * (size // len(line) + 1))[: size - 1] + b"\n"
    message = f"From: alice@client.test\nSubject: body check {size}\n\n".encode() + body
    with smtplib.SMTP("127.0.0.1", exim.port, timeout=60) as smtp:
        # SMTP wants CRLF; Exim stores LF, which is what the policy must read.
        smtp.sendmail("alice@client.test", ["user1@mtapy.test"], crlf(message))
    seen = f"len={len(body)} sha256={hashlib.sha256(body).hexdigest()}"
    assert wait_for(lambda: seen in unfolded(exim.mailbox("user1")), 30), exim.mainlog()


def test_8bit_korean_subject_broken_mime_empty_body_and_missing_headers_are_accepted(scanning):
    exim, _ = scanning
    euc_kr, utf8 = b"\xc7\xd1\xb1\xdb spam", "한국어 제목".encode()
    cases = {
        "euc-kr": b"From: a@client.test\nSubject: " + euc_kr + b"\n\nbody\n",
        "utf-8": b"From: a@client.test\nSubject: " + utf8 + b"\n\nbody\n",
        "broken-mime": b"Subject: mime\nMIME-Version: 1.0\nContent-Type: multipart/mixed; "
        b'boundary="zzz"\n\n--zzz\nContent-Type: text/plain\n\nno end\n--zz\n',
        "empty-body": b"Subject: empty\n\n",
        "no-headers": b"\njust a body\n",
    }
    with smtplib.SMTP("127.0.0.1", exim.port, timeout=30) as smtp:
        for name, message in cases.items():
            smtp.ehlo()
            smtp.mail("alice@client.test")
            smtp.rcpt("user2@mtapy.test")
            code, text = smtp.data(crlf(message))
            assert code == 250, (name, code, text)
    assert wait_for(lambda: exim.mailbox("user2").count(b"X-Scanned:") >= len(cases))
    mail = unfolded(exim.mailbox("user2"))
    # The policy saw each raw 8-bit subject byte for byte, whatever its charset.
    assert f"subject={euc_kr.hex()}" in mail
    assert f"subject={utf8.hex()}" in mail
    assert "len=0 " in mail  # the empty body


def test_5000_recipients_reach_the_policy_and_its_recipient_changes_apply(scanning):
    exim, _ = scanning
    recipients = [f"r{i}@mtapy.test" for i in range(4999)] + ["user1@mtapy.test"]
    with smtplib.SMTP("127.0.0.1", exim.port, timeout=60) as smtp:
        refused = smtp.sendmail("alice@client.test", recipients,
                                crlf(b"Subject: keep-user1-only\n\nmany\n"))
    assert refused == {}
    assert wait_for(lambda: b"keep-user1-only" in exim.mailbox("user1"), 30)
    assert "rcpts=5000" in unfolded(exim.mailbox("user1"))


def test_a_header_too_long_for_exim_defers_instead_of_killing_the_smtp_process(scanning):
    exim, _ = scanning
    reply, qid = send(exim, "huge-header")
    assert reply.startswith("451 "), reply  # not 421: the Exim process survived
    assert "header line over 30 KiB" in exim.mainlog()
    assert exim.paniclog() == ""


@pytest.mark.parametrize(
    "subject, log_text",
    [
        ("raise-error", "RuntimeError: policy bug on purpose"),
        ("sleep-long", "did not answer within 2000 ms"),
        ("crash-worker", "exited with status 3"),
    ],
)
def test_policy_failures_defer_with_451_and_lose_nothing(scanning, subject, log_text):
    exim, daemon = scanning
    reply, qid = send(exim, subject)
    assert reply.startswith("451 "), reply
    assert qid is None  # the sender still has the message and will retry
    assert wait_for(lambda: log_text in daemon.log()), daemon.log()
    reply, qid = send(exim, "after the failure")  # the pool recovered
    assert reply.startswith("250"), reply


def test_daemon_down_defers_with_451_and_a_restart_is_picked_up(stage):
    daemon, conf = start_scan_daemon(stage, "local-scan-down")
    exim = start_exim(stage, "local-scan-down", daemon, conf)
    try:
        daemon.stop()
        reply, qid = send(exim, "daemon is down")
        assert reply.startswith("451 "), reply
        assert qid is None
        assert "cannot reach mtapy-workerd" in exim.mainlog()
        daemon.start()
        reply, _ = send(exim, "daemon is back")
        assert reply.startswith("250"), reply
    finally:
        exim.stop()
        daemon.stop()


def test_a_fail_open_pool_accepts_when_the_policy_fails(stage):
    daemon, conf = start_scan_daemon(stage, "local-scan-open", on_error="accept")
    exim = start_exim(stage, "local-scan-open", daemon, conf)
    try:
        reply, qid = send(exim, "raise-error")
        assert reply.startswith("250"), reply
        assert "RuntimeError: policy bug on purpose" in daemon.log()
    finally:
        exim.stop()
        daemon.stop()
