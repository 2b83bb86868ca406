"""The Exim-Python return-value and argument rules of mtapy._worker.expand()."""

import os
import sys

import pytest

from mtapy import _worker


@pytest.fixture
def policy(monkeypatch, tmp_path):
    path = tmp_path / "policy.py"
    path.write_text(
        "import decimal\n"
        "def echo(*args): return args[0] if args else ''\n"
        "def none(): return None\n"
        "def yes(): return True\n"
        "def no(): return False\n"
        "def raw(): return b'\\xff\\x00x'\n"
        "def number(): return 42\n"
        "def ratio(): return 0.5\n"
        "def obj(): return decimal.Decimal('1.10')\n"
        "def boom(): raise ValueError('bad thing')\n"
        "def count(*args): return len(args)\n"
        "def whoami(): return __name__\n"
        "class limits:\n"
        "    @staticmethod\n"
        "    def check(x): return 'checked ' + x\n"
        "not_callable = 3\n"
    )
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    _worker.boot(str(path), "__exim__", os.memfd_create("code"), True)
    yield
    sys.modules.pop("__exim__", None)


def call(fn, *args):
    return _worker.expand(fn.encode(), [a if isinstance(a, bytes) else a.encode() for a in args])


def test_str_true_false_none_bytes_numbers_and_objects_map_as_exim_python_did(policy):
    assert call("echo", "hi") == (_worker.VALUE, b"hi", "")
    assert call("yes") == (_worker.VALUE, b"true", "")
    assert call("no") == (_worker.VALUE, b"false", "")
    assert call("none") == (_worker.FORCED_FAIL, b"", "")
    assert call("raw") == (_worker.VALUE, b"\xff\x00x", "")
    assert call("number") == (_worker.VALUE, b"42", "")
    assert call("ratio") == (_worker.VALUE, b"0.5", "")
    assert call("obj") == (_worker.VALUE, b"1.10", "")


def test_8bit_and_empty_arguments_round_trip_byte_exact(policy):
    for raw in (b"\xff\xfe", "한국어".encode(), "한국어".encode("euc-kr"), b""):
        assert call("echo", raw) == (_worker.VALUE, raw, "")
    assert call("count", b"", b"") == (_worker.VALUE, b"2", "")


def test_the_policy_runs_as___exim___and_dotted_names_resolve(policy):
    assert call("whoami") == (_worker.VALUE, b"__exim__", "")
    assert call("limits.check", "x") == (_worker.VALUE, b"checked x", "")


def test_exceptions_and_bad_names_are_failures_with_message_and_traceback(policy):
    code, message, tb = call("boom")
    assert (code, message) == (_worker.FAILURE, b"ValueError: bad thing")
    assert "raise ValueError('bad thing')" in tb and "_worker.py" not in tb
    code, message, _ = call("missing")
    assert code == _worker.FAILURE and b"has no 'missing'" in message
    code, message, _ = call("not_callable")
    assert code == _worker.FAILURE and b"not callable" in message
    code, message, _ = call("limits.check")
    assert code == _worker.FAILURE and message.startswith(b"TypeError")


def test_a_dotted_name_never_leads_into_an_imported_module_or_a_private_name(policy):
    # The policy imports decimal: an MTA may not reach decimal's functions through it.
    code, message, _ = call("decimal.getcontext")
    assert code == _worker.FAILURE and b"leads into the module decimal" in message
    code, message, _ = call("limits.__init__")
    assert code == _worker.FAILURE and b"has no" in message
    assert call("limits.check", "x") == (_worker.VALUE, b"checked x", "")
