"""courier.filters.ratelimit(auth): upstream's rate limits, one count for every worker."""

import time

import pytest

from courier import config
from courier.filters import ratelimit, ratelimitauth
from courier_workers import away_from_a_minute_turn, fake_upstream, message, run_workers
from mtapy.filter_chain import Chain

TOO_MANY = "421 Too many messages from 192.0.2.1, slow down."


@pytest.fixture
def clock(monkeypatch):
    """time.time() at the start of a minute, moved on by hand (the state's expiry follows)."""
    now = [(time.time() // 60 + 10) * 60 + 1]
    monkeypatch.setattr(time, "time", lambda: now[0])
    return now


def test_four_workers_share_one_count_per_client_ip(tmp_path, pool_state):
    site = fake_upstream(tmp_path / "site", {})  # upstream's ratelimit would fail to import
    mail = [message(tmp_path / "queue", f"m{i}", "a@example.net", ["b@example.com"])
            for i in range(10)]
    away_from_a_minute_turn()
    replies = run_workers(4, tmp_path, pool_state, site, "ratelimit\n",
                          "[ratelimit.py]\nmax_connections = 20\ninterval = 2\n", mail)
    assert sorted(set(replies)) == ["200 Ok", TOO_MANY]
    assert replies.count("200 Ok") == 20 and replies.count(TOO_MANY) == 20  # the 21st on


def test_four_workers_share_one_count_per_auth_user(tmp_path, pool_state):
    site = fake_upstream(tmp_path / "site", {})
    authed = [message(tmp_path / "queue", f"a{i}", "a@example.net", ["b@example.com"],
                      auth="alice") for i in range(10)]
    anonymous = message(tmp_path / "queue", "anon", "a@example.net", ["b@example.com"])
    away_from_a_minute_turn()
    replies = run_workers(4, tmp_path, pool_state, site, "pythonfilter.ratelimitauth\n",
                          "[ratelimitauth.py]\nmax_connections = 30\n",
                          authed + [anonymous] * 5)
    refused = "421 User alice has exceeded sending limits; wait awhile and try again."
    assert replies.count(refused) == 10 and replies.count("200 Ok") == 50  # 30 + 20 anonymous


def test_the_window_is_the_current_minute_and_the_interval_before_it(tmp_path, pool_state,
                                                                    clock, monkeypatch):
    monkeypatch.setattr(ratelimit, "max_connections", 3)
    monkeypatch.setattr(ratelimit, "interval", 2)
    _, paths = message(tmp_path, "m", "a@example.net", ["b@example.com"])
    assert [ratelimit.do_filter("", paths) for _ in range(4)] == ["", "", "", TOO_MANY]
    clock[0] += 60  # the next minute: the first one's 4 still count
    assert ratelimit.do_filter("", paths) == TOO_MANY
    clock[0] += 60  # the first minute left the window: 1 + this one
    assert ratelimit.do_filter("", paths) == ""


def test_limit_network_counts_a_v4_slash_24_and_a_v6_slash_48_together(tmp_path, pool_state,
                                                                      monkeypatch):
    monkeypatch.setattr(ratelimit, "max_connections", 1)
    monkeypatch.setattr(ratelimit, "limit_network", True)
    ips = ["192.0.2.1", "192.0.2.200", "2001:db8:1:2::1", "2001:db8:1:ffff::9", "192.0.3.1"]
    replies = [ratelimit.do_filter("", message(tmp_path, f"n{i}", "a@x.net", ["b@y.com"],
                                               ip=ip)[1]) for i, ip in enumerate(ips)]
    assert replies == ["", "421 Too many messages from 192.0.2.200, slow down.", "",
                       "421 Too many messages from 2001:db8:1:ffff::9, slow down.", ""]


def test_settings_come_from_pythonfilter_modules_conf_also_by_their_older_names(
        tmp_path, monkeypatch, capsys):
    conf = tmp_path / "pythonfilter-modules.conf"
    conf.write_text("[ratelimit.py]\nmaxConnections = 7\nlimitNetwork = True\ninterval = 5\n"
                    "sendersPurgeInterval = 60\n[ratelimitauth.py]\nmax_connections = 2 * 4\n")
    monkeypatch.setattr(config, "MODULE_CONFIG_PATHS", [str(conf)])
    for module in (ratelimit, ratelimitauth):
        for name in ("max_connections", "interval", "limit_network"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, getattr(module, name))
        module.init_filter()
    assert (ratelimit.max_connections, ratelimit.interval, ratelimit.limit_network) == (7, 5, True)
    assert (ratelimitauth.max_connections, ratelimitauth.interval) == (8, 120)
    assert "Initialized the ratelimitauth python filter" in capsys.readouterr().err


def test_mail_without_a_client_ip_or_auth_user_is_not_counted(tmp_path, pool_state,
                                                             monkeypatch):
    monkeypatch.setattr(ratelimit, "max_connections", 0)
    local = tmp_path / "Clocal"
    local.write_text("slocal@example.com\nrx@example.com\nR\nN\nulocal\n")
    assert ratelimit.do_filter("", [str(local)]) == ""
    assert ratelimitauth.do_filter("", [str(local)]) == ""


def test_the_chain_prefers_mtapy_s_rate_limits_over_upstream_s(tmp_path, monkeypatch,
                                                               clean_imports):
    monkeypatch.syspath_prepend(str(fake_upstream(tmp_path / "site", {})))
    for line in ("ratelimit", "pythonfilter.ratelimit", "ratelimitauth"):
        Chain([(line, set())])  # upstream's would raise ImportError
