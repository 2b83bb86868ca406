"""courier.ttldb: upstream's TtlDb API, one database and one lock for every worker of a pool."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from courier import ttldb
from courier_workers import fake_upstream, message, run_workers
from mtapy import state
from mtapy.filter_chain import Chain


def test_tokens_are_set_read_and_deleted_as_upstream_s(pool_state):
    db = ttldb.TtlDb("correspondents", 3600, 600)
    assert (db.name, db.ttl, db.purge_interval) == ("correspondents", 3600, 600)
    now = time.time()
    db["a1b2"] = now
    assert "a1b2" in db and db.has_key("a1b2") and b"a1b2" in db
    assert db["a1b2"] == str(int(now)) and int(db["a1b2"]) == int(now)  # whole seconds, a str
    assert float(db["a1b2"]) <= now
    db["a1b2"] = f"{int(now)}.7"  # upstream stores int(value) of whatever it gets
    assert db["a1b2"] == str(int(now))
    db["a1b2"] = now
    del db["a1b2"]
    assert "a1b2" not in db and not db.has_key("a1b2")
    with pytest.raises(KeyError):
        db["a1b2"]
    with pytest.raises(KeyError):
        del db["a1b2"]
    with pytest.raises(ValueError):
        db["x"] = "not a time"


def test_databases_are_kept_apart_by_name_and_shared_by_it(pool_state):
    one, same, other = (ttldb.TtlDb(n, 60, 60) for n in ("greylist_Passed", "greylist_Passed",
                                                          "greylist_NotPassed"))
    one["k"] = time.time()
    assert "k" in same and "k" not in other
    assert state.get("k") is None  # apart from the pool's other state too


def test_a_token_expires_ttl_seconds_after_its_value_and_a_new_value_renews_it(pool_state):
    db = ttldb.TtlDb("short", 2, 1)
    db["k"] = time.time()
    time.sleep(1.2)
    assert "k" in db
    db["k"] = time.time()  # used again: two more seconds
    time.sleep(1.2)
    db.purge()  # nothing to do: it neither removes a live token nor is needed to expire one
    assert "k" in db
    time.sleep(1.0)
    assert "k" not in db and state.get(b"ttldb\0short\0k") is None


def test_a_value_already_older_than_the_ttl_is_not_kept(pool_state):
    db = ttldb.TtlDb("old", 60, 60)
    db["k"] = time.time()
    db["k"] = time.time() - 61  # upstream's next purge() would have dropped it
    assert "k" not in db


def test_lock_misuse_is_a_lock_error(pool_state, monkeypatch):
    db = ttldb.TtlDb("misuse", 60, 60)
    with pytest.raises(ttldb.LockError, match="without lock"):
        db.unlock()
    db.lock()
    with pytest.raises(ttldb.LockError, match="twice"):
        db.lock()
    db.unlock()
    monkeypatch.setattr(ttldb, "LOCK_LEASE", 0.05)
    monkeypatch.setattr(state, "add", lambda *args, **kwargs: False)  # always taken
    started = time.monotonic()
    with pytest.raises(ttldb.LockError, match="LOCK_LEASE"):
        db.lock()
    assert 0.1 <= time.monotonic() - started < 1
    assert issubclass(ttldb.LockError, ttldb.TtlDbError)


def test_a_lease_overrun_is_logged_and_does_not_free_the_next_holder_s_lock(pool_state,
                                                                           monkeypatch, capsys):
    monkeypatch.setattr(ttldb, "LOCK_LEASE", 0.2)
    slow, next_one = ttldb.TtlDb("overrun", 60, 60), ttldb.TtlDb("overrun", 60, 60)
    slow.lock()
    time.sleep(0.3)
    next_one.lock()  # the slow holder's lease has run out
    slow.unlock()
    assert "raise LOCK_LEASE" in capsys.readouterr().err
    assert state.get("ttldb-lock\0overrun") is not None  # still next_one's
    next_one.unlock()
    assert state.get("ttldb-lock\0overrun") is None


def test_without_shared_state_opening_fails_with_what_to_do(monkeypatch):
    monkeypatch.delenv("MTAPY_STATE", raising=False)
    state.configure("")
    with pytest.raises(ttldb.OpenError, match="workerd.toml"):
        ttldb.TtlDb("nowhere", 60, 60)
    assert issubclass(ttldb.OpenError, ttldb.TtlDbError)


HOLDER = """
import sys, time
from courier import ttldb
ttldb.LOCK_LEASE = 1.0
db = ttldb.TtlDb("held", 60, 60)
db.lock()
print("locked", flush=True)
time.sleep(60)
"""


def test_a_worker_killed_holding_the_lock_blocks_the_others_only_for_the_lease(pool_state,
                                                                              monkeypatch):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, MTAPY_STATE=pool_state,
                                       MTAPY_POOL="courier-test"))
    assert holder.stdout.readline() == "locked\n"
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    monkeypatch.setattr(ttldb, "LOCK_LEASE", 1.0)
    db = ttldb.TtlDb("held", 60, 60)
    started = time.monotonic()
    db.lock()
    waited = time.monotonic() - started
    db.unlock()
    assert 0.5 < waited < 1.5  # it was held, and no longer than its lease


def test_upstream_s_import_spellings_all_get_mtapy_s_ttldb(tmp_path, monkeypatch, pool_state,
                                                           clean_imports):
    site = fake_upstream(tmp_path / "site", {
        "uses_ttldb": "from . import ttldb\n"
                      "def init_filter():\n"
                      "    global db\n    db = ttldb.TtlDb('x', 60, 60)\n"
                      "def do_filter(body_path, control_paths):\n    return ''\n",
        "other": "def do_filter(body_path, control_paths):\n    return '250 upstream ran'\n"})
    monkeypatch.syspath_prepend(str(site))
    chain = Chain([("uses_ttldb", set()), ("other", set())])
    assert sys.modules["pythonfilter.uses_ttldb"].ttldb is ttldb
    assert chain.run("/body", ["/control"]) == "250 upstream ran"  # its other filters work
    import TtlDb
    import pythonfilter.ttldb
    from pythonfilter import TtlDb as older
    import ttldb as top_level
    assert pythonfilter.ttldb is ttldb and top_level is ttldb and TtlDb is ttldb
    assert older is ttldb


def test_without_upstream_installed_filters_may_still_import_pythonfilter_ttldb(clean_imports):
    Chain([])
    from pythonfilter import ttldb as found
    assert found is ttldb
    with pytest.raises(ModuleNotFoundError):  # nothing else is in that package
        Chain([("greylist", set())])


GREYLIST = textwrap.dedent('''\
    """A greylisting filter written against upstream's API, as its greylist is."""
    import hashlib
    import time
    import courier.config
    import courier.control
    from . import ttldb

    greylist_time = 0   # seconds before a retry of a new triplet is accepted
    hold = 0.0          # seconds spent between the look-up and the write, lock held

    def init_filter():
        global _passed, _waiting
        courier.config.apply_module_config("greylisting.py", globals())
        _passed = ttldb.TtlDb("greylisting_passed", 3600, 600)
        _waiting = ttldb.TtlDb("greylisting_waiting", 3600, 600)

    def do_filter(body_path, control_paths):
        network = courier.control.get_senders_ip(control_paths).rsplit(".", 1)[0]
        sender = courier.control.get_sender(control_paths).lower()
        _passed.purge()
        _waiting.purge()
        found_all = True
        for recipient in courier.control.get_recipients(control_paths):
            triplet = "\\0".join([sender, recipient.lower(), network])
            digest = hashlib.md5(triplet.encode()).hexdigest()
            _passed.lock()
            _waiting.lock()
            try:
                if digest in _waiting:
                    if float(_waiting[digest]) + greylist_time > time.time():
                        found_all = False
                    else:
                        _passed[digest] = time.time()
                        del _waiting[digest]
                elif digest in _passed:
                    _passed[digest] = time.time()
                else:
                    time.sleep(hold)
                    found_all = False
                    _waiting[digest] = time.time()
            finally:
                _waiting.unlock()
                _passed.unlock()
        return "" if found_all else "451 4.7.1 Greylisting in action, please come back later"
''')


def test_four_workers_greylist_each_triplet_exactly_once(tmp_path, pool_state):
    site = fake_upstream(tmp_path / "site", {"greylisting": GREYLIST})
    triplets = [message(tmp_path / "queue", f"m{i}", "Sender@example.net",
                        [f"user{i}@example.com"], ip=f"198.51.100.{i}") for i in range(10)]
    rounds = [m for _ in range(5) for m in triplets]  # each worker sends each 5 times
    replies = run_workers(4, tmp_path, pool_state, site, "greylisting\n",
                          "[greylisting.py]\nhold = 0.003\n", rounds)
    tempfails = [i for i, reply in enumerate(replies) if reply.startswith("451")]
    assert len(replies) == 200 and len(tempfails) == 10  # one for each triplet, in all workers
    assert {replies.count(r) for r in set(replies)} == {190, 10}
    assert sorted({tuple(rounds[i % 50][1]) for i in tempfails}) == sorted(
        tuple(paths) for _, paths in triplets)
