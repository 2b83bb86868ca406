"""Real Exim 4.96 ACLs decided by Python through mtapy: the SMTP replies a user relies on.

Each test runs twice: the ACLs ask the policy (exim_test_policy.py) through ${dlfunc} and,
with the same decisions, through mtapy-workerd's ${readsocket} listener (exim_harness.decide).
"""

import re
import threading

import pytest

from exim_harness import DOMAIN, message_id, send

pytest_plugins = ["exim_fixtures"]

MESSAGE = b"Subject: %s\nX-Test: plain\n\nbody\n"
# What a client sees when mtapy fails: Exim's own text for a failed expansion (${dlfunc}),
# or the message of the `defer` statement of the ${readsocket} idiom.
TEMPFAIL = {
    "dlfunc": (451, "Temporary local problem - please try later"),
    "readsocket": (451, "temporary policy failure, please try later"),
}


def test_python_refuses_a_client_at_connect(exim):
    refused = send(exim, "a@client.test", [f"user1@{DOMAIN}"], source="127.0.0.66")
    assert refused["banner"] == (550, "client 127.0.0.66 refused by Python policy")
    assert "mail" not in refused
    allowed = send(exim, "a@client.test", [f"user1@{DOMAIN}"], source="127.0.0.2")
    assert allowed["banner"][0] == 220 and allowed["mail"] == (250, "OK")
    assert (
        'H=[127.0.0.66] rejected connection in "connect" ACL: '
        "client 127.0.0.66 refused by Python policy"
    ) in exim.mainlog()


def test_python_refuses_a_client_at_connect_under_bh(exim):
    """`exim -bh IP` runs the same ACLs for any client address, without a daemon."""
    refused = exim.bh("192.0.2.66", ["EHLO client.test"])
    assert refused.replies == [(550, "client 192.0.2.66 refused by Python policy")]
    allowed = exim.bh(
        "192.0.2.1",
        [
            "EHLO client.test",
            "MAIL FROM:<a@blocked.example>",
            "MAIL FROM:<a@client.test>",
            f"RCPT TO:<user1@{DOMAIN}>",
        ],
    )
    assert allowed.codes() == [220, 250, 550, 250, 250], allowed.stdout


def test_python_refuses_a_sender_at_mail(exim):
    refused = send(exim, "someone@Blocked.Example", [f"user1@{DOMAIN}"])
    assert refused["mail"] == (550, "sender <someone@Blocked.Example> refused by Python policy")
    accepted = send(exim, "someone@client.test", [])
    assert accepted["mail"] == (250, "OK")
    assert (
        "rejected MAIL <someone@Blocked.Example>: sender <someone@Blocked.Example> "
        "refused by Python policy"
    ) in exim.mainlog()


def test_python_refuses_a_recipient_and_the_others_get_the_mail(exim):
    subject = f"rcpt-{exim.port}".encode()
    r = send(exim, "a@client.test", [f"spamtrap7@{DOMAIN}", f"user2@{DOMAIN}"], MESSAGE % subject)
    assert r["rcpt"] == [(550, "recipient spamtrap7 refused by Python policy"), (250, "Accepted")]
    assert exim.wait_delivered(message_id(r["data"]))
    assert b"Subject: " + subject in exim.mailbox("user2")
    assert "rejected RCPT <spamtrap7@mtapy.test>" in exim.mainlog()


def test_true_false_and_none_in_a_deny_condition(exim):
    """tri(WORD) answers True, False or None; the ACL is `deny condition = <answer>`.

    ${dlfunc}: None is a forced failure, and Exim treats a condition whose expansion is forced
    to fail as satisfied, so the deny fires. ${readsocket}: None is an empty reply, which is
    not "true", so it does not.
    """
    r = send(
        exim, "a@client.test", [f"tri-true@{DOMAIN}", f"tri-false@{DOMAIN}", f"tri-none@{DOMAIN}"]
    )
    none = (550, "tri-state said deny for tri-none") if exim.mode == "dlfunc" else (250, "Accepted")
    assert r["rcpt"] == [(550, "tri-state said deny for tri-true"), (250, "Accepted"), none]


def test_arguments_arrive_byte_exact_8bit_and_empty(exim):
    """Six arguments (the most Exim passes), among them 8-bit bytes and empty strings.

    The DATA ACL adds X-Mtapy-Args: the hex of each argument as Python got it ("-" = empty):
    $bh_X-Test: (UTF-8 and a lone 0xff), "", $sender_address, $recipients, "five 5", $h_X-Six:.
    """
    x_test = b'caf\xc3\xa9 \xff "quoted" back\\slash\ttab'
    r = send(
        exim,
        "a@client.test",
        [f"user1@{DOMAIN}"],
        b"Subject: args\nX-Test: " + x_test + b"\nX-Six:\n\nbody\n",
    )
    assert exim.wait_delivered(message_id(r["data"]))
    expected = " ".join(
        v.hex() or "-"
        for v in (x_test, b"", b"a@client.test", f"user1@{DOMAIN}".encode(), b"five 5", b"")
    )
    mail = exim.mailbox("user1")
    assert b"\nX-Mtapy-Args: " + expected.encode() + b"\n" in mail


def test_none_skips_an_add_header_and_the_mail_is_still_accepted(exim):
    r = send(exim, "a@client.test", [f"user1@{DOMAIN}"], b"Subject: none-header\n\nbody\n")
    assert exim.wait_delivered(message_id(r["data"]))
    mail = exim.mailbox("user1").split(b"Subject: none-header")[-1]
    # "add_header = X-Mtapy-None: <None>": ${dlfunc} skips the modifier; ${readsocket} gets
    # an empty reply, and Exim adds the header with an empty value.
    if exim.mode == "dlfunc":
        assert b"X-Mtapy-None" not in mail
    else:
        assert b"\nX-Mtapy-None: \n" in mail


def test_a_policy_exception_is_a_451_with_the_traceback_in_mtapys_log(exim, mtapy_exim):
    r = send(exim, "a@client.test", [f"boom@{DOMAIN}", f"user1@{DOMAIN}"])
    assert r["rcpt"] == [TEMPFAIL[exim.mode], (250, "Accepted")]
    log = exim.mainlog()
    assert "temporarily rejected RCPT <boom@mtapy.test>" in log
    assert "ZeroDivisionError: division by zero" in log
    daemon_log = mtapy_exim.daemon.log()
    assert "Traceback (most recent call last):" in daemon_log
    assert "return 1 / 0" in daemon_log


@pytest.mark.parametrize("mode", ["dlfunc", "readsocket"])
def test_daemon_stopped_defers_and_a_restart_needs_no_exim_restart(fresh_exim, mode):
    mtapy, exim = fresh_exim(mode)
    mtapy.daemon.stop()
    r = send(exim, "a@client.test", [f"user1@{DOMAIN}"])
    assert r["mail"] == TEMPFAIL[mode] and "data" not in r
    refused_at_connect = send(exim, "a@client.test", [f"user1@{DOMAIN}"], source="127.0.0.2")
    assert refused_at_connect["banner"] == TEMPFAIL[mode]
    assert "<=" not in exim.mainlog() and exim.mailbox("user1") == b""
    if mode == "dlfunc":  # the reason is in the main log, and nothing in the panic log
        assert "failed to expand ACL string" in exim.mainlog()
        assert "mtapy: cannot reach mtapy-workerd" in exim.mainlog()
        assert exim.paniclog() == ""
    else:
        assert "mtapy: DEFER: mtapy unreachable" in exim.mainlog()

    exim_pid = exim.pid
    mtapy.daemon.start()
    r = send(exim, "a@client.test", [f"user1@{DOMAIN}"], MESSAGE % b"after restart")
    assert r["mail"] == (250, "OK") and exim.wait_delivered(message_id(r["data"]))
    assert b"Subject: after restart" in exim.mailbox("user1")
    assert exim.pid == exim_pid


def test_twenty_concurrent_sessions_each_get_pythons_answer(exim):
    """Even sessions come from a good sender and are delivered; odd ones are refused."""
    tag = f"conc-{exim.mode}-{exim.port}"
    results = {}

    def session(i):
        domain = "blocked.example" if i % 2 else "client.test"
        results[i] = send(
            exim, f"s{i}@{domain}", [f"user2@{DOMAIN}"], MESSAGE % f"{tag} {i}".encode()
        )

    threads = [threading.Thread(target=session, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == list(range(20))
    for i, r in results.items():
        if i % 2:
            assert r["mail"] == (550, f"sender <s{i}@blocked.example> refused by Python policy")
        else:
            assert r["mail"] == (250, "OK") and r["rcpt"] == [(250, "Accepted")]
            assert exim.wait_delivered(message_id(r["data"])), i
    mailbox = exim.mailbox("user2")
    delivered = sorted(i for i in range(20) if f"Subject: {tag} {i}\n".encode() in mailbox)
    assert delivered == list(range(0, 20, 2))


def test_swaks_sees_pythons_decisions(exim):
    status, out = exim.swaks("--from", "a@client.test", "--to", f"spamtrap@{DOMAIN}")
    assert "<** 550 recipient spamtrap refused by Python policy" in out, out
    assert status == 24  # swaks: no recipient accepted
    status, out = exim.swaks("--from", "a@blocked.example", "--to", f"user1@{DOMAIN}")
    assert "<** 550 sender <a@blocked.example> refused by Python policy" in out, out
    status, out = exim.swaks(
        "--from", "a@client.test", "--to", f"user1@{DOMAIN}", "--header", "Subject: via swaks"
    )
    assert status == 0 and re.search(r"<-  250 OK id=\S+", out), out
    assert exim.wait_delivered(re.search(r"250 OK id=(\S+)", out).group(1))
    assert b"Subject: via swaks" in exim.mailbox("user1")
