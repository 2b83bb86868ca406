"""mtapy.filter_chain: courier-pythonfilter's chain rules, with filters written as for it."""

import sys
import textwrap

import pytest

from mtapy.filter_chain import TEMPFAIL, Chain, read_conf

CALLS = []


@pytest.fixture
def filters(tmp_path, monkeypatch):
    """Filter modules in a folder on sys.path; each records its call in CALLS."""
    monkeypatch.syspath_prepend(str(tmp_path))
    CALLS.clear()
    made = []

    def make(name, body):
        init = "def init_filter():\n    sys.stderr.write(%r)\n" % f"Initialized the {name} filter\n"
        (tmp_path / f"{name}.py").write_text(
            "import sys\nfrom test_filter_chain import CALLS\n" + init +
            "def do_filter(body_path, control_paths):\n"
            f"    CALLS.append({name!r})\n    {body}\n")
        made.append(name)
    yield make
    for name in made:
        sys.modules.pop(name, None)


def conf(tmp_path, text):
    path = tmp_path / "pythonfilter.conf"
    path.write_text(text)
    return read_conf(str(path))


def test_filters_run_in_order_and_all_empty_replies_accept(filters, tmp_path, capsys):
    for name in ("first", "second", "third"):
        filters(name, "return ''")
    chain = Chain(conf(tmp_path, "# the chain\nfirst\n\nsecond\nthird\n"))
    assert "Initialized the first filter" in capsys.readouterr().err  # once, at build
    assert chain.run("/body", ["/ctl"]) == "200 Ok"
    assert CALLS == ["first", "second", "third"]


@pytest.mark.parametrize("reply, ran", [
    ("200 Ok, whitelisted", ["first", "second"]),
    ("000 accepted, no more filters", ["first", "second"]),
    ("451 4.7.1 greylisted, try later", ["first", "second"]),
    ("550-5.7.1 not here\n550 5.7.1 really not", ["first", "second"]),
])
def test_a_non_empty_reply_stops_the_chain_and_is_courier_s_answer(filters, tmp_path, reply,
                                                                    ran):
    filters("first", "return ''")
    filters("second", f"return {reply!r}")
    filters("third", "return ''")
    chain = Chain(conf(tmp_path, "first\nsecond\nthird\n"))
    assert chain.run("/body", ["/ctl"]) == reply
    assert CALLS == ran


def test_a_for_list_skips_the_named_filters_when_it_accepts(filters, tmp_path):
    filters("whitelist", "return '200 Ok'")
    filters("spamcheck", "return '550 spam'")
    filters("logger", "return ''")
    chain = Chain(conf(tmp_path, "whitelist for spamcheck\nspamcheck\nlogger\n"))
    assert chain.run("/body", ["/ctl"]) == "200 Ok" and CALLS == ["whitelist", "logger"]


@pytest.mark.parametrize("body", ["raise RuntimeError('filter bug')", "return 42"])
def test_a_broken_filter_counts_as_empty_or_tempfails_as_configured(filters, tmp_path, body):
    filters("broken", body)
    filters("after", "return ''")
    logged = []
    entries = conf(tmp_path, "broken\nafter\n")
    assert Chain(entries, log=logged.append).run("/b", ["/c"]) == "200 Ok"
    assert CALLS == ["broken", "after"] and ("filter bug" in logged[0] or "int" in logged[0])
    CALLS.clear()
    assert Chain(entries, on_exception="tempfail", log=logged.append).run("/b", ["/c"]) == TEMPFAIL
    assert CALLS == ["broken"]


def test_a_malformed_conf_line_names_its_line(tmp_path):
    with pytest.raises(ValueError, match=r"pythonfilter.conf:2:"):
        conf(tmp_path, "first\nsecond against third\n")


def test_a_module_on_the_path_that_is_no_filter_leaves_the_name_to_upstream_s(
        tmp_path, monkeypatch, clean_imports):
    # Upstream imports a conf line's name from its pythonfilter package only; a module of that
    # name elsewhere on the path (here an unrelated debug.py) must not hide it.
    site = tmp_path / "site"
    (site / "pythonfilter").mkdir(parents=True)
    (site / "pythonfilter" / "__init__.py").write_text("")
    (site / "pythonfilter" / "debug.py").write_text(
        "def do_filter(body_path, control_paths):\n    return '250 upstream debug'\n")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "debug.py").write_text("LEVEL = 3\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(tmp_path / "elsewhere"))
    monkeypatch.delitem(sys.modules, "debug", raising=False)
    assert Chain([("debug", set())]).run("/body", ["/ctl"]) == "250 upstream debug"
