"""The fast first call: the shim preloaded into the Exim daemon (deploy/exim/exim4.service.d).

LD_PRELOAD reaches every program of Debian's exim4 init script, shell included, so the shim
must load into programs that are not Exim; in Exim it must then serve as usual.
"""

import os
import subprocess

from exim_harness import DOMAIN, build_exim, start_mtapy

pytest_plugins = ["exim_fixtures"]


def test_the_preloaded_shim_does_not_break_programs_that_are_not_exim(stage):
    env = dict(os.environ, LD_PRELOAD=str(stage / "bin" / "mtapy_exim.so"))
    r = subprocess.run(["/bin/sh", "-c", "true && /bin/true"], env=env, capture_output=True)
    assert (r.returncode, r.stderr) == (0, b"")


def test_an_exim_started_with_the_shim_preloaded_asks_python(stage):
    mtapy = start_mtapy(stage, "preload-mtapy")
    exim = build_exim(stage, mtapy, "preload-exim", "dlfunc")
    plain_env = exim.env
    exim.env = lambda: dict(plain_env(), LD_PRELOAD=str(stage / "bin" / "mtapy_exim.so"))
    try:
        exim.start()
        with open(f"/proc/{exim.pid}/maps") as maps:
            assert "mtapy_exim.so" in maps.read()  # mapped before any SMTP process forks
        _, refused = exim.swaks("--from", "a@client.test", "--to", f"spamtrap@{DOMAIN}")
        assert "550 recipient spamtrap refused by Python policy" in refused, refused
        _, accepted = exim.swaks("--from", "a@client.test", "--to", f"user1@{DOMAIN}")
        assert "250 OK id=" in accepted, accepted
    finally:
        exim.stop()
        mtapy.daemon.stop()


def test_a_preloaded_exim_follows_shim_conf_changes_made_after_it_started(stage):
    # The daemon reads shim.conf when the preload loads the shim; each SMTP process must
    # still use the file as it is at its own first call.
    mtapy = start_mtapy(stage, "preload-conf-mtapy")
    exim = build_exim(stage, mtapy, "preload-conf-exim", "dlfunc")
    plain_env = exim.env
    exim.env = lambda: dict(plain_env(), LD_PRELOAD=str(stage / "bin" / "mtapy_exim.so"))
    good = exim.shim_conf.read_text()
    try:
        exim.start()
        exim.shim_conf.write_text(good.replace("pool = acl", "pool = nosuch"))
        _, deferred = exim.swaks("--from", "a@client.test", "--to", f"spamtrap@{DOMAIN}")
        assert "451 Temporary local problem" in deferred, deferred
        assert "nosuch.sock" in exim.mainlog()
        exim.shim_conf.write_text(good)
        _, refused = exim.swaks("--from", "a@client.test", "--to", f"spamtrap@{DOMAIN}")
        assert "550 recipient spamtrap refused by Python policy" in refused, refused
    finally:
        exim.shim_conf.write_text(good)
        exim.stop()
        mtapy.daemon.stop()
