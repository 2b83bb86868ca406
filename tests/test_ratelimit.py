"""Shared state through real Exims and the real shim: the seed's rate limiter counts exactly
across workers and MTA instances, keeps its counts through crashes, reloads and restarts (on
the embedded store and on a real Redis), sends one alert, and pools cannot see each other's keys.
"""

import os
import pathlib
import re
import signal
import subprocess
import threading
import time

import pytest

from conftest import free_port, pool_toml, wait_for
from exim.exim_harness import DOMAIN, Exim, main_config, readsocket, send
from test_daemon import FAIL, OK, exim_call, harness, shim_conf  # noqa: F401
from test_reload import policy_folder, reload, write


def start_redis(folder, acl=None):
    """A private redis-server on a Unix socket in FOLDER that pool users may use; with ACL,
    the text of its users file. Returns {"process", "sock", "restart", "stop"}."""
    folder.mkdir()
    folder.chmod(0o777)
    sock = folder / "redis.sock"
    command = ["redis-server", "--port", "0", "--unixsocket", str(sock), "--unixsocketperm",
               "777", "--dir", str(folder), "--save", "3600 1", "--appendonly", "no"]
    if acl is not None:
        (folder / "users.acl").write_text(acl)
        command += ["--aclfile", str(folder / "users.acl")]
    server = {"sock": sock}

    def start():
        server["process"] = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        assert wait_for(sock.exists)

    def stop():
        server["process"].terminate()  # SIGTERM: redis saves its data first
        server["process"].wait(10)

    def restart():
        stop()
        start()

    start()
    server.update(restart=restart, stop=stop)
    return server


@pytest.fixture
def redis_server(stage, request):
    server = start_redis(stage / "run" / f"redis-{request.node.name[:40]}")
    yield server
    server["stop"]()


# What a pool sees of the shared state: through mtapy.state, its folder, and Redis directly.
STATE_PROBE = """
    import os
    from mtapy import state
    def put(key, value):
        state.set(key, value)
        return "ok"
    def get(key):
        return state.get(key, "absent")
    def listdir(path):
        try:
            return ",".join(os.listdir(path))
        except PermissionError:
            return "denied"
    def raw(key):  # around mtapy.state, with this pool's own Redis credentials
        import redis
        try:
            found = redis.Redis.from_url(os.environ["MTAPY_STATE"]).get(key)
        except redis.exceptions.NoPermissionError:
            return "denied"
        return "absent" if found is None else found.decode()
"""


LIMITER = """
    from mtapy.filters import ratelimit
    ratelimit.COUNT = 100
    ratelimit.WINDOW = {window}
    ratelimit.SMTP = "{smtp}"
    ratelimit.ALERT_FROM = "sysadmin@mtapy.test"
    ratelimit.ALERT_TO = "postmaster@mtapy.test"
    ratelimit.ALERT_CC = "user2@mtapy.test"
    ratelimit.ALERT_SUBJECT = "Mail Abuse Alert"
    ratelimit.EXIM_LOG = "{log}"
    over = ratelimit.over
    sender_warn = ratelimit.sender_warn
"""


def acls(condition):
    return (f"acl_connect:\n  accept\nacl_mail:\n  accept\nacl_rcpt:\n"
            f"  deny   condition = {condition}\n         message = rate limit exceeded\n"
            f"  accept domains = +local_domains\nacl_data:\n  accept\n")


def test_two_exims_sharing_a_pool_count_exactly_and_alert_once(make_daemon, stage):
    folder = policy_folder(stage, "ratelimit-exims")
    rs_path = stage / "run" / "ratelimit-exims.sock"
    port_a, port_b = free_port(), free_port()
    exim_dir_a = stage / "run" / "ratelimit-exim-a"
    write(folder / "policy.py", LIMITER.format(window=120, smtp=f"127.0.0.1:{port_a}",
                                               log=exim_dir_a / "log" / "mainlog"))
    d = make_daemon(pool_toml("rl", folder / "policy.py", clients=("root", "Debian-exim"),
                              process_limit=4, readsocket=str(rs_path)))
    conf = shim_conf(d)
    so = stage / "bin" / "mtapy_exim.so"
    exim_a = Exim(exim_dir_a, main_config(exim_dir_a, port_a, so, rs_path, "dlfunc", acls(
        "${dlfunc{MTAPY_SO}{python}{over}{$sender_address}}")), conf, port_a)
    exim_dir_b = stage / "run" / "ratelimit-exim-b"
    exim_b = Exim(exim_dir_b, main_config(exim_dir_b, port_b, so, rs_path, "readsocket", acls(
        readsocket("sender_warn", "$sender_address", pool="rl"))), conf, port_b, "readsocket")
    # The pool's user reads Exim A's log for the alert's top subjects, as the seed did.
    (exim_dir_a / "log").chmod(0o755)
    (exim_dir_a / "log" / "mainlog").touch(mode=0o644)
    os.chown(exim_dir_a / "log" / "mainlog", *[os.stat(exim_dir_a / "log").st_uid] * 2)
    lock = threading.Lock()

    def burst(sender):
        """130 sessions from 16 clients, half through each Exim, all for `sender`."""
        replies = []

        def sessions(n, exim):
            for _ in range(n):
                got = send(exim, sender, [f"user1@{DOMAIN}"],
                           message=b"Subject: quarterly report\n\nbody\n")["rcpt"][0]
                with lock:
                    replies.append(got)

        threads = [threading.Thread(target=sessions, args=(8 if i < 14 else 9,
                                                           (exim_a, exim_b)[i % 2]))
                   for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        return replies

    try:
        exim_a.start()
        exim_b.start()
        for sender in ("bulk@client.test", "again@client.test", "third@client.test"):
            replies = burst(sender)  # exact every time, not by luck once
            assert len(replies) == 130
            assert replies.count((250, "Accepted")) == 100, (sender, sorted(set(replies)))
            assert replies.count((550, "rate limit exceeded")) == 30, sorted(set(replies))
        # Other keys are not affected.
        assert send(exim_b, "quiet@client.test", [f"user1@{DOMAIN}"])["rcpt"][0][0] == 250
        assert wait_for(lambda: exim_a.mailbox("postmaster").count(b"Subject: Mail Abuse Alert")
                        >= 3, timeout=15), exim_a.mainlog()
        time.sleep(1)
        alert = exim_a.mailbox("postmaster")
        assert alert.count(b"Subject: Mail Abuse Alert") == 3, alert  # one per key and window
        assert b"From: sysadmin@mtapy.test" in alert and b"To: postmaster@mtapy.test" in alert
        assert b"Cc: user2@mtapy.test" in alert and b"'bulk@client.test'" in alert, alert
        assert re.search(rb"\d+ quarterly report", alert), alert
        assert exim_a.mailbox("user2").count(b"Subject: Mail Abuse Alert") == 3
    finally:
        exim_a.stop()
        exim_b.stop()


@pytest.mark.parametrize("backend", ["embedded", "redis"])
def test_counts_survive_crashes_reloads_and_restarts(make_daemon, stage, harness, backend,
                                                     request):
    folder = policy_folder(stage, f"ratelimit-survive-{backend}")
    write(folder / "policy.py", LIMITER.format(window=600, smtp="", log=""))
    state = "embedded"
    if backend == "redis":
        state = f"unix://{request.getfixturevalue('redis_server')['sock']}"
    d = make_daemon(pool_toml("rl", folder / "policy.py", process_limit=4, state=state,
                              clients=("root", "mtapy-t2")))
    conf = shim_conf(d)

    def calls(n, key="heavy@client.test"):
        return [exim_call(harness, conf, "over", key) for _ in range(n)]

    assert set(calls(30)) == {(OK, b"false")}
    for pid in map(int, re.findall(r"worker pid (\d+) idle", d.ctl("status").stdout)):
        os.kill(pid, signal.SIGKILL)
    assert set(calls(30)) == {(OK, b"false")}
    assert reload(d).returncode == 0
    assert set(calls(30)) == {(OK, b"false")}
    d.stop()
    d.start()
    assert set(calls(10)) == {(OK, b"false")}
    assert calls(2) == [(OK, b"true")] * 2  # the 101st, exactly
    assert calls(1, "other@client.test") == [(OK, b"false")]
    shown = d.ctl("ratelimit", "rl", "heavy@client.test")
    assert shown.returncode == 0 and "102 calls" in shown.stdout and "OVER" in shown.stdout, shown
    # Only root may reset: the MTA's uid may call the policy, not mtapy's own functions.
    rc, message = exim_call(harness, conf, "mtapy.filters.ratelimit.reset", "heavy@client.test",
                            user="mtapy-t2")
    assert rc == FAIL and b"for mtapyctl (root) only" in message, message
    # Nor through the policy's own import of the limiter module.
    rc, message = exim_call(harness, conf, "ratelimit.reset", "heavy@client.test",
                            user="mtapy-t2")
    assert rc == FAIL and b"leads into the module" in message, message
    assert d.ctl("ratelimit", "rl", "heavy@client.test", "--reset").returncode == 0
    assert calls(1) == [(OK, b"false")]


def test_redis_unreachable_fails_the_call_and_counts_nothing(make_daemon, stage, harness,
                                                             redis_server):
    folder = policy_folder(stage, "ratelimit-redis-down")
    write(folder / "policy.py", LIMITER.format(window=600, smtp="", log=""))
    d = make_daemon(pool_toml("rl", folder / "policy.py",
                              state=f"unix://{redis_server['sock']}"))
    conf = shim_conf(d)
    assert {exim_call(harness, conf, "over", "k") for _ in range(10)} == {(OK, b"false")}
    redis_server["stop"]()
    rc, message = exim_call(harness, conf, "over", "k")
    assert rc == FAIL and b"Redis" in message, message  # on_error: the MTA defers
    redis_server["restart"]()
    assert "k: 10 calls" in d.ctl("ratelimit", "rl", "k").stdout  # the failed one not counted


def test_one_pool_cannot_see_another_pools_keys(make_daemon, stage, harness, users):
    folder = policy_folder(stage, "state-isolation")
    write(folder / "policy.py", STATE_PROBE)
    d = make_daemon(pool_toml("a", folder / "policy.py") +
                    pool_toml("b", folder / "policy.py", user="mtapy-t2"),
                    daemon_extra=f'state_dir = "{stage}/run/state-isolation"')
    conf_a, conf_b = shim_conf(d, pool="a"), shim_conf(d, pool="b")
    assert exim_call(harness, conf_a, "put", "secret", "42") == (OK, b"ok")
    assert exim_call(harness, conf_a, "get", "secret") == (OK, b"42")
    assert exim_call(harness, conf_b, "get", "secret") == (OK, b"absent")
    a_dir = f"{stage}/run/state-isolation/a"
    assert exim_call(harness, conf_b, "listdir", a_dir) == (OK, b"denied")
    assert os.stat(a_dir).st_uid == users["mtapy-t1"].pw_uid
    assert oct(os.stat(a_dir).st_mode & 0o777) == "0o700"


def test_pools_with_redis_users_of_their_own_cannot_reach_each_other(make_daemon, stage,
                                                                       harness):
    # The key prefix keeps mtapy.state's callers apart; a Redis user per pool, allowed only
    # its prefix, keeps apart a policy that talks to Redis itself. Its password stays out of
    # argv, which every local user can read.
    server = start_redis(stage / "run" / "redis-acl",
                         acl="user default off\n"
                             "user pool-a on >secret-a ~mtapy:a:* +@all\n"
                             "user pool-b on >secret-b ~mtapy:b:* +@all\n")
    sock = server["sock"]
    try:
        policy = policy_folder(stage, "redis-acl")
        write(policy / "policy.py", STATE_PROBE)
        d = make_daemon(pool_toml("a", policy / "policy.py",
                                  state=f"unix://pool-a:secret-a@{sock}?db=0") +
                        pool_toml("b", policy / "policy.py", user="mtapy-t2",
                                  state=f"unix://pool-b:secret-b@{sock}?db=0"))
        conf_a, conf_b = shim_conf(d, pool="a"), shim_conf(d, pool="b")
        assert exim_call(harness, conf_a, "put", "secret", "42") == (OK, b"ok")
        assert exim_call(harness, conf_b, "get", "secret") == (OK, b"absent")
        assert exim_call(harness, conf_a, "raw", "mtapy:a:secret") == (OK, b"s42")
        assert exim_call(harness, conf_b, "raw", "mtapy:a:secret") == (OK, b"denied")
        daemon = d.process.pid
        workers = pathlib.Path(f"/proc/{daemon}/task/{daemon}/children").read_text().split()
        assert workers
        for pid in workers:
            argv = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
            assert b"secret-" not in argv and b"--pool" in argv, argv
    finally:
        server["stop"]()


def test_after_the_window_the_count_starts_again(make_daemon, stage, harness):
    folder = policy_folder(stage, "ratelimit-window")
    write(folder / "policy.py", LIMITER.format(window=1, smtp="", log="").replace(
        "ratelimit.COUNT = 100", "ratelimit.COUNT = 3"))
    d = make_daemon(pool_toml("rl", folder / "policy.py"))
    conf = shim_conf(d)
    answers = [exim_call(harness, conf, "sender_warn", "k")[1] for _ in range(5)]
    assert answers == [b"no", b"no", b"no", b"yes", b"yes"]
    time.sleep(1.2)
    assert exim_call(harness, conf, "sender_warn", "k") == (OK, b"no")


def test_the_daemon_gives_the_pool_only_its_own_state_files(make_daemon, stage, users):
    # The state folder is the pool user's: a hard link it plants there to a root file must
    # not be handed to it when the daemon prepares the folder (at every reload).
    folder = policy_folder(stage, "state-links")
    write(folder / "policy.py", "def f():\n    return 'ok'\n")
    d = make_daemon(pool_toml("a", folder / "policy.py"))
    victim = stage / "run" / "root-owned"
    victim.write_text("root's\n")
    victim.chmod(0o666)  # linkable by the pool user (fs.protected_hardlinks)
    state_dir = d.dir / "state" / "a"
    subprocess.run(["setpriv", f"--reuid={users['mtapy-t1'].pw_uid}",
                    f"--regid={users['mtapy-t1'].pw_gid}", "--clear-groups",
                    "ln", str(victim), str(state_dir / "data.mdb")], check=True)
    assert reload(d).returncode == 0
    assert os.stat(victim).st_uid == 0
