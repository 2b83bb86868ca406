"""Mail through real Courier 1.0.16, mtapy-courierfilter and a pool, delivered into maildirs.

What a Courier administrator relies on, end to end: SMTP in, the pool's filter chain (its
modules and `for` bypasses, courier-pythonfilter's API), the SMTP reply and the delivery
each kind of answer gives, edits of the message and its recipients, privilege separation, a
large message, one greylisting state and one ratelimit count across the pool's workers, a
4xx with nothing lost for each failure, and one pool serving Exim and Courier at once. Courier: courier_harness.py.
"""

import concurrent.futures
import pathlib
import shutil
import smtplib
import sys
import textwrap
import time

import pytest

from conftest import Daemon, free_port, pool_toml, wait_for
from courier_harness import COURIER_UID, ME, Courier, CourierUnavailable

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "exim"))
from exim_harness import DOMAIN, Exim, main_config, send  # noqa: E402  (tests/exim is not a package)

RATE_LIMIT = 10  # messages per client IP and minute, for the bundled ratelimit
ALICE, BOB, CAROL = (f"{u}@{ME}" for u in ("alice", "bob", "carol"))
FILTERS = ["tagger", "whitelist for router", "counted for ratelimit", "ratelimit", "router",
           "last"]

MODULES = {
    "policy.py": """
        '''The pool's policy: Exim's functions here; Courier runs the chain in workerd.toml.'''
        from exim_test_policy import *  # noqa: F401,F403
        from courier import config

        # The test's settings for the bundled ratelimit, not the host's /etc.
        config.MODULE_CONFIG_PATHS = ["@SHARED@/pythonfilter-modules.conf"]
    """,
    "counted.py": """
        import os
        import time

        def do_filter(body_path, control_paths):
            # Only mail whose Subject ends in "counted" meets ratelimit: a 2xx bypasses it.
            with open(body_path, "rb") as body:
                counted = any(line.startswith(b"Subject: ") and line.rstrip().endswith(b" counted")
                              for line in body)
            if not counted:
                return "200 Ok"
            time.sleep(0.2)  # held a while, so that messages at once need several workers
            with open("@SHARED@/counted-by", "a") as pids:
                pids.write(f"{os.getpid()}\\n")
            return ""
    """,
    "tagger.py": """
        import sys
        from courier import xfilter

        def init_filter():
            sys.stderr.write("Initialized the tagger python filter\\n")

        def do_filter(body_path, control_paths):
            edit = xfilter.XFilter("tagger", body_path, control_paths)
            edit.get_message()["X-Chain"] = "tagger"
            return edit.submit()
    """,
    "whitelist.py": """
        def do_filter(body_path, control_paths):
            with open(body_path, "rb") as body:
                subject = [l for l in body if l.startswith(b"Subject: ")][0]
            return "200 Ok" if b" trusted " in subject else ""
    """,
    "router.py": """
        import os, pathlib, time
        from courier import control, ttldb

        SHARED = "@SHARED@"  # a folder of the test's, seen by the pool and by Courier

        greylist = ttldb.TtlDb("greylist", 600, 60)

        def subject(body_path):
            with open(body_path, "rb") as body:
                for line in body:
                    if line.startswith(b"Subject: "):
                        return line[9:].decode(errors="replace").strip()
            return ""

        def do_filter(body_path, control_paths):
            word = subject(body_path).split(" ")[-1]
            if word == "stop200":
                return "200 Accepted by router"
            if word == "stop000":
                return "000 Accepted by router, skip the rest"
            if word == "tempfail":
                return "451 4.7.1 Try again later (router)"
            if word == "reject":
                return "550-5.7.1 Rejected by router\\n550 5.7.1 Subject says reject"
            if word == "crash":
                os._exit(3)
            if word == "hang":
                time.sleep(60)
            if word == "whoami":
                with open(body_path, "rb") as body:  # through the passed descriptor
                    size = len(body.read())
                sender = control.get_sender(control_paths)
                # As upstream's spamassassin filter asks: a stat() of the spool path.
                stat = os.path.getsize(body_path) == size and os.path.isfile(control_paths[0])
                return f"050 uid={os.getuid()} read={size > 0} stat={stat} sender={sender}"
            if word == "isolation":  # hold the message while the test probes the spool
                with open(body_path, "rb") as body:
                    body.read()
                shared = pathlib.Path(SHARED)
                (shared / "paths.new").write_text("\\n".join([body_path, *control_paths]))
                os.replace(shared / "paths.new", shared / "paths")  # whole, when seen
                for _ in range(400):
                    if (shared / "go").exists():
                        return ""
                    time.sleep(0.01)
                return "451 4.7.1 the test never probed the spool"
            if word == "grey":
                key = control.get_sender(control_paths) + "/" + \\
                    control.get_recipients(control_paths)[0]
                greylist.lock()
                try:
                    if key not in greylist:
                        greylist[key] = time.time()
                        return "451 4.7.1 Greylisted, come back later"
                finally:
                    greylist.unlock()
            return ""
    """,
    "last.py": """
        from courier import control, xfilter

        def do_filter(body_path, control_paths):
            edit = xfilter.XFilter("last", body_path, control_paths)
            edit.get_message()["X-Last"] = "seen"
            edit.submit()
            text = str(edit.get_message()["Subject"])
            if text.endswith("add"):
                control.add_recipient(control_paths, "bob@courier.mtapy.test")
            if text.endswith("del"):
                control.del_recipient(control_paths, "carol@courier.mtapy.test")
            return ""
    """,
}


def mail(subject, body="Hello from the test\n", size=0):
    head = (f"From: sender@example.net\nTo: {ALICE}\nSubject: {subject}\n"
            f"Message-ID: <{time.monotonic_ns()}@example.net>\n\n").encode()
    filler = (b"y" * 99 + b"\n") * (size // 100)
    return head + body.encode() + filler


class World:
    """One pool, one Courier with mtapy as its filter, for the whole module."""

    def __init__(self, stage):
        folder = stage / "policies" / "courier-mail"
        folder.mkdir(mode=0o755)
        self.shared = stage / "run" / "courier-mail-shared"
        self.shared.mkdir(mode=0o777, parents=True)
        self.shared.chmod(0o777)
        (self.shared / "pythonfilter-modules.conf").write_text(
            f"[ratelimit.py]\nmax_connections = {RATE_LIMIT}\ninterval = 1\n")
        (self.shared / "pythonfilter-modules.conf").chmod(0o644)
        for name, source in MODULES.items():
            source = source.replace("@SHARED@", str(self.shared))
            (folder / name).write_text(textwrap.dedent(source))
        shutil.copy(HERE.parent / "exim" / "exim_test_policy.py", folder)
        for path in folder.iterdir():
            path.chmod(0o644)
        self.daemon = Daemon(stage, "courier-mail", pool_toml(
            "mail", folder / "policy.py", clients=(COURIER_UID, "Debian-exim", "root"),
            process_limit=4, timeout="10s", filters=FILTERS))
        self.daemon.start()
        self.courier = Courier(binds=[stage]).start()
        self.courier._write("/etc/mtapy/shim.conf",
                            f"socket_dir = {self.daemon.dir}\npool = mail\ntimeout = 5s\n")
        self.courier._write("/etc/courier/sizelimit", "100000000\n")
        self.courier.install_filter("mtapy", stage / "bin" / "mtapy-courierfilter")

    def send(self, subject, recipients=(ALICE,), **kw):
        return self.courier.send("sender@example.net", recipients, mail(subject, **kw))

    def delivered(self, user, subject, timeout=10):
        """The delivered message of USER with SUBJECT (bytes), None if it does not come."""
        found = []

        def look():
            found[:] = [m for m in self.courier.maildir(user)
                        if f"\nSubject: {subject}\n".encode() in m.replace(b"\r\n", b"\n")]
            return found

        wait_for(look, timeout)
        return found[0] if found else None

    def close(self):
        self.courier.close()
        self.daemon.stop()


@pytest.fixture(scope="module")
def world(stage):
    try:
        w = World(stage)
    except CourierUnavailable as why:
        pytest.skip(str(why))
    yield w
    w.close()


def test_the_filter_is_courier_s_and_its_modules_initialized(world):
    assert world.courier.filter_socket("mtapy") is not None
    assert world.courier.wait_syslog("mtapy-courierfilter: mtapy ready")
    assert wait_for(lambda: "Initialized the tagger python filter" in world.daemon.log())


@pytest.mark.parametrize("word, code, text, chain", [
    ("pass", 250, None, ["tagger", "last"]),
    ("stop200", 250, None, ["tagger"]),
    # Courier turns the leading 0 into 2: "000 ..." reaches the client as "200 ...".
    ("stop000", 200, "Accepted by router, skip the rest", ["tagger"]),
    ("trusted reject", 250, None, ["tagger", "last"]),  # whitelist: router bypassed
    ("tempfail", 451, "4.7.1 Try again later (router)", None),
    ("reject", 550, "5.7.1 Rejected by router\n5.7.1 Subject says reject", None),
])
def test_each_reply_gives_its_smtp_answer_and_delivery(world, word, code, text, chain):
    subject = f"{time.monotonic_ns()} {word}"
    sent = world.send(subject)
    assert sent.data[0] == code, sent
    if text is not None:
        assert sent.data[1] == text
    got = world.delivered("alice", subject, timeout=10 if chain else 2)
    if chain is None:
        assert got is None
        return
    headers = got.replace(b"\r\n", b"\n").split(b"\n\n")[0]
    assert (b"X-Chain: tagger" in headers) == ("tagger" in chain)
    assert (b"X-Last: seen" in headers) == ("last" in chain)
    if "last" in chain:
        assert headers.index(b"X-Chain:") < headers.index(b"X-Last:")  # in order


def test_recipients_added_and_removed_by_the_filter_show_in_delivery(world):
    added = f"{time.monotonic_ns()} add"
    assert world.send(added).data[0] == 250
    assert world.delivered("alice", added) and world.delivered("bob", added)
    removed = f"{time.monotonic_ns()} del"
    assert world.send(removed, recipients=(ALICE, CAROL)).data[0] == 250
    assert world.delivered("alice", removed)
    assert world.delivered("carol", removed, timeout=2) is None


def test_the_filter_runs_as_the_pool_user_on_this_message(world, users):
    # That this user cannot open the spool itself: the test after this one.
    sent = world.send(f"{time.monotonic_ns()} whoami")
    uid = users["mtapy-t1"].pw_uid
    assert sent.data == (250, f"uid={uid} read=True stat=True sender=sender@example.net"), \
        (sent, world.daemon.log()[-3000:])


def test_the_pool_user_cannot_open_the_spool_while_its_filter_holds_the_message(world, users):
    # The filter (as the pool user) has read the body through its descriptor and holds the
    # message; the same uid, in Courier's own view of the spool, tries to open the files.
    subject = f"{time.monotonic_ns()} isolation"
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        sending = pool.submit(world.send, subject)
        assert wait_for(lambda: (world.shared / "paths").exists(), 5), world.daemon.log()[-2000:]
        paths = (world.shared / "paths").read_text().split("\n")
        probe = ("import sys\nfor p in sys.argv[1:]:\n"
                 "    try: open(p, 'rb').close(); print('opened', p)\n"
                 "    except OSError as e: print(type(e).__name__, p)\n")
        uid = users["mtapy-t1"].pw_uid
        as_pool = world.courier.run(["/usr/bin/python3", "-c", probe, *paths],
                                    user=uid).stdout.decode().splitlines()
        as_courier = world.courier.run(["/usr/bin/python3", "-c", probe, *paths],
                                       user=COURIER_UID).stdout.decode().splitlines()
        (world.shared / "go").touch()
        sent = sending.result()
    assert as_courier == [f"opened {p}" for p in paths]  # the files are there, and readable
    assert as_pool == [f"PermissionError {p}" for p in paths]
    assert sent.data[0] == 250, sent
    assert world.delivered("alice", subject)


def test_an_8bit_sender_reaches_the_filter_decoded(world, users):
    sender = "jörg@example.net"
    with smtplib.SMTP("127.0.0.1", world.courier.port, timeout=30) as s:
        s.ehlo("client.test")
        assert s.has_extn("smtputf8")
        assert s.mail(sender, ["SMTPUTF8"])[0] == 250
        assert s.rcpt(ALICE)[0] == 250
        code, text = s.data(mail(f"{time.monotonic_ns()} whoami").replace(b"\n", b"\r\n"))
    uid = users["mtapy-t1"].pw_uid
    assert (code, text.decode()) == (250, f"uid={uid} read=True stat=True sender={sender}")


def test_a_50_mb_message_passes(world):
    subject = f"{time.monotonic_ns()} big"
    sent = world.send(subject, size=50 << 20)
    assert sent.data[0] == 250, sent
    got = world.delivered("alice", subject, timeout=60)
    assert got is not None and len(got) > 50 << 20 and b"X-Last: seen" in got


def test_greylisting_is_one_state_across_the_pools_workers(world):
    subject = "grey"
    recipient = BOB
    # Three sessions at a time, so that several workers take them.
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        codes = list(pool.map(lambda i: world.send(f"{i} grey", recipients=(recipient,)).data[0],
                              range(8)))
    assert sorted(codes) == [250] * 7 + [451], codes  # first contact only, whichever worker
    assert world.send(subject, recipients=(recipient,)).data[0] == 250


def test_the_bundled_ratelimit_is_one_count_across_the_pools_workers(world):
    if time.time() % 60 > 45:  # one minute's window: exact, but at the instant it turns
        time.sleep(60.1 - time.time() % 60)
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        subjects = [f"{i} {time.monotonic_ns()} counted" for i in range(RATE_LIMIT + 3)]
        replies = list(pool.map(world.send, subjects))
    codes = [sent.data[0] for sent in replies]
    assert sorted(codes) == [250] * RATE_LIMIT + [421] * 3, replies
    assert all("Too many messages from" in s.data[1] for s in replies if s.data[0] == 421)
    served_by = set((world.shared / "counted-by").read_text().split())
    assert len(served_by) > 1, "every message went to one worker: the test proves nothing"
    passed = [subject for subject, s in zip(subjects, replies) if s.data[0] == 250]
    assert all(world.delivered("alice", subject) for subject in passed)


@pytest.mark.parametrize("word", ["crash", "hang"])
def test_a_crashed_or_hung_filter_gives_4xx_and_the_next_message_passes(world, word):
    started = time.monotonic()
    sent = world.send(f"{time.monotonic_ns()} {word}")
    assert sent.data[0] == 451 and "temporarily unavailable" in sent.data[1], sent
    assert time.monotonic() - started < 20
    assert wait_for(world.daemon.ready)
    after = f"{time.monotonic_ns()} pass"
    assert world.send(after).data[0] == 250
    assert world.delivered("alice", after)


def test_daemon_down_gives_4xx_and_nothing_is_lost(world):
    subject = f"{time.monotonic_ns()} pass"
    world.daemon.stop()
    try:
        sent = world.send(subject)
        assert sent.data[0] == 451, sent
        assert world.courier.wait_syslog("cannot reach mtapy-workerd")
        assert not world.courier.queue_files() or world.courier.wait_queue_empty()
    finally:
        world.daemon.start()
    assert world.delivered("alice", subject, timeout=1) is None  # refused, so the sender has it
    assert world.send(subject).data[0] == 250  # ... and sends it again
    assert world.delivered("alice", subject)


def test_one_pool_serves_exim_and_courier_at_once(world, stage):
    shim = world.daemon.dir / "shim-exim.conf"
    shim.write_text(f"socket_dir = {world.daemon.dir}\npool = mail\ntimeout = 5s\n")
    shim.chmod(0o644)
    port = free_port()
    directory = stage / "run" / "courier-mail-exim"
    exim = Exim(directory, main_config(directory, port, stage / "bin" / "mtapy_exim.so",
                                       world.daemon.readsocket, "dlfunc"), shim, port).start()
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            by_exim = pool.submit(send, exim, "a@example.net", [f"user1@{DOMAIN}",
                                                                 f"spamtrap1@{DOMAIN}"])
            subject = f"{time.monotonic_ns()} pass"
            by_courier = pool.submit(world.send, subject)
            exim_replies, courier_reply = by_exim.result(), by_courier.result()
        assert exim_replies["rcpt"][0][0] == 250 and exim_replies["rcpt"][1][0] == 550, \
            (exim_replies, exim.mainlog()[-1500:])
        assert courier_reply.data[0] == 250 and world.delivered("alice", subject)
    finally:
        exim.stop()
