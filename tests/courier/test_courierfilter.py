"""mtapy-courierfilter against a real mtapy-workerd, with Courier played by fake_submit.

What an administrator relies on between Courier and the pool: the reply Courier gets for
each kind of filter answer, the files edited in place through the passed descriptors while
the pool's user cannot open the spool, a 4xx (never a lost or accepted message) for every
failure, several messages at once, and a clean stop. Real Courier: test_courier_mail.py.
"""

import concurrent.futures
import fcntl
import os
import shutil
import signal
import socket
import threading
import time

import pytest

from conftest import BUILD, pool_toml, wait_for, write_policy
from fake_submit import FilterProgram, default_control, message

TEMPFAIL = "451 4.3.0 Mail filter temporarily unavailable, try again later\n"

POLICY = """
    import os, sys, time
    from courier import control, xfilter

    def do_filter(body_path, control_paths):
        with open(body_path, "rb") as body:
            text = body.read()
        if b"Subject: crash" in text:
            os._exit(3)
        if b"Subject: hang" in text:
            time.sleep(60)
        if b"Subject: slow" in text:
            time.sleep(0.5)
        if b"Subject: spam" in text:
            return "550-5.7.1 Rejected by policy\\n550 5.7.1 Subject contains spam"
        if b"Subject: later" in text:
            return "451 4.7.1 Try again later"
        if b"Subject: skip" in text:
            return "050 Accepted, skip the other filters"
        if b"Subject: snoop" in text:
            other = os.path.join(os.path.dirname(body_path), "Dother")
            try:
                open(other, "rb").read()
                return "550 read another message"
            except PermissionError:
                return "200 cannot read another message"
        if b"Subject: edit" in text:
            edit = xfilter.XFilter("edit", body_path, control_paths)
            edit.get_message()["X-Edited"] = "by mtapy"
            edit.submit()
            control.add_recipient(control_paths, "added@example.org")
            control.del_recipient(control_paths, "someone@example.com")
        if b"Subject: tidy" in text:  # a filter that tidies its paths first
            with open(os.path.abspath(body_path), "rb") as tidied:
                return f"200 read {len(tidied.read())} bytes"
        if b"Subject: whoami" in text:
            return f"200 uid {os.getuid()} sender {control.get_sender(control_paths)}"
        return ""
"""


@pytest.fixture
def courier_pool(stage, make_daemon):
    policy = write_policy(stage, "courier_policy.py", POLICY)

    def make(**options):
        options.setdefault("timeout", "2s")
        return make_daemon(pool_toml("courier", policy, **options))

    return make


@pytest.fixture
def spool(tmp_path):
    tmp_path.chmod(0o700)  # like Courier's spool: nothing in it is the pool user's
    return tmp_path


@pytest.fixture
def start_filter(stage, spool):
    started = []

    def start(daemon, name="mtapy", **options):
        program = FilterProgram(stage / "bin" / "mtapy-courierfilter", spool, daemon.shim_conf,
                                name, **options)
        started.append(program)
        return program

    yield start
    for program in started:
        if program.process.poll() is None:
            program.stop()


def test_replies_reach_courier_as_the_filter_gave_them(courier_pool, start_filter):
    daemon = courier_pool()
    courier = start_filter(daemon)
    cases = {"hello": "200 Ok\n",
             "spam": "550-5.7.1 Rejected by policy\n550 5.7.1 Subject contains spam\n",
             "later": "451 4.7.1 Try again later\n",
             "skip": "050 Accepted, skip the other filters\n"}
    for subject, reply in cases.items():
        data, ctl = courier.message(message(subject), name=subject)
        assert courier.submit(data, ctl) == reply, subject


def test_the_filter_runs_as_the_pool_user_and_reads_only_this_message(courier_pool,
                                                                      start_filter, users):
    daemon = courier_pool()
    courier = start_filter(daemon)
    courier.message(message("secret"), name="other")
    data, ctl = courier.message(message("whoami"), name="who")
    uid = users["mtapy-t1"].pw_uid
    assert courier.submit(data, ctl) == f"200 uid {uid} sender sender@example.net\n"
    data, ctl = courier.message(message("snoop"), name="snoop")
    assert courier.submit(data, ctl) == "200 cannot read another message\n"


def test_edits_through_the_passed_descriptors_land_in_the_message(courier_pool, start_filter):
    daemon = courier_pool()
    courier = start_filter(daemon)
    data, ctl = courier.message(message("edit"), name="edit")
    assert courier.submit(data, ctl) == "200 Ok\n"
    assert b"X-Edited: by mtapy" in data.read_bytes()
    control = ctl.read_bytes()
    assert b"\nradded@example.org\nR\nN\n" in control
    assert b"\nS1 " in control or b"\nS0 " in control  # someone@ marked delivered (removed)


def test_several_control_files_all_reach_the_filter(courier_pool, start_filter):
    daemon = courier_pool()
    courier = start_filter(daemon)
    data, first = courier.message(message("edit"), name="batch")
    second = first.with_name("Cbatch.2")
    second.write_bytes(default_control(recipients=("other@example.com",)))
    assert courier.submit(data, first, second) == "200 Ok\n"
    assert b"radded@example.org" in second.read_bytes()  # added to the last file


@pytest.mark.parametrize("subject", ["crash", "hang"])
def test_a_crashing_or_hung_filter_gives_4xx_and_the_next_message_passes(courier_pool,
                                                                          start_filter, subject):
    daemon = courier_pool(timeout="1s")
    courier = start_filter(daemon)
    data, ctl = courier.message(message(subject), name=subject)
    started = time.monotonic()
    assert courier.submit(data, ctl).startswith("451 ")
    assert time.monotonic() - started < 5
    assert wait_for(daemon.ready)
    data, ctl = courier.message(message("hello"), name="after")
    assert courier.submit(data, ctl) == "200 Ok\n"


def test_daemon_down_gives_4xx_and_recovery_when_it_returns(courier_pool, start_filter):
    daemon = courier_pool()
    courier = start_filter(daemon)
    daemon.stop()
    data, ctl = courier.message(message("hello"))
    reply = courier.submit(data, ctl)
    assert reply.startswith("451 4.3.0 ")
    assert "cannot reach mtapy-workerd" in courier.output()
    daemon.start()
    assert courier.submit(data, ctl) == "200 Ok\n"


def test_only_regular_files_in_courier_s_tmp_reach_the_policy(courier_pool, start_filter):
    # Whoever may connect to the filter socket must not get any other file opened, read-write
    # with Courier's rights, and handed to the pool's policy.
    daemon = courier_pool()
    courier = start_filter(daemon)
    data, ctl = courier.message(message("whoami"), name="ok")
    outside = courier.spool / "Doutside"
    outside.write_bytes(message("whoami"))
    (courier.spool / "elsewhere").mkdir()
    shutil.copy(data, courier.spool / "elsewhere" / data.name)
    (courier.spool / "tmp" / "escape").symlink_to(courier.spool / "elsewhere")
    fifo = courier.spool / "tmp" / "1795" / "Dfifo"
    os.mkfifo(fifo)
    cases = {outside: "is not in Courier's", courier.spool / "tmp" / "escape" / data.name:
             "Too many levels of symbolic links", fifo: "is not a regular file"}
    for path, why in cases.items():
        assert courier.submit(path, ctl) == TEMPFAIL, path
        assert why in courier.output(), path
    assert courier.submit(data, ctl).startswith("200 uid ")


def test_a_leased_file_gets_4xx_at_once_and_holds_no_other_message(courier_pool, start_filter):
    # A blocking open() of a file with a lease waits until the lease is broken (45 s), and
    # the one event loop would hold every message meanwhile.
    daemon = courier_pool()
    courier = start_filter(daemon)
    leased, ctl = courier.message(message("hello"), name="leased")
    data, ctl2 = courier.message(message("hello"), name="free")
    previous = signal.signal(signal.SIGIO, signal.SIG_IGN)  # the lease break's signal
    holder = os.open(leased, os.O_RDONLY)
    try:
        fcntl.fcntl(holder, fcntl.F_SETLEASE, fcntl.F_RDLCK)
        started = time.monotonic()
        assert courier.submit(leased, ctl) == TEMPFAIL
        assert courier.submit(data, ctl2) == "200 Ok\n"
        assert time.monotonic() - started < 10  # a blocking open waits 45 s
    finally:
        os.close(holder)
        signal.signal(signal.SIGIO, previous)


def test_a_silent_connection_is_given_up_after_five_seconds(courier_pool, start_filter):
    # Each connection holds one of the filter's message slots until its request is whole.
    daemon = courier_pool()
    courier = start_filter(daemon)
    with socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(30)
        conn.connect(str(courier.socket))
        started = time.monotonic()
        assert conn.makefile("rb").read().decode() == TEMPFAIL
        assert 4 < time.monotonic() - started < 10  # it was 30 s
    assert "submit sent no complete request" in courier.output()


def test_silent_connections_holding_every_slot_are_given_up_at_once(courier_pool,
                                                                    start_filter):
    # 32 descriptors: 5 message slots, all taken by connections that send nothing.
    daemon = courier_pool()
    courier = start_filter(daemon, max_files=32)
    silent = [socket.socket(socket.AF_UNIX) for _ in range(5)]
    try:
        for conn in silent:
            conn.settimeout(30)
            conn.connect(str(courier.socket))
        time.sleep(0.2)
        data, ctl = courier.message(message("hello"))
        started = time.monotonic()
        assert courier.submit(data, ctl) == "200 Ok\n"
        assert time.monotonic() - started < 3.5  # 5 s for each silent one before
        assert all(conn.makefile("rb").read().decode() == TEMPFAIL for conn in silent)
    finally:
        for conn in silent:
            conn.close()


def test_started_without_fd_3_it_serves(courier_pool, start_filter):
    # By hand or under another supervisor: no readiness pipe, and nothing else to close.
    daemon = courier_pool()
    courier = start_filter(daemon, fd3=False)
    data, ctl = courier.message(message("hello"))
    assert courier.submit(data, ctl) == "200 Ok\n"


def test_the_message_id_is_read_also_from_a_control_file_that_starts_with_it(courier_pool,
                                                                         start_filter):
    daemon = courier_pool()
    courier = start_filter(daemon)
    daemon.stop()
    data, ctl = courier.message(message("hello"),
                                b"M00000000000000AB.000000006B01885B.000000C8\n" + default_control())
    assert courier.submit(data, ctl) == TEMPFAIL
    assert "message 00000000000000AB.000000006B01885B.000000C8: cannot reach" in courier.output()


def test_messages_are_filtered_in_parallel(courier_pool, start_filter):
    daemon = courier_pool(process_limit=4)
    courier = start_filter(daemon)
    assert wait_for(lambda: daemon.ctl("status").stdout.count(" idle") >= 4)
    replies = []

    def one(i):
        data, ctl = courier.message(message("slow"), name=f"slow{i}")
        replies.append(courier.submit(data, ctl))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert replies == ["200 Ok\n"] * 4
    assert time.monotonic() - started < 1.5  # 4 × 0.5 s one after another would be 2 s


def test_stdin_eof_stops_after_the_message_in_progress(courier_pool, start_filter):
    daemon = courier_pool()
    courier = start_filter(daemon)
    assert courier.socket.exists()
    replies = []
    data, ctl = courier.message(message("slow"), name="inflight")
    worker = threading.Thread(target=lambda: replies.append(courier.submit(data, ctl)))
    worker.start()
    time.sleep(0.2)
    assert courier.stop() == 0
    worker.join()
    assert replies == ["200 Ok\n"]
    assert not courier.socket.exists()


def test_stopping_leaves_the_socket_of_a_filter_started_after_it(courier_pool, start_filter):
    # courierfilter restarted while the old filter drains: the new one's socket must stay.
    daemon = courier_pool()
    old = start_filter(daemon)
    new = start_filter(daemon)  # the same name: its socket takes the path
    assert old.stop() == 0
    data, ctl = new.message(message("hello"))
    assert new.submit(data, ctl) == "200 Ok\n"


def test_socket_goes_where_the_mode_file_says(courier_pool, start_filter, spool):
    daemon = courier_pool()
    (spool / "etc" / "filters").mkdir(parents=True)
    (spool / "etc" / "filters" / "optional-mode").write_text("filters\n")
    courier = start_filter(daemon, name="optional")
    assert (spool / "var" / "filters" / "optional").exists()
    assert not (spool / "var" / "allfilters" / "optional").exists()


def test_a_broken_shim_conf_starts_no_filter(start_filter, courier_pool, tmp_path):
    daemon = courier_pool()
    daemon.shim_conf.write_text("timeout = soon\n")
    courier = start_filter(daemon)
    assert courier.process.wait(10) != 0
    assert not courier.socket.exists()
    assert "timeout" in courier.output()


def test_a_large_message_passes_without_the_daemon_copying_it(courier_pool, start_filter):
    daemon = courier_pool()
    courier = start_filter(daemon)
    body = message("hello", body="x" * 99 + "\n") + (b"y" * 99 + b"\n") * 500_000  # 50 MB
    data, ctl = courier.message(body, name="big")
    assert courier.submit(data, ctl) == "200 Ok\n"
    status = open(f"/proc/{daemon.process.pid}/status").read()
    peak_kb = int(status.split("VmHWM:")[1].split()[0])
    assert peak_kb < 40_000, f"the daemon's peak RSS was {peak_kb} kB"


def test_bytes_on_stdin_do_not_stop_the_filter(courier_pool, start_filter):
    # courierfilter(8): a filter ignores what it reads on stdin and stops only at EOF.
    daemon = courier_pool()
    courier = start_filter(daemon)
    os.write(courier._stdin, b"anything\n")
    time.sleep(0.3)
    assert courier.process.poll() is None
    data, ctl = courier.message(message("hello"))
    assert courier.submit(data, ctl) == "200 Ok\n"


def test_paths_written_the_long_way_still_reach_their_files(courier_pool, start_filter, users):
    # submit may write "//", "." and ".."; filters open the paths as given, or tidied.
    daemon = courier_pool()
    courier = start_filter(daemon)
    data, ctl = courier.message(message("whoami"), name="long")
    long_data = f"{data.parent}//./{data.name}"
    long_ctl = f"{data.parent}/../{data.parent.name}/{ctl.name}"
    uid = users["mtapy-t1"].pw_uid
    assert courier.submit(long_data, long_ctl) == f"200 uid {uid} sender sender@example.net\n"
    data, ctl = courier.message(message("tidy"), name="tidy")
    assert courier.submit(f"{data.parent}/./{data.name}", ctl) == \
        f"200 read {len(data.read_bytes())} bytes\n"


def test_a_burst_of_messages_each_gets_its_own_reply(courier_pool, start_filter):
    # One event loop, one socket to the pool: answers must find their own message.
    daemon = courier_pool(process_limit=4)
    courier = start_filter(daemon)
    cases = ["hello", "spam", "later", "skip"] * 25
    files = [courier.message(message(subject), name=f"burst{i}") for i, subject in
             enumerate(cases)]
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        replies = list(pool.map(lambda f: courier.submit(*f), files))
    want = {"hello": "200 Ok\n", "later": "451 4.7.1 Try again later\n",
            "spam": "550-5.7.1 Rejected by policy\n550 5.7.1 Subject contains spam\n",
            "skip": "050 Accepted, skip the other filters\n"}
    assert replies == [want[subject] for subject in cases]


def test_an_overloaded_pool_gives_4xx_within_its_timeout_and_loses_nothing(courier_pool,
                                                                           start_filter):
    # One worker, room for one more call in its queue: the rest wait in the filter, then
    # get a 4xx when the pool's timeout (1 s, and the daemon's margin) has passed.
    daemon = courier_pool(process_limit=1, queue_limit=1, timeout="1s")
    daemon.shim_conf.write_text(daemon.shim_conf.read_text().replace("timeout = 5s",
                                                                     "timeout = 1s"))
    courier = start_filter(daemon)
    files = [courier.message(message("slow"), name=f"busy{i}") for i in range(8)]
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda f: courier.submit(*f), files))
    assert time.monotonic() - started < 5
    assert all(r in ("200 Ok\n", TEMPFAIL) for r in replies), replies
    assert replies.count("200 Ok\n") >= 2 and replies.count(TEMPFAIL) >= 2, replies
    assert "the pool's queue stayed full" in courier.output() or \
        "timed out" in courier.output()
    data, ctl = courier.message(message("hello"), name="after-busy")
    assert courier.submit(data, ctl) == "200 Ok\n"


def test_a_request_written_in_pieces_is_served(courier_pool, start_filter):
    daemon = courier_pool()
    courier = start_filter(daemon)
    data, ctl = courier.message(message("hello"), name="pieces")
    with socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(10)
        conn.connect(str(courier.socket))
        conn.sendall(f"{data}\n".encode())
        time.sleep(0.2)
        conn.sendall(f"{ctl}\n".encode())
        time.sleep(0.2)
        conn.sendall(b"\n")
        assert conn.makefile("rb").read() == b"200 Ok\n"
    # A byte at a time: each part resumes the search for the request's end.
    with socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(30)
        conn.connect(str(courier.socket))
        for byte in f"{data}\n{ctl}\n\n".encode():
            conn.send(bytes([byte]))
        assert conn.makefile("rb").read() == b"200 Ok\n"


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_short_of_descriptors_it_takes_messages_as_they_fit_and_loses_none(courier_pool,
                                                                       start_filter):
    # 32 descriptors: a few messages' worth (connection, data and control file each). The
    # others wait in the backlog and are taken as messages end; nothing is lost.
    daemon = courier_pool(process_limit=4)
    courier = start_filter(daemon, max_files=32)
    files = [courier.message(message("slow"), name=f"nofile{i}") for i in range(24)]
    cpu = cpu_seconds(courier.process.pid)
    with concurrent.futures.ThreadPoolExecutor(24) as pool:
        replies = list(pool.map(lambda f: courier.submit(*f), files))
    assert replies == ["200 Ok\n"] * len(files)
    assert cpu_seconds(courier.process.pid) - cpu < 0.5  # it waited; it did not spin


def test_stdin_eof_while_the_daemon_is_down_still_stops_the_filter(courier_pool, start_filter):
    # Messages answered at once (451: no daemon) arriving as courierfilter stops us.
    daemon = courier_pool()
    courier = start_filter(daemon)
    daemon.stop()
    files = [courier.message(message("hello"), name=f"down{i}") for i in range(32)]
    done = threading.Event()

    def keep_submitting(f):
        while not done.is_set():
            try:
                assert courier.submit(*f, timeout=10) == TEMPFAIL
            except (FileNotFoundError, ConnectionRefusedError):
                return  # the socket is gone: Courier would pass mail on to the next filter

    threads = [threading.Thread(target=keep_submitting, args=(f,)) for f in files]
    for t in threads:
        t.start()
    time.sleep(0.3)
    try:
        assert courier.stop(timeout=10) == 0
    finally:
        done.set()
        for t in threads:
            t.join()
