"""mtapy.policy_file - import a policy file as a module, the one way workers and tests do it.

DESCRIPTION  A policy is a plain Python file, not a module of a package. import_policy() runs it
             under the name its pool gives it (``__exim__`` in Exim pools), registered in
             sys.modules under that name, with the policy's own folder first on sys.path so it
             can import its helper modules. mtapy._worker.boot() and mtapy.testing.load_policy()
             both call it, so a policy imports in pytest exactly as it does in a worker.
             Every idle worker runs it: it imports only what a worker has imported anyway.
SEE ALSO     mtapy/_worker.py, mtapy/testing.py
"""

import importlib.machinery
import importlib.util
import os
import sys
from types import ModuleType


def import_policy(path: "str | os.PathLike[str]", module_name: str = "__exim__") -> ModuleType:
    """Run the policy file at `path` as module `module_name` and return that module."""
    path = os.path.abspath(os.fspath(path))
    # A loader of its own, so a policy file need not end in ".py".
    loader = importlib.machinery.SourceFileLoader(module_name, path)
    spec = importlib.util.spec_from_loader(module_name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    folder = os.path.dirname(path)
    if sys.path[:1] != [folder]:  # a test that loads the same policy again adds it once
        sys.path.insert(0, folder)
    sys.modules[module_name] = module
    loader.exec_module(module)
    return module
