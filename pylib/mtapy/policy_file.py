"""mtapy.policy_file - import a policy file as a module, the one way workers and tests do it.

DESCRIPTION  A policy is a plain Python file, not a module of a package. import_policy() runs it
             under the name its pool gives it (``__exim__`` in Exim pools), registered in
             sys.modules under that name, with the policy's own folder first on sys.path so it
             can import its helper modules. mtapy._worker.boot() and mtapy.testing.load_policy()
             both call it, so a policy imports in pytest exactly as it does in a worker.
             Every idle worker runs it: it imports only what a worker has imported anyway.

GENERATIONS  A worker does not read the policy from disk: the first worker of a generation
             takes a snapshot (take_snapshot(): the policy file and the Python sources beside
             it, in its folder and the packages there), and every worker of that generation
             imports from those bytes (import_policy(..., snapshot=)). So a worker that
             replaces a crashed or recycled one runs its generation's code even if the files
             were edited meanwhile; an edit takes effect only through a reload.
SEE ALSO     mtapy/_worker.py, mtapy/testing.py, README.md "Reloading policy"
"""

import marshal
import os
import sys
from types import ModuleType

# A policy folder is small; these bound what a mistake (policy in /usr/lib) would copy.
MAX_FILES = 2000
MAX_BYTES = 32 << 20


class SnapshotError(Exception):
    """The policy's folder cannot be snapshotted (too big, unreadable)."""


def take_snapshot(path: str) -> bytes:
    """Read the policy at `path` and the Python sources beside it into one blob."""
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    files = {path: _read(path)}
    mtime_ns = os.stat(path).st_mtime_ns
    total = len(files[path])
    for where, subfolders, names in os.walk(folder):
        # Only packages are importable below the top: prune the rest (and __pycache__).
        subfolders[:] = sorted(d for d in subfolders
                               if os.path.isfile(os.path.join(where, d, "__init__.py")))
        for name in sorted(names):
            source = os.path.join(where, name)
            if not name.endswith(".py") or source in files:
                continue
            try:
                files[source] = _read(source)
            except OSError:
                continue  # unreadable to the pool's user: not importable by it either
            total += len(files[source])
            if len(files) > MAX_FILES or total > MAX_BYTES:
                raise SnapshotError(
                    f"{folder} holds more than {MAX_FILES} Python files or {MAX_BYTES >> 20} MB;"
                    " give the policy a folder of its own")
    return marshal.dumps((path, mtime_ns, files))


def identity(snapshot: bytes) -> "tuple[str, int, int]":
    """(sha256 hex of every file's name and bytes, the policy's mtime in ns, number of files).

    A change of a module beside the policy changes it too, so status tells generations apart.
    """
    import _sha256  # built in: hashlib would load OpenSSL into every worker

    path, mtime_ns, files = marshal.loads(snapshot)
    digest = _sha256.sha256()
    for name in sorted(files):
        digest.update(name.encode("utf-8", "surrogateescape") + b"\0")
        digest.update(len(files[name]).to_bytes(8, "little") + files[name])
    return digest.hexdigest(), mtime_ns, len(files)


def show_snapshot_in_tracebacks() -> None:
    """Let tracebacks quote the snapshot's lines, not the files as edited since."""
    import linecache  # only on the error path: it imports tokenize

    for path, source in _sources.items():
        if path not in linecache.cache:
            lines = source.decode("utf-8", "replace").splitlines(True)
            linecache.cache[path] = (len(source), None, lines, path)  # no mtime: kept as is


_sources: "dict[str, bytes]" = {}  # of this worker's snapshot


def import_policy(path: "str | os.PathLike[str]", module_name: str = "__exim__",
                  snapshot: "bytes | None" = None) -> ModuleType:
    """Run the policy file at `path` as module `module_name` and return that module.

    With `snapshot` (from take_snapshot()), the policy and the modules beside it come from it.
    """
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    if snapshot is not None:
        path, _, files = marshal.loads(snapshot)
        folder = os.path.dirname(path)
        _sources.update(files)
        # Before the path finder, after the built-in and frozen ones: a pwd.py beside the
        # policy must not replace the standard pwd, as it does not outside a worker.
        from importlib.machinery import PathFinder

        finders = sys.meta_path
        at = finders.index(PathFinder) if PathFinder in finders else len(finders)
        finders.insert(at, _SnapshotFinder(folder, files))
    else:
        files = {path: _read(path)}
    if sys.path[:1] != [folder]:  # a test that loads the same policy again adds it once
        sys.path.insert(0, folder)  # still there: extension modules come from disk
    module = ModuleType(module_name)
    module.__file__ = path
    module.__loader__ = None
    sys.modules[module_name] = module
    exec(compile(files[path], path, "exec"), module.__dict__)
    return module


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


class _SnapshotFinder:
    """Imports the modules of a policy's folder from its generation's snapshot."""

    def __init__(self, folder, files):
        self._sources = {}  # module name -> (file, is a package)
        for source in files:
            parts = os.path.relpath(source, folder)[:-len(".py")].split(os.sep)
            if parts[0].startswith(".."):
                continue
            package = parts[-1] == "__init__"
            if package:
                parts.pop()
            if parts:
                self._sources[".".join(parts)] = (source, package)
        self._files = files

    def find_spec(self, name, path=None, target=None):
        found = self._sources.get(name)
        if found is None:
            return None
        import importlib.util

        source, package = found
        return importlib.util.spec_from_file_location(
            name, source, loader=self,
            submodule_search_locations=[os.path.dirname(source)] if package else None)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        source = module.__spec__.origin
        exec(compile(self._files[source], source, "exec"), module.__dict__)
