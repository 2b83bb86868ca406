"""mtapy.policy_file: a policy imports the same way in a worker and in mtapy.testing."""

import sys

import pytest

from mtapy import _worker, testing
from mtapy.policy_file import import_policy


@pytest.fixture
def policy_dir(monkeypatch, tmp_path):
    """A folder holding a policy (not named .py) and a helper module it imports."""
    monkeypatch.setattr(sys, "path", list(sys.path))
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


def test_a_worker_names_the_module_as_its_pool_says(policy_dir):
    _worker.boot(str(policy_dir / "policy.conf"), "__courier__")
    assert _worker._policy.NAME == "__courier__" and sys.modules["__courier__"] is _worker._policy
    sys.modules.pop("__courier__")


def test_loading_a_policy_again_keeps_one_copy_of_its_folder_on_sys_path(policy_dir):
    first = testing.load_policy(str(policy_dir / "policy.conf"))
    second = testing.load_policy(policy_dir / "policy.conf")
    assert first is not second and second.NAME == "__exim__"
    assert sys.path.count(str(policy_dir)) == 1
