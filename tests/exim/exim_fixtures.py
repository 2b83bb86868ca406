"""exim_fixtures - pytest fixtures: one mtapy-workerd and private Exim daemons for tests/exim.

DESCRIPTION  Test modules load this with `pytest_plugins = ["exim_fixtures"]`, so every module
             shares one instance of each session fixture (a conftest.py here would shadow
             tests/conftest.py, which other test modules import as `conftest`).
             mtapy_exim: one daemon with two pools that Exim (Debian-exim) and root may call -
               acl (exim_test_policy.py) and geo (deploy/policies/geoip.py) - so every caller
               must name its pool - and the ${readsocket} listener.
             exim_dlfunc / exim_readsocket / exim (both, parametrized): started Exim daemons whose
               ACLs ask the acl pool through ${dlfunc} or ${readsocket}.
             A test that stops or breaks a daemon must build its own with fresh_exim.
"""

import itertools

import pytest

from exim_harness import Mtapy, build_exim, start_mtapy


@pytest.fixture(scope="session")
def mtapy_exim(stage):
    mtapy = start_mtapy(stage, "exim-mtapy")
    yield mtapy
    mtapy.daemon.stop()


@pytest.fixture(scope="session")
def exim_daemons(stage, mtapy_exim):
    """Started Exims by mode, built on first use and stopped at the end of the session."""
    started = {}

    def get(mode):
        if mode not in started:
            started[mode] = build_exim(stage, mtapy_exim, f"exim-{mode}", mode).start()
        return started[mode]

    yield get
    for exim in started.values():
        exim.stop()
    for exim in started.values():  # e.g. "exim user lost privilege", "failed to expand"
        assert exim.paniclog() == "", f"{exim.mode}: {exim.paniclog()}"


@pytest.fixture
def exim_dlfunc(exim_daemons):
    return exim_daemons("dlfunc")


@pytest.fixture
def exim_readsocket(exim_daemons):
    return exim_daemons("readsocket")


@pytest.fixture(params=["dlfunc", "readsocket"])
def exim(request, exim_daemons):
    """The same Exim ACLs through ${dlfunc} and through ${readsocket}."""
    return exim_daemons(request.param)


fresh_names = itertools.count(1)


@pytest.fixture
def fresh_exim(stage):
    """Factory: fresh_exim(mode) -> (Mtapy, started Exim) of this test alone, stopped after it."""
    made = []

    def make(mode):
        name = f"fresh-{next(fresh_names)}"
        mtapy = start_mtapy(stage, f"{name}-mtapy")
        made.append(mtapy)
        exim = build_exim(stage, mtapy, f"{name}-exim", mode).start()
        made.append(exim)
        return mtapy, exim

    yield make
    for thing in reversed(made):
        if isinstance(thing, Mtapy):
            thing.daemon.stop()
        else:
            thing.stop()
