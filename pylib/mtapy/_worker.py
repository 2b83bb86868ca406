"""mtapy._worker - the Python half of a worker process: load the policy, run each call.

DESCRIPTION  workerd/worker/python-host.c++ imports this module after the worker has dropped
             its privileges, calls boot() once, then one function per request. Results come
             back as plain tuples so the C++ side stays small; all return-value rules live here.
CONTRACT     README.md, "Exim expansions" (the return-value table), pinned by
             pylib/tests/test_expand_rules.py.
"""

import os
import sys

from mtapy import passed_files
from mtapy.policy_file import identity, import_policy, show_snapshot_in_tracebacks, take_snapshot
from mtapy.result_codes import EXPAND_FAILURE as FAILURE
from mtapy.result_codes import EXPAND_FORCED_FAIL as FORCED_FAIL
from mtapy.result_codes import EXPAND_VALUE as VALUE

_policy = None
_chain = None  # the pool's Courier filters (filter_chain.Chain), when it serves Courier


def boot(path, module_name, code_fd, take):
    """Load this worker's generation of the policy, self-test it; return its identity.

    The first worker of a generation (`take`) snapshots the policy's files into the
    generation's code descriptor, which the daemon then seals; the others import from it.
    Returns (sha256 of the policy file, its mtime in ns, number of files).
    """
    global _policy
    if take:
        snapshot = take_snapshot(path)
        os.ftruncate(code_fd, 0)  # an earlier first worker may have failed halfway
        view, done = memoryview(snapshot), 0
        while done < len(snapshot):
            done += os.pwrite(code_fd, view[done:], done)
    else:
        snapshot = os.pread(code_fd, os.fstat(code_fd).st_size, 0)
    os.close(code_fd)
    passed_files.install()  # before any filter module can bind open() to a name of its own
    _policy = import_policy(path, module_name, snapshot)
    _load_filters()
    _route_logging(path)
    _self_test()
    return identity(snapshot)


def _load_filters():
    """Build the pool's Courier chain: its filters (workerd.toml), else the policy's do_filter.

    Each filter's init_filter() runs here, once per worker; a filter that fails to import
    fails the worker's start, as it stops courier-pythonfilter.
    """
    global _chain
    from mtapy import filter_chain

    options = {"on_exception": os.environ.get("MTAPY_ON_EXCEPTION") or "continue"}
    conf, lines = os.environ.get("MTAPY_PYTHONFILTER_CONF"), os.environ.get("MTAPY_FILTERS")
    if conf:
        _chain = filter_chain.Chain(filter_chain.read_conf(conf), **options)
    elif lines:
        _chain = filter_chain.Chain(filter_chain.parse(lines.splitlines(), "filters"), **options)
    elif any(callable(getattr(_policy, f, None)) for f in ("do_filter", "doFilter")):
        _chain = filter_chain.Chain.of_module(_policy.__name__, _policy, **options)


def _self_test():
    """Run the policy's optional self_test(): raising or returning False fails the worker."""
    test = getattr(_policy, "self_test", None)
    if test is None:
        return
    if not callable(test):
        raise TypeError("self_test in the policy is not a function")
    if test() is False:
        raise AssertionError("self_test() returned False")


def _route_logging(path):
    """Send a policy's log lines (e.g. the "elspy" logger) to mtapy-workerd's log.

    Only when the policy uses logging at all: importing it costs an idle worker ~1.7 MB.
    A policy that configured logging itself keeps its configuration.
    """
    if "logging" not in sys.modules:
        return
    import logging

    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format=f"mtapy-worker[{os.getpid()}] {os.path.basename(path)}: %(name)s: %(message)s",
    )


def _resolve(name):
    """Find `name` in the policy; dots resolve through attributes ("limits.check").

    "mtapy.MODULE.FUNCTION" is mtapy's own (mtapyctl's; the worker lets only root call it).
    Otherwise a dot never leads into a module the policy imported, nor to a private name:
    an MTA may call what the policy defines or exports (over = ratelimit.over), not
    everything it can reach (ratelimit.reset, os.system).
    """
    found = _policy
    if name.startswith("mtapy."):
        import importlib

        module, _, name = name.rpartition(".")
        found = importlib.import_module(module)
    for part in name.split("."):
        try:
            if part.startswith("_"):
                raise AttributeError(part)
            found = getattr(found, part)
        except AttributeError:
            raise LookupError(f"the policy {_policy.__file__} has no {name!r}") from None
        if isinstance(found, type(sys)):
            raise LookupError(f"{name!r} leads into the module {found.__name__}; export the "
                              f"function from the policy instead (fn = module.fn)")
    if not callable(found):
        raise TypeError(f"{name!r} in the policy is not callable")
    return found


def to_exim(result):
    """Map a policy's return value to (VALUE, bytes) or (FORCED_FAIL, b"")."""
    if result is None:
        return FORCED_FAIL, b""
    if result is True or result is False:
        return VALUE, b"true" if result else b"false"
    if isinstance(result, (bytes, bytearray, memoryview)):
        return VALUE, bytes(result)
    if not isinstance(result, str):
        result = str(result)
    return VALUE, result.encode("utf-8", "surrogateescape")


def _failure():
    """The pending exception as (FAILURE, message, traceback without this module's frame)."""
    import traceback  # only on the error path: it costs an idle worker ~1 MB

    show_snapshot_in_tracebacks()
    kind, value, tb = sys.exc_info()
    message = f"{kind.__name__}: {value}" if str(value) else kind.__name__
    lines = traceback.format_exception(kind, value, tb.tb_next or tb)
    return FAILURE, message.encode("utf-8", "replace"), "".join(lines)


def expand(function, args):
    """Run one expansion: bytes in, (code, bytes, traceback) out; never raises."""
    try:
        fn = _resolve(function.decode("utf-8", "surrogateescape"))
        result = fn(*(a.decode("utf-8", "surrogateescape") for a in args))
        code, value = to_exim(result)
        return code, value, ""
    except BaseException:  # even sys.exit() in a policy is its failure, not the worker's end
        return _failure()


def local_scan(info, headers, fd, body_offset):
    """Run the policy's elspy-style local_scan; (verdict, message, changes..., traceback)."""
    from mtapy import local_scan as elspy_api

    # The policy gets its own descriptor: elspy-era code often closes it (os.fdopen(fd).read()).
    own = os.dup(fd)
    opened = os.fstat(own)
    try:
        os.lseek(own, body_offset, os.SEEK_SET)
        return elspy_api.run(_policy, info, headers, own)
    finally:
        _close_if_still(own, opened)


def _close_if_still(fd, opened):
    """Close fd unless the policy closed it already (its number may now be another file)."""
    try:
        now = os.fstat(fd)
    except OSError:
        return
    if (now.st_dev, now.st_ino) == (opened.st_dev, opened.st_ino):
        os.close(fd)


def do_filter(body_path, control_paths, fds):
    """Run the pool's Courier filters on one message: (code, reply bytes, traceback).

    fds are the data file's and each control file's descriptors, in that order; while the
    chain runs, open() of those paths uses them (mtapy/passed_files.py).
    """
    try:
        if _chain is None:
            raise LookupError(f"this pool serves no Courier filter: give it filters = [...] or "
                              f"pythonfilter_conf in workerd.toml, or define do_filter() in "
                              f"{_policy.__file__}")
        with passed_files.serving([body_path, *control_paths], fds):
            reply = _chain.run(body_path, control_paths)
        return VALUE, reply.encode("utf-8", "surrogateescape"), ""
    except BaseException:
        return _failure()
