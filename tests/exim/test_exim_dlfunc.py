"""What Exim 4.96 itself does around ${dlfunc} calls into mtapy: forced failure, argument limits.

`exim -be` expands a string as root (so root is among the pools' clients), `exim -bh` runs a
dialogue. Note: -be treats a line that starts with an upper-case letter as a macro definition,
so no expression below starts with one.
"""

import os
import re
import subprocess

from exim_harness import DOMAIN

pytest_plugins = ["exim_fixtures"]

TRI = "${dlfunc{MTAPY_SO}{python}{tri}{%s}}"


def be_output(exim, expression):
    r = exim.be(expression)
    assert r.returncode == 0, r
    return r.stdout.decode(errors="replace").rstrip("\n")


def test_if_with_true_false_and_none(exim_dlfunc):
    """${if bool{}} takes "true"/"false"; None (a forced failure) fails the whole ${if}."""
    assert be_output(exim_dlfunc, TRI % "true") == "true"
    assert be_output(exim_dlfunc, "${if bool{%s}{T}{F}}" % (TRI % "true")) == "T"
    assert be_output(exim_dlfunc, "${if bool{%s}{T}{F}}" % (TRI % "false")) == "F"
    assert be_output(exim_dlfunc, "${if bool{%s}{T}{F}}" % (TRI % "none")) == "Failed: (no message)"
    assert (
        be_output(exim_dlfunc, "${if eq{%s}{true}{T}{F}}" % (TRI % "none"))
        == "Failed: (no message)"
    )


def test_seven_arguments_work_eight_crash_exim_before_mtapy_nine_are_refused(
    exim_dlfunc, mtapy_exim
):
    seven = "${dlfunc{MTAPY_SO}{python}{count}{1}{2}{3}{4}{5}{6}}"
    assert be_output(exim_dlfunc, seven) == "6 6"

    # FUNCTION + 7: Exim 4.96 dies of SIGSEGV while collecting the arguments.
    eight = exim_dlfunc.be("${dlfunc{MTAPY_SO}{python}{eight_args}{1}{2}{3}{4}{5}{6}{7}}")
    assert eight.returncode == -11 and b"SIGSEGV" in eight.stderr, eight
    status = mtapy_exim.daemon.ctl("status").stdout
    assert "function count:" in status and "eight_args" not in status  # never called
    assert "eight_args" not in mtapy_exim.daemon.log()

    nine = "${dlfunc{MTAPY_SO}{python}{count}{1}{2}{3}{4}{5}{6}{7}{8}}"
    assert be_output(exim_dlfunc, nine) == "Failed: Too many arguments for 'dlfunc' (max is 10)"


def test_expansion_failures_say_mtapy_and_the_exception(exim_dlfunc):
    assert (
        be_output(exim_dlfunc, "${dlfunc{MTAPY_SO}{python}{recipient_blocked}{boom}}")
        == "Failed: mtapy: ZeroDivisionError: division by zero"
    )
    assert re.fullmatch(
        r"Failed: mtapy: LookupError: the policy \S+ has no 'no_such'",
        be_output(exim_dlfunc, "${dlfunc{MTAPY_SO}{python}{no_such}}"),
    )


def test_bh_shows_how_each_acl_statement_decided(exim_dlfunc):
    r = exim_dlfunc.bh(
        "192.0.2.1",
        [
            "EHLO client.test",
            "MAIL FROM:<a@client.test>",
            f"RCPT TO:<spamtrap@{DOMAIN}>",
            f"RCPT TO:<boom@{DOMAIN}>",
            f"RCPT TO:<user1@{DOMAIN}>",
        ],
    )
    assert r.codes() == [220, 250, 250, 550, 451, 250], r.stdout
    assert ">>> check condition = ${dlfunc{" in r.stderr
    assert "recipient_blocked}{$local_part}}\n>>>                 = true" in r.stderr
    assert "mtapy: ZeroDivisionError: division by zero" in r.stderr


def test_a_huge_exception_text_fails_the_expansion_without_killing_exim(exim_dlfunc):
    # Exim dies when string_sprintf() output passes 32 KiB; the shim cuts the text.
    out = be_output(exim_dlfunc, "${dlfunc{MTAPY_SO}{python}{huge_error}}")
    assert out.startswith("Failed: mtapy: ValueError: xxxx") and len(out) < 1100, out[:200]


def test_a_user_running_setuid_exim_cannot_aim_the_shim_at_their_own_daemon(
        exim_dlfunc, stage, tmp_path):
    # With keep_environment = MTAPY_SHIM_CONF, any user could start setuid Exim (sendmail,
    # exim -bs) with a shim.conf of their own and answer its policy questions themselves.
    rogue = stage / "run" / "rogue-shim.conf"
    rogue.write_text(f"socket = {tmp_path}/rogue.sock\n")
    rogue.chmod(0o644)
    r = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "/usr/sbin/exim4",
         "-C", str(exim_dlfunc.conf), "-be",  # Exim expands macros in -be for admins only
         "${dlfunc{%s}{python}{tri}{true}}" % (stage / "bin" / "mtapy_exim.so")],
        capture_output=True, env={**os.environ, "MTAPY_SHIM_CONF": str(rogue)}, timeout=30)
    out = r.stdout.decode(errors="replace")
    assert "mtapy: cannot reach mtapy-workerd at" in out and "rogue.sock" not in out, out
