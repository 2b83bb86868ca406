"""mtapy.filters.spamassassin against a real spamd on loopback (GTUBE), and failure modes."""

import socket
import threading
import time

import pytest

from elspy import read_data
from mtapy.filters import chain
from mtapy.filters.spamassassin import SpamAssassin, SpamdError, parse_response
from mtapy.testing import scan

GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
HAM = (
    b"From: Alice <alice@example.org>\nTo: bob@example.net\nSubject: lunch\n"
    b"Date: Sat, 1 Jan 2000 12:00:00 +0000\nMessage-ID: <lunch@example.org>\n\n"
    b"Shall we meet at noon?\n"
)
SPAM = b"From: x@example.org\nSubject: test\nX-Spam-Status: No, forged\n\n" + GTUBE + b"\n"


def tcp(spamd, **settings):
    return SpamAssassin(host=spamd["host"], port=spamd["port"], **settings)


def test_gtube_over_tcp_is_rejected_as_spam(spamd):
    result = scan(tcp(spamd), SPAM)
    assert result.verdict == "reject" and result.smtp_code == 550
    assert result.message.startswith("message rejected as spam (score 1")


def test_ham_over_a_unix_socket_is_accepted_and_labelled(spamd):
    result = scan(SpamAssassin(socket_path=spamd["socket"]), HAM)
    assert result.verdict == "accept"
    assert result.header("X-Spam-Status").startswith("No, score=")
    assert result.header("X-Spam-Flag") is None


def test_spam_under_the_reject_threshold_is_flagged_and_forged_status_replaced(spamd):
    result = scan(tcp(spamd, reject_threshold=5000), SPAM)
    assert result.verdict == "accept"
    status = result.header("X-Spam-Status")
    assert status.startswith("Yes, score=1") and "GTUBE" in status
    assert result.header("X-Spam-Flag") == "YES"
    assert result.removed_headers == ["X-Spam-Status"]  # the forged one that came with it


def test_check_reports_the_verdict_without_rule_names(spamd):
    result = scan(tcp(spamd, command="CHECK", reject_threshold=5000), SPAM)
    assert "tests=" not in result.header("X-Spam-Status")


def test_the_body_offset_is_unchanged_for_the_next_filter(spamd):
    seen = []
    policy = chain(tcp(spamd), lambda info, headers, fd: seen.append(read_data(fd)))
    assert scan(policy, HAM).verdict == "accept"
    assert seen == [b"Shall we meet at noon?\n"]


def test_messages_over_max_size_are_not_scanned(spamd):
    result = scan(tcp(spamd, max_size=10), SPAM)
    assert result.verdict == "accept" and result.added_headers == []


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_spamd_down_means_tempreject_or_accept_as_configured():
    down = SpamAssassin(host="127.0.0.1", port=closed_port())
    result = scan(down, HAM)
    assert result.verdict == "tempreject" and result.smtp_code == 451
    relaxed = SpamAssassin(host="127.0.0.1", port=closed_port(), on_error="accept")
    assert scan(relaxed, HAM).verdict == "accept"
    missing = SpamAssassin(socket_path="/nonexistent/spamd.sock")
    assert scan(missing, HAM).verdict == "tempreject"


@pytest.fixture
def fake_spamd():
    """A TCP server answering each connection with fake_spamd.reply (None: silence)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.05)
    state = {"reply": None, "port": server.getsockname()[1], "stop": False}

    def serve():
        while not state["stop"]:
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(1 << 20)
                    if state["reply"] is None:
                        time.sleep(0.8)
                    else:
                        conn.sendall(state["reply"])
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield state
    state["stop"] = True
    thread.join(timeout=3)
    server.close()


def test_a_silent_spamd_times_out_into_a_tempreject(fake_spamd):
    started = time.monotonic()
    result = scan(SpamAssassin(port=fake_spamd["port"], timeout=0.3), HAM)
    assert result.verdict == "tempreject" and time.monotonic() - started < 1.2


def test_a_garbled_answer_is_a_tempreject(fake_spamd):
    fake_spamd["reply"] = b"HTTP/1.0 200 OK\r\n\r\nhello"
    assert scan(SpamAssassin(port=fake_spamd["port"], timeout=2), HAM).verdict == "tempreject"


def test_parse_response_reads_symbols_and_scores():
    report = parse_response(
        b"SPAMD/1.1 0 EX_OK\r\nContent-length: 12\r\nSpam: True ; 15.0 / 5.0\r\n\r\nGTUBE,OTHER\r\n"
    )
    assert (report.is_spam, report.score, report.required) == (True, 15.0, 5.0)
    assert report.symbols == ["GTUBE", "OTHER"]
    ham = parse_response(b"SPAMD/1.5 0 EX_OK\r\nSpam: False ; -0.5 / 5.0\r\n\r\n")
    assert (ham.is_spam, ham.score, ham.symbols) == (False, -0.5, [])
    assert ham.status() == "No, score=-0.5 required=5.0"


@pytest.mark.parametrize(
    "reply",
    [b"", b"SPAMD/1.1 76 Bad header line\r\n\r\n", b"SPAMD/1.1 0 EX_OK\r\n\r\n", b"nonsense"],
)
def test_parse_response_refuses_errors_and_nonsense(reply):
    with pytest.raises(SpamdError):
        parse_response(reply)
