"""mtapy.filter_chain - courier-pythonfilter's chain of filter modules, for a Courier pool.

DESCRIPTION  A chain is the modules named in a pythonfilter.conf ("module [for a b c]" per
             line; "#" comments), in order. Each module's init_filter()/initFilter() runs
             once per worker, when the chain is built. run(body_path, control_paths) calls
             each do_filter()/doFilter() in turn and returns the reply for Courier:
               ''              the next filter runs; after the last one: '200 Ok'
               '200 ...'       accepted: the chain stops (Courier's other filters still run)
               '000 ...'       accepted: the chain stops, and Courier's other filters too
               '4xx ...' / '5xx ...' (multi-line allowed)   rejected, as given
             A module with a "for" list whose reply starts with "2" does not stop the chain:
             it skips the listed modules instead (a whitelist in front of the checks).
             A filter that raises or returns something other than a str is logged with its
             traceback and, as upstream does, counts as '' (on_exception = "continue"); with
             on_exception = "tempfail" the message is refused with a 4xx instead.
STATEFUL     Upstream's modules that keep state per process are replaced by mtapy's, which
             keep it in the pool's shared state: a line "ratelimit" / "ratelimitauth" (also
             spelled "pythonfilter.ratelimit") runs courier.filters.ratelimit(auth), and
             before any filter is imported, the names upstream's filters import ttldb by
             ("from . import ttldb" in package pythonfilter, "import ttldb", the older
             "import TtlDb") all lead to courier.ttldb. Upstream's other filters import from
             its pythonfilter package as before.
SEE ALSO     courier/ (the API filters use), README.md "Courier"
"""

import importlib
import sys
import traceback
import types
from types import ModuleType
from typing import Callable, Iterable, List, Optional, Sequence, Set, Tuple

Entry = Tuple[str, Set[str]]  # a module's name and the names its "for" list bypasses

TEMPFAIL = "451 4.3.0 a mail filter failed; please try again later"

# Upstream's filters that count in a module-level dict: one count per worker, were they run.
REPLACED_FILTERS = {"ratelimit": "courier.filters.ratelimit",
                    "ratelimitauth": "courier.filters.ratelimitauth"}


def read_conf(path: str) -> List[Entry]:
    """The entries of a pythonfilter.conf: [(module, {bypassed, ...}), ...]."""
    with open(path) as conf:
        return parse(conf, path)


def parse(lines: Iterable[str], source: str) -> List[Entry]:
    """pythonfilter.conf lines as entries; `source` names them in errors."""
    entries = []
    for number, line in enumerate(lines, 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if len(words) > 1 and words[1] != "for":
            raise ValueError(f"{source}:{number}: expected \"module\" or "
                             f"\"module for other-module ...\", not {line.strip()!r}")
        entries.append((words[0], set(words[2:])))
    return entries


class Chain:
    def __init__(self, entries: Sequence[Entry], on_exception: str = "continue",
                 log: Callable[[str], None] = lambda text: print(text, file=sys.stderr)):
        if on_exception not in ("continue", "tempfail"):
            raise ValueError('on_exception must be "continue" or "tempfail"')
        self._on_exception = on_exception
        self._log = log
        self._steps = []  # (name, bypasses, do_filter)
        _use_mtapy_ttldb()
        for name, bypasses in entries:
            self._add(name, bypasses, _import(name))

    @classmethod
    def of_module(cls, name: str, module: ModuleType, **options) -> "Chain":
        """A chain of one module already imported (a policy file with its own do_filter)."""
        chain = cls([], **options)
        chain._add(name, set(), module)
        return chain

    def _add(self, name: str, bypasses: Set[str], module: ModuleType) -> None:
        for init in ("initFilter", "init_filter"):
            if callable(getattr(module, init, None)):
                getattr(module, init)()
        found = [getattr(module, f) for f in ("doFilter", "do_filter")
                 if callable(getattr(module, f, None))]
        if not found:
            raise ImportError(f"filter {name} has no do_filter(body_path, control_paths)")
        self._steps.extend((name, bypasses, f) for f in found)

    def run(self, body_path: str, control_paths: List[str]) -> str:
        skipped: Set[str] = set()
        for name, bypasses, do_filter in self._steps:
            if name in skipped:
                continue
            reply = self._call(name, do_filter, body_path, control_paths)
            if reply is None or reply == "":
                continue
            if bypasses and reply.startswith("2"):
                skipped |= bypasses
                continue
            if not reply.startswith(("2", "0")):
                self._log(f"filter {name} refused the message: {reply.splitlines()[0]}")
            return reply
        return "200 Ok"

    def _call(self, name, do_filter, body_path, control_paths) -> Optional[str]:
        try:
            reply = do_filter(body_path, control_paths)
        except Exception:  # a filter's bug must not lose the message; see on_exception
            self._log(f"filter {name} raised:\n{traceback.format_exc().rstrip()}")
            return TEMPFAIL if self._on_exception == "tempfail" else None
        if not isinstance(reply, str):
            self._log(f"filter {name} returned {type(reply).__name__}, not a str: {reply!r}")
            return TEMPFAIL if self._on_exception == "tempfail" else None
        return reply


def _use_mtapy_ttldb() -> None:
    """Make every import of upstream's ttldb give courier.ttldb.

    Upstream's dbm-backed ttldb cannot be shared: a second worker fails to open the file.
    sys.modules entries win over every finder, so this holds even with upstream's package
    installed. Without it, a bare pythonfilter package (no folders: nothing else in it) lets
    filters written for upstream still say "from pythonfilter import ttldb".
    """
    from courier import ttldb

    try:
        package = importlib.import_module("pythonfilter")
    except ModuleNotFoundError as missing:
        if missing.name != "pythonfilter":
            raise
        package = sys.modules["pythonfilter"] = types.ModuleType("pythonfilter")
        package.__path__ = []
    for name in ("ttldb", "TtlDb"):
        sys.modules[name] = sys.modules["pythonfilter." + name] = ttldb
        setattr(package, name, ttldb)  # "import pythonfilter.ttldb" reads the attribute


def _import(name: str):
    """A filter module by name; courier-pythonfilter's "pythonfilter." prefix also works."""
    short = name[len("pythonfilter."):] if name.startswith("pythonfilter.") else name
    if short in REPLACED_FILTERS:
        return importlib.import_module(REPLACED_FILTERS[short])
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as missing:
        if missing.name != name or name.startswith("pythonfilter."):
            raise
        return importlib.import_module("pythonfilter." + name)
    if name.startswith("pythonfilter.") or _is_filter(module):
        return module
    try:  # a module of that name on the path that is no filter (upstream looks only here)
        return importlib.import_module("pythonfilter." + name)
    except ModuleNotFoundError:
        return module  # the chain says it has no do_filter


def _is_filter(module: ModuleType) -> bool:
    return any(callable(getattr(module, f, None)) for f in ("doFilter", "do_filter"))
