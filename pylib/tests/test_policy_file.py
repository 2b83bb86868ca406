"""mtapy.policy_file: a policy imports the same way in a worker and in mtapy.testing, and a
worker runs its generation's snapshot of the code, whatever happened to the files since."""

import os
import sys

import pytest

from mtapy import _worker, testing
from mtapy.policy_file import import_policy


@pytest.fixture
def policy_dir(monkeypatch, tmp_path):
    """A folder holding a policy (not named .py) and a helper module it imports."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    monkeypatch.delitem(sys.modules, "__exim__", raising=False)
    monkeypatch.delitem(sys.modules, "policy_helper", raising=False)
    (tmp_path / "policy_helper.py").write_text("ANSWER = 42\n")
    (tmp_path / "policy.conf").write_text(
        "import sys\n"
        "import policy_helper\n"
        "NAME = __name__\n"
        "REGISTERED = sys.modules[__name__]\n"
        "def local_scan(info, headers, fd): pass\n"
    )
    yield tmp_path
    sys.modules.pop("__exim__", None)
    sys.modules.pop("policy_helper", None)


def test_a_policy_runs_as___exim___with_its_folder_first_on_sys_path(policy_dir):
    module = import_policy(policy_dir / "policy.conf")
    assert module.NAME == "__exim__" and module.REGISTERED is module
    assert sys.modules["__exim__"] is module and module.policy_helper.ANSWER == 42
    assert sys.path[0] == str(policy_dir)


def boot_worker(path, module_name="__exim__", code=None):
    """Boot as a worker does: the first of a generation takes the snapshot into `code`."""
    take = code is None
    code = os.memfd_create("code") if take else os.dup(code)
    return _worker.boot(str(path), module_name, code, take)


def test_a_worker_names_the_module_as_its_pool_says(policy_dir):
    boot_worker(policy_dir / "policy.conf", "__courier__")
    assert _worker._policy.NAME == "__courier__" and sys.modules["__courier__"] is _worker._policy
    sys.modules.pop("__courier__")


def test_loading_a_policy_again_keeps_one_copy_of_its_folder_on_sys_path(policy_dir):
    first = testing.load_policy(str(policy_dir / "policy.conf"))
    second = testing.load_policy(policy_dir / "policy.conf")
    assert first is not second and second.NAME == "__exim__"
    assert sys.path.count(str(policy_dir)) == 1


def test_a_later_worker_of_a_generation_runs_its_snapshot_not_the_edited_files(policy_dir):
    code = os.memfd_create("code")
    first = _worker.boot(str(policy_dir / "policy.conf"), "__exim__", os.dup(code), True)
    (policy_dir / "policy_helper.py").write_text("ANSWER = 43\n")
    (policy_dir / "policy.conf").write_text("import policy_helper\nNAME = 'edited'\n")
    for name in ("__exim__", "policy_helper"):
        sys.modules.pop(name)
    again = boot_worker(policy_dir / "policy.conf", code=code)
    assert again == first and _worker._policy.NAME == "__exim__"
    assert _worker._policy.policy_helper.ANSWER == 42
    sha256, mtime_ns, files = first
    assert len(sha256) == 64 and mtime_ns > 0 and files == 2


def test_a_package_beside_the_policy_is_in_the_snapshot(policy_dir):
    (policy_dir / "rules").mkdir()
    (policy_dir / "rules" / "__init__.py").write_text("from .limits import LIMIT\n")
    (policy_dir / "rules" / "limits.py").write_text("LIMIT = 5\n")
    (policy_dir / "notes").mkdir()  # not a package: left out
    (policy_dir / "notes" / "scratch.py").write_text("raise SystemExit\n")
    (policy_dir / "policy.conf").write_text("from rules import LIMIT\n")
    code = os.memfd_create("code")
    assert boot_worker(policy_dir / "policy.conf", code=None)[2] == 4
    _worker.boot(str(policy_dir / "policy.conf"), "__exim__", os.dup(code), True)
    (policy_dir / "rules" / "limits.py").write_text("LIMIT = 6\n")
    for name in ("__exim__", "rules", "rules.limits"):
        sys.modules.pop(name, None)
    boot_worker(policy_dir / "policy.conf", code=code)
    assert _worker._policy.LIMIT == 5
    for name in ("rules", "rules.limits"):
        sys.modules.pop(name, None)


@pytest.mark.parametrize("body, error", [
    ("def self_test(): return False\n", "self_test() returned False"),
    ("def self_test(): raise ValueError('wrong answer')\n", "wrong answer"),
    ("self_test = 3\n", "not a function"),
])
def test_a_failing_self_test_fails_the_worker(policy_dir, body, error):
    (policy_dir / "policy.conf").write_text(body)
    with pytest.raises(Exception, match=error.replace("(", r"\(").replace(")", r"\)")):
        boot_worker(policy_dir / "policy.conf")


def test_a_passing_self_test_may_return_none_or_true(policy_dir):
    (policy_dir / "policy.conf").write_text(
        "CALLS = []\n"
        "def self_test():\n"
        "    CALLS.append(1)\n"
        "    assert 1 + 1 == 2\n")
    boot_worker(policy_dir / "policy.conf")
    assert _worker._policy.CALLS == [1]


def test_a_module_beside_the_policy_does_not_replace_a_built_in_one(policy_dir):
    (policy_dir / "pwd.py").write_text("SHADOW = True\n")
    (policy_dir / "policy.conf").write_text("import pwd\nSHADOWED = hasattr(pwd, 'SHADOW')\n")
    sys.modules.pop("pwd", None)
    boot_worker(policy_dir / "policy.conf")
    assert _worker._policy.SHADOWED is False


def test_a_traceback_quotes_the_snapshot_not_the_file_as_edited_since(policy_dir):
    (policy_dir / "policy.conf").write_text("def boom():\n    raise ValueError('from the snapshot')\n")
    boot_worker(policy_dir / "policy.conf")
    (policy_dir / "policy.conf").write_text("# edited\n# since\n")
    code, message, traceback = _worker.expand(b"boom", [])
    assert "raise ValueError('from the snapshot')" in traceback, traceback


def test_the_code_identity_changes_with_a_module_beside_the_policy(policy_dir):
    first = boot_worker(policy_dir / "policy.conf")
    (policy_dir / "policy_helper.py").write_text("ANSWER = 43\n")
    for name in ("__exim__", "policy_helper"):
        sys.modules.pop(name)
    assert boot_worker(policy_dir / "policy.conf")[0] != first[0]
