"""Hot reload: generations of workers, a broken reload that changes nothing, config reload,
reload_on_change, code fixed per generation, and recycling by memory and descriptors.

Every client here calls through the real shim (dlfunc-harness loads mtapy_exim.so as Exim
does); one test also drives a real Exim daemon during the reloads.
"""

import os
import re
import signal
import subprocess
import tempfile
import textwrap
import threading
import time

import pytest

from conftest import free_port, pool_toml, wait_for
from exim.exim_harness import DOMAIN, Exim, main_config, send
from test_daemon import (FAIL, OK, exim_call, harness, log_lines, readsocket_line,  # noqa: F401
                         shim_conf)

VERSIONED = """
    import time
    from helper import VERSION  # beside the policy: fixed per generation too

    def version():
        return VERSION

    def slow():
        time.sleep(5)
        return VERSION
"""

BROKEN = {
    "syntax error": ("def version(:\n", "SyntaxError"),
    "import raising": ("raise RuntimeError('the database is down')\n", "the database is down"),
    "hung import": ("import time\ntime.sleep(600)\n", "did not load its policy within"),
    "self_test raising": (
        "def version(): return 'v9'\n"
        "def self_test():\n"
        "    assert version() == 'v1', 'version() answers ' + version()\n",
        "version() answers v9"),
    "self_test false": ("def version(): return 'v9'\ndef self_test(): return False\n",
                        "self_test() returned False"),
}


def policy_folder(stage, name):
    """A folder of its own (reload_on_change watches it), readable by the pool users."""
    folder = stage / "policies" / name
    folder.mkdir(mode=0o755)
    return folder


def write(path, text):
    path.write_text(textwrap.dedent(text))
    path.chmod(0o644)


def set_version(folder, version):
    write(folder / "policy.py", VERSIONED)
    write(folder / "helper.py", f"VERSION = {version!r}\n")


def reload(d, *pool):
    return d.ctl("reload", *pool, timeout=120)


class Load:
    """N shim clients calling version() for SECONDS, every answer kept with its start time."""

    def __init__(self, harness, conf, clients=16, seconds=30, fn="version"):
        env = {**os.environ, "MTAPY_SHIM_CONF": str(conf), "DLFUNC_HARNESS_EVERY": "1",
               "DLFUNC_HARNESS_STAMP": "1", "DLFUNC_HARNESS_SECONDS": str(seconds)}
        # Into files: a pipe nobody reads until the end would stall the clients.
        self.outputs = [tempfile.TemporaryFile() for _ in range(clients)]
        self.processes = [subprocess.Popen(
            [str(harness), str(harness.parent / "mtapy_exim.so"), "repeat", "100000000", fn],
            stdout=out, stderr=subprocess.DEVNULL, env=env) for out in self.outputs]

    def results(self):
        """[(started at, monotonic seconds; rc; value)] of every call of every client."""
        calls = []
        for p, out in zip(self.processes, self.outputs):
            p.wait(timeout=120)
            out.seek(0)
            for line in out.read().decode(errors="replace").splitlines():
                found = re.fullmatch(r"each at=(\d+) took=\d+ rc=(\d+) (.*)", line)
                if found:
                    calls.append((int(found[1]) / 1e6, int(found[2]), found[3]))
        return calls


def assert_no_failed_call(calls, versions):
    failed = [c for c in calls if c[1] != OK or c[2] not in versions]
    assert not failed, (len(failed), failed[:5])


def assert_only_new_after_each_reload(calls, reloads):
    """reloads: [(asked, done, version)]; between one's end and the next's start, only it."""
    for (_, done, version), (asked_next, _, _) in zip(reloads, reloads[1:] + [(1e18, 0, 0)]):
        stale = [c for c in calls if done <= c[0] < asked_next and c[2] != version]
        assert not stale, (version, len(stale), stale[:3])


def workers(d):
    return sorted(int(p) for p in re.findall(r"^ +worker pid (\d+) (?:idle|busy|starting|ready|stopping),", d.ctl("status").stdout,
                                             re.MULTILINE))


# ---- reload under load ------------------------------------------------------------------------

RCPT_ACL = """\
acl_connect:
  accept
acl_mail:
  accept
acl_rcpt:
  deny   message = policy ${dlfunc{MTAPY_SO}{python}{version}}
acl_data:
  accept
"""


def test_twenty_reloads_under_load_fail_no_call_and_switch_whole(make_daemon, stage, harness):
    folder = policy_folder(stage, "reload-load")
    set_version(folder, "v1")
    d = make_daemon(pool_toml("a", folder / "policy.py", clients=("root", "Debian-exim"),
                              process_limit=4, timeout="5s"))
    conf = shim_conf(d, timeout="5s")
    port = free_port()
    exim = Exim(d.dir / "exim", main_config(d.dir / "exim", port, stage / "bin" / "mtapy_exim.so",
                                            d.readsocket, "dlfunc", RCPT_ACL), conf, port)
    exim.start()
    replies, stop = [], threading.Event()

    def smtp_sessions():
        while not stop.is_set():
            replies.append(send(exim, "a@client.test", [f"user1@{DOMAIN}"])["rcpt"][0])

    load = Load(harness, conf, clients=16, seconds=30)
    sessions = threading.Thread(target=smtp_sessions)
    began = time.monotonic()
    reloads = [(began, began, "v1")]
    try:
        for n in range(20):
            if n == 5:
                sessions.start()  # Exim's sessions during reloads 5 to 14
            if n == 15:
                stop.set()
                sessions.join()
            version = "v2" if n % 2 == 0 else "v1"
            set_version(folder, version)
            asked = time.monotonic()
            r = reload(d, "a")
            done = time.monotonic()
            assert r.returncode == 0 and "pool a: generation" in r.stdout, (r, d.log())
            reloads.append((asked, done, version))
            time.sleep(max(0, began + 1.4 * (n + 1) - time.monotonic()))
    finally:
        stop.set()
        exim.stop()
    calls = load.results()
    assert len(calls) > 10000, len(calls)
    assert_no_failed_call(calls, {"v1", "v2"})
    assert_only_new_after_each_reload(calls, reloads)
    assert replies and all(r in [(550, "policy v1"), (550, "policy v2")] for r in replies), \
        sorted(set(replies))
    assert {"v1", "v2"} <= {c[2] for c in calls}
    assert exim.paniclog() == "", exim.paniclog()


@pytest.mark.parametrize("way", BROKEN)
def test_a_broken_reload_under_load_changes_nothing_and_says_why(make_daemon, stage, harness,
                                                                 way):
    folder = policy_folder(stage, f"reload-broken-{way.replace(' ', '-')}")
    set_version(folder, "v1")
    d = make_daemon(pool_toml("a", folder / "policy.py", process_limit=2, start_timeout="2s",
                              max_use=10**8))  # no recycling: the same workers before and after
    before = workers(d)
    load = Load(harness, shim_conf(d), clients=16, seconds=4)
    time.sleep(0.5)
    source, error = BROKEN[way]
    write(folder / "policy.py", source)
    r = reload(d, "a")
    calls = load.results()
    assert r.returncode == 1 and "RELOAD FAILED" in r.stdout and error in r.stderr, r
    assert_no_failed_call(calls, {"v1"})
    assert len(calls) > 1000, len(calls)
    assert workers(d) == before, d.ctl("status").stdout  # the old generation, untouched
    assert len(log_lines(d, "pool a: reload failed, generation 1 serves on")) == 1, d.log()
    assert error in d.log().split("pool a: reload failed")[1][:4000], d.log()
    status = d.ctl("status").stdout
    assert "LAST RELOAD FAILED" in status and error in status, status
    set_version(folder, "v2")
    assert reload(d, "a").returncode == 0
    assert exim_call(harness, shim_conf(d), "version") == (OK, b"v2")
    assert "LAST RELOAD FAILED" not in d.ctl("status").stdout


def test_a_call_in_flight_across_a_reload_ends_with_the_old_code(make_daemon, stage, harness):
    folder = policy_folder(stage, "reload-in-flight")
    set_version(folder, "v1")
    d = make_daemon(pool_toml("a", folder / "policy.py", process_limit=2, timeout="10s"))
    conf = shim_conf(d, timeout="10s")
    slow = subprocess.Popen([str(harness), str(harness.parent / "mtapy_exim.so"), "call", "slow"],
                            stdout=subprocess.PIPE, env={**os.environ, "MTAPY_SHIM_CONF": str(conf)})
    assert wait_for(lambda: " busy," in d.ctl("status").stdout), d.ctl("status").stdout
    busy = int(re.search(r"worker pid (\d+) busy", d.ctl("status").stdout)[1])
    set_version(folder, "v2")
    asked = time.monotonic()
    reloading = subprocess.Popen([str(d.stage / "bin" / "mtapyctl"), "-s", str(d.admin), "reload"],
                                 stdout=subprocess.PIPE, text=True)
    # The new generation answers long before the old one's call ends.
    assert wait_for(lambda: exim_call(harness, conf, "version") == (OK, b"v2"), timeout=3)
    assert time.monotonic() - asked < 3
    assert slow.communicate(timeout=15)[0] == b"rc=0\nv1\n"
    out, _ = reloading.communicate(timeout=15)
    assert reloading.returncode == 0, out
    drained = int(re.search(r"finished its calls after (\d+) ms", out)[1])
    assert drained >= 3500, out
    assert wait_for(lambda: busy not in workers(d)), d.ctl("status").stdout


def test_a_failed_reload_s_exception_cannot_pass_for_the_daemon_s_own_log_lines(
        make_daemon, stage, harness):
    folder = policy_folder(stage, "forged-reload")
    set_version(folder, "v1")
    d = make_daemon(pool_toml("a", folder / "policy.py"))
    write(folder / "policy.py",
          "raise RuntimeError('no\\nmtapy-workerd[1] critical: pool b: forged\\n\\x1b[31m')\n")
    r = reload(d)
    assert r.returncode != 0 and "forged" in r.stdout + r.stderr
    assert "\x1b" not in r.stdout + r.stderr + d.log()
    assert not any(line.startswith("mtapy-workerd[1]") for line in d.log().splitlines()), d.log()
    assert exim_call(harness, shim_conf(d), "version") == (OK, b"v1")


def test_reload_on_change_makes_an_edit_live_within_two_seconds(make_daemon, stage, harness):
    folder = policy_folder(stage, "reload-on-change")
    set_version(folder, "v1")
    d = make_daemon(pool_toml("a", folder / "policy.py") + "reload_on_change = true\n")
    conf = shim_conf(d)
    assert exim_call(harness, conf, "version") == (OK, b"v1")
    write(folder / "helper.py", "VERSION = 'v2'\n")  # a module beside the policy
    edited = time.monotonic()
    assert wait_for(lambda: exim_call(harness, conf, "version") == (OK, b"v2"), timeout=2), \
        d.log()
    assert time.monotonic() - edited < 2
    assert log_lines(d, "pool a: generation 2 is live")


@pytest.mark.parametrize("switch", ["rename over", "ln -sfn"])
def test_reload_on_change_follows_a_release_symlink_switched_to_new_code(
        make_daemon, stage, harness, switch):
    """A release deploy: policy = .../current/policy.py, current -> releases/N, and a deploy
    makes the link again to point at the next release (atomically, or as `ln -sfn` does)."""
    site = policy_folder(stage, f"releases-{switch.split()[0]}")
    releases = [site / "v1", site / "v2", site / "v3"]
    for number, release in enumerate(releases, 1):
        release.mkdir(mode=0o755)
        set_version(release, f"v{number}")
    current = site / "current"
    current.symlink_to("v1")
    d = make_daemon(pool_toml("a", current / "policy.py") + "reload_on_change = true\n")
    conf = shim_conf(d)
    assert exim_call(harness, conf, "version") == (OK, b"v1")

    def switch_to(release):
        if switch == "ln -sfn":
            subprocess.run(["ln", "-sfn", release.name, str(current)], check=True)
        else:
            (site / "next").symlink_to(release.name)
            os.replace(site / "next", current)

    switch_to(releases[1])
    assert wait_for(lambda: exim_call(harness, conf, "version") == (OK, b"v2"), timeout=5), \
        d.log()
    # The folder watch moved with the link: an edit in the new release is seen too.
    write(releases[1] / "helper.py", "VERSION = 'v2 edited'\n")
    assert wait_for(lambda: exim_call(harness, conf, "version") == (OK, b"v2 edited"),
                    timeout=5), d.log()
    switch_to(releases[2])
    assert wait_for(lambda: exim_call(harness, conf, "version") == (OK, b"v3"), timeout=5), \
        d.log()


def test_reload_on_change_follows_links_in_links_and_a_release_made_after_the_switch(
        make_daemon, stage, harness):
    """policy = .../etc/current/policy.py, with etc -> srv (absolute) and srv/current a plain
    folder at first: made a link later, switched to a release that does not exist yet."""
    site = policy_folder(stage, "links-in-links")
    (site / "srv").mkdir(mode=0o755)
    (site / "etc").symlink_to(site / "srv")
    current = site / "srv" / "current"
    current.mkdir(mode=0o755)
    set_version(current, "v1")
    d = make_daemon(pool_toml("a", site / "etc" / "current" / "policy.py")
                    + "reload_on_change = true\n")
    conf = shim_conf(d)
    assert exim_call(harness, conf, "version") == (OK, b"v1")

    def live(version):
        return wait_for(lambda: exim_call(harness, conf, "version") == (OK, version), timeout=5)

    # The plain folder becomes a link to a release (the layout of a first release deploy).
    release = site / "srv" / "r2"
    release.mkdir(mode=0o755)
    set_version(release, "v2")
    current.rename(site / "srv" / "old")
    current.symlink_to("r2")
    assert live(b"v2"), d.log()
    # Switched to a release that is not there yet: once it is, its code is live.
    (site / "srv" / "next").symlink_to("r3")
    os.replace(site / "srv" / "next", current)
    time.sleep(0.5)
    staging = site / "srv" / ".r3"
    staging.mkdir(mode=0o755)
    set_version(staging, "v3")
    staging.rename(site / "srv" / "r3")
    assert live(b"v3"), d.log()
    write(site / "srv" / "r3" / "helper.py", "VERSION = 'v3 edited'\n")
    assert live(b"v3 edited"), d.log()


def test_without_a_reload_an_edit_changes_no_answer_while_workers_come_and_go(
        make_daemon, stage, harness):
    folder = policy_folder(stage, "reload-fixed")
    set_version(folder, "v1")
    # max_use = 1: every call is answered by a fresh worker, started after the edit.
    d = make_daemon(pool_toml("a", folder / "policy.py", process_limit=2, max_use=1))
    conf = shim_conf(d)
    set_version(folder, "v2")
    answers = set()
    for n in range(30):
        answers.add(exim_call(harness, conf, "version"))
        if n % 10 == 5:
            for pid in workers(d):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass  # with max_use = 1 it may have recycled since status listed it
    assert answers == {(OK, b"v1")}, answers
    # Each recycled worker said why; under load the daemon may log it a moment later.
    assert wait_for(lambda: len(log_lines(d, "recycling after 1 calls (max_use)")) >= 15), d.log()
    assert reload(d).returncode == 0
    assert exim_call(harness, conf, "version") == (OK, b"v2")


# ---- config reload ----------------------------------------------------------------------------

def test_config_reload_adds_and_removes_pools_and_a_broken_config_changes_nothing(
        make_daemon, stage, harness):
    folder = policy_folder(stage, "reload-config")
    set_version(folder, "v1")
    d = make_daemon(pool_toml("a", folder / "policy.py"))
    header = d.config.read_text().split("[pools.a]")[0]
    conf_a, conf_b = shim_conf(d, pool="a"), shim_conf(d, pool="b")

    d.config.write_text(header + pool_toml("a", folder / "policy.py") +
                        pool_toml("b", folder / "policy.py", user="mtapy-t2"))
    r = reload(d)
    assert r.returncode == 0 and "pool b: added" in r.stdout, r
    assert wait_for(lambda: exim_call(harness, conf_b, "version") == (OK, b"v1")), d.log()

    d.config.write_text(header + pool_toml("b", folder / "policy.py", user="mtapy-t2") +
                        "[pools.c]\nwibble = 1\n")
    r = reload(d)
    assert r.returncode == 1 and "nothing was changed" in r.stderr, r
    assert f"{d.config}:" in r.stderr and "wibble" in r.stderr, r
    assert exim_call(harness, conf_a, "version") == (OK, b"v1")  # a is still there

    d.config.write_text(header + pool_toml("b", folder / "policy.py", user="mtapy-t2"))
    r = reload(d)
    assert r.returncode == 0 and "pool a: removed" in r.stdout, r
    rc, message = exim_call(harness, conf_a, "version")
    assert rc == FAIL and b"no pool a" in message, message
    assert exim_call(harness, conf_b, "version") == (OK, b"v1")
    assert "pool a:" not in d.ctl("status").stdout


# ---- recycling --------------------------------------------------------------------------------

@pytest.mark.parametrize("knob, body, reason", [
    ("max_rss_mb = 60", "HOARD.append(bytearray(5 << 20))", "passed max_rss_mb = 60"),
    ("max_open_fds = 40", "HOARD.append(open('/dev/null'))", "(max_open_fds)"),
    # A leak behind a file it closes leaves a low descriptor number free each time.
    ("max_open_fds = 40", "t = open('/dev/null'); HOARD.append(open('/dev/null')); t.close()",
     "(max_open_fds)"),
])
def test_a_leaking_policy_is_recycled_between_calls_without_failing_one(
        make_daemon, stage, harness, knob, body, reason):
    folder = policy_folder(stage, f"recycle-{knob.split()[0]}-{len(body)}")
    write(folder / "policy.py", f"""
        HOARD = []
        def leak():
            {body}
            return str(len(HOARD))
    """)
    d = make_daemon(pool_toml("a", folder / "policy.py", process_limit=1) + knob + "\n")
    r = subprocess.run([str(harness), str(harness.parent / "mtapy_exim.so"), "repeat", "200",
                        "leak"], capture_output=True,
                       env={**os.environ, "MTAPY_SHIM_CONF": str(shim_conf(d))}, timeout=120)
    assert b"calls=200 failures=0" in r.stdout, (r, d.log())
    assert wait_for(lambda: len(log_lines(d, "pool a worker pid", reason)) >= 2), d.log()


# ---- what a review found (each failed before its fix) -------------------------------------

def test_a_reload_that_fails_inside_the_daemon_leaves_the_next_one_working(
        make_daemon, stage, harness):
    folder = policy_folder(stage, "reload-internal-error")
    set_version(folder, "v1")
    d = make_daemon(pool_toml("a", folder / "policy.py", process_limit=1))
    pid = d.process.pid
    open_now = len(os.listdir(f"/proc/{pid}/fd"))
    soft = subprocess.run(["prlimit", f"--pid={pid}", "--nofile", "--raw", "--noheadings",
                           "-o", "SOFT"], capture_output=True, text=True, check=True).stdout.strip()
    # No descriptor left for the new generation's code snapshot: the reload fails inside.
    # (Only the soft limit moves: raising a hard one back may not be allowed here.)
    subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={open_now}:"], check=True)
    set_version(folder, "v2")
    r = reload(d, "a")
    subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={soft}:"], check=True)
    assert r.returncode == 1, r
    assert exim_call(harness, shim_conf(d), "version") == (OK, b"v1")
    r = reload(d, "a")
    assert r.returncode == 0, (r, d.log())
    assert exim_call(harness, shim_conf(d), "version") == (OK, b"v2")


def test_a_pool_renamed_with_its_readsocket_keeps_serving_it(make_daemon, stage):
    folder = policy_folder(stage, "reload-rename")
    set_version(folder, "v1")
    listener = stage / "run" / "rename-readsocket.sock"
    d = make_daemon(pool_toml("a", folder / "policy.py", readsocket=str(listener)))
    header = d.config.read_text().split("[pools.a]")[0]
    d.config.write_text(header + pool_toml("b", folder / "policy.py", readsocket=str(listener)))
    r = reload(d)
    assert r.returncode == 0 and "pool a: removed" in r.stdout and "pool b: added" in r.stdout, r
    assert readsocket_line(listener, "version") == b"v1"


def test_sigterm_lets_a_pool_removed_by_a_reload_finish_its_call(make_daemon, stage, harness):
    folder = policy_folder(stage, "reload-remove-stop")
    set_version(folder, "v1")
    d = make_daemon(pool_toml("a", folder / "policy.py") +
                    pool_toml("b", folder / "policy.py", user="mtapy-t2"))
    conf = shim_conf(d, pool="a", timeout="10s")
    slow = subprocess.Popen([str(harness), str(harness.parent / "mtapy_exim.so"), "call", "slow"],
                            stdout=subprocess.PIPE, env={**os.environ, "MTAPY_SHIM_CONF": str(conf)})
    assert wait_for(lambda: " busy," in d.ctl("status").stdout)
    header = d.config.read_text().split("[pools.a]")[0]
    d.config.write_text(header + pool_toml("b", folder / "policy.py", user="mtapy-t2"))
    reloading = subprocess.Popen([str(d.stage / "bin" / "mtapyctl"), "-s", str(d.admin), "reload"],
                                 stdout=subprocess.PIPE)
    assert wait_for(lambda: "pool a:" not in d.ctl("status").stdout)
    assert d.stop() == 0
    assert slow.communicate(timeout=15)[0] == b"rc=0\nv1\n"
    reloading.communicate(timeout=15)


def test_sigterm_during_a_reload_ends_what_the_new_code_forked(make_daemon, stage):
    folder = policy_folder(stage, "reload-stop-forked")
    set_version(folder, "v1")
    d = make_daemon(pool_toml("a", folder / "policy.py", process_limit=1))
    pidfile = folder / "child.pid"
    folder.chmod(0o777)  # the pool's user writes the pid of what it forked
    write(folder / "policy.py", f"""
        import subprocess, time
        child = subprocess.Popen(["sleep", "1000"])
        open("{pidfile}", "w").write(str(child.pid))
        time.sleep(600)
    """)
    reloading = subprocess.Popen([str(d.stage / "bin" / "mtapyctl"), "-s", str(d.admin), "reload"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert wait_for(lambda: pidfile.exists() and pidfile.read_text())
    child = int(pidfile.read_text())
    assert d.stop() == 0
    out, err = reloading.communicate(timeout=15)
    assert reloading.returncode in (1, 3), (out, err)  # a clear answer, never an abort
    assert wait_for(lambda: not os.path.exists(f"/proc/{child}") or
                    open(f"/proc/{child}/stat").read().split()[2] == "Z", timeout=5)


def test_a_pool_added_with_a_broken_policy_is_reported_failed(make_daemon, stage):
    folder = policy_folder(stage, "reload-add-broken")
    set_version(folder, "v1")
    d = make_daemon(pool_toml("a", folder / "policy.py"))
    broken = folder / "broken.py"
    write(broken, "raise RuntimeError('not today')\n")
    header = d.config.read_text().split("[pools.a]")[0]
    d.config.write_text(header + pool_toml("a", folder / "policy.py") +
                        pool_toml("b", broken, user="mtapy-t2"))
    r = reload(d)
    assert r.returncode == 1 and "pool b: FAILED to start" in r.stdout, r


def test_max_idle_grows_a_pool_under_load_and_shrinks_it_when_idle(make_daemon, stage, harness):
    folder = policy_folder(stage, "max-idle")
    write(folder / "policy.py", "import time\ndef nap():\n    time.sleep(0.2)\n    return 'ok'\n")
    d = make_daemon(pool_toml("a", folder / "policy.py", process_limit=4, max_idle="1s",
                              min_processes=1, timeout="5s"))
    assert len(workers(d)) == 1
    load = Load(harness, shim_conf(d), clients=4, seconds=3, fn="nap")
    most = 0
    end = time.monotonic() + 3
    while time.monotonic() < end:
        most = max(most, len(workers(d)))
        time.sleep(0.1)
    calls = load.results()
    assert most == 4, d.log()
    assert_no_failed_call(calls, {"ok"})
    assert wait_for(lambda: len(workers(d)) == 1, timeout=5), d.ctl("status").stdout
    assert len(log_lines(d, "idle past max_idle")) == 3, d.log()


def test_max_idle_does_not_start_every_worker_behind_a_slow_import(make_daemon, stage):
    folder = policy_folder(stage, "max-idle-slow")
    write(folder / "policy.py", "import time\ntime.sleep(1)\ndef f():\n    return 'ok'\n")
    d = make_daemon(pool_toml("a", folder / "policy.py", process_limit=8, max_idle="2s",
                              min_processes=1))
    time.sleep(1.5)  # the daemon scanned ~15 times while its first worker imported
    assert len(workers(d)) == 1, d.ctl("status").stdout
