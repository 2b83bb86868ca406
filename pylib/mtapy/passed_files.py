"""mtapy.passed_files - open() of one Courier message's files through the descriptors passed in.

DESCRIPTION  mtapy-courierfilter runs as Courier's user and opens the message's data file and
             control files; their descriptors come with the call. Filters written for
             courier-pythonfilter open those files by path themselves (open(body_path),
             open(control_path, "ab"), XFilter rewriting the body), but the pool's user cannot
             open anything in Courier's spool. So while serving() is active, open() of exactly
             those paths is answered from the passed descriptors; every other path opens as
             usual, with the pool user's own permissions, so a filter still cannot read any
             other message.
             Each open() gets a position of its own (reads and writes are pread/pwrite at it),
             as a fresh open() would, although all of them share one file description with
             mtapy-courierfilter; and a descriptor of its own (a dup), so a file object a
             filter keeps past its call never touches a later call's files.
             os.stat(), os.lstat() and os.access() of those paths (and so os.path.getsize(),
             exists(), isfile() and pathlib's stat()) answer for the passed descriptors too.
LIMITS       os.open() of a spool path, and a program the filter runs on one (a shell's
             `< path`), see the pool user's permissions: they fail.
SEE ALSO     mtapy/_worker.py (do_filter), shim/courier/ (the other end)
"""

import builtins
import fcntl
import io
import os
from typing import Dict, Iterable, Optional

_open, _stat, _lstat, _access = io.open, os.stat, os.lstat, os.access
# A message is read whole, or line by line: in big pieces, as each piece is a Python call.
_BUFFER_SIZE = 64 * 1024
_passed: Dict[str, int] = {}  # absolute path -> descriptor, during one call only


class _PassedFile(io.RawIOBase):
    """A raw file over a dup of a passed descriptor, at a position of its own."""

    def __init__(self, fd: int, name: str, mode: str):
        super().__init__()
        self._fd = os.dup(fd)
        self._position = 0
        self.name = name
        self.mode = mode
        self._reads = "r" in mode or "+" in mode
        self._writes = any(c in mode for c in "wax+")
        self._appends = "a" in mode

    def fileno(self) -> int:
        self._checkClosed()
        return self._fd

    def readable(self) -> bool:
        return self._reads

    def writable(self) -> bool:
        return self._writes

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if not self._reads:
            raise io.UnsupportedOperation("not readable")
        count = os.preadv(self._fd, [buffer], self._position)
        self._position += count
        return count

    def readall(self) -> bytes:
        """The rest of the file in one pread (read() and email's parsers come here)."""
        if not self._reads:
            raise io.UnsupportedOperation("not readable")
        chunks = []
        while chunk := os.pread(self._fd, max(os.fstat(self._fd).st_size - self._position,
                                              io.DEFAULT_BUFFER_SIZE), self._position):
            chunks.append(chunk)
            self._position += len(chunk)
        return b"".join(chunks)

    def write(self, data) -> int:
        if not self._writes:
            raise io.UnsupportedOperation("not writable")
        if self._appends:
            self._position = os.fstat(self._fd).st_size
        count = os.pwrite(self._fd, data, self._position)
        self._position += count
        return count

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_CUR:
            offset += self._position
        elif whence == os.SEEK_END:
            offset += os.fstat(self._fd).st_size
        if offset < 0:
            raise OSError(22, "negative seek position")
        self._position = offset
        return offset

    def tell(self) -> int:
        return self._position

    def truncate(self, size=None) -> int:
        size = self._position if size is None else size
        os.ftruncate(self._fd, size)
        return size

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


def _open_passed(fd: int, name: str, mode: str, buffering: int, encoding, errors, newline):
    if "x" in mode:
        raise FileExistsError(17, "File exists", name)
    raw = _PassedFile(fd, name, mode)
    if "w" in mode:
        raw.truncate(0)
    if buffering == 0:
        if "b" not in mode:
            raise ValueError("can't have unbuffered text I/O")
        return raw
    size = buffering if buffering > 1 else _BUFFER_SIZE
    if "+" in mode:
        buffered = io.BufferedRandom(raw, size)
    elif raw.readable():
        buffered = io.BufferedReader(raw, size)
    else:
        buffered = io.BufferedWriter(raw, size)
    if "b" in mode:
        return buffered
    text = io.TextIOWrapper(buffered, io.text_encoding(encoding), errors, newline,
                            line_buffering=buffering == 1)
    text.mode = mode
    return text


def _passed_fd(path) -> Optional[int]:
    """The descriptor passed for `path` in the call being served, if it is one of its paths."""
    if not _passed or not isinstance(path, (str, bytes, os.PathLike)):
        return None
    # The path as the filter was given it, else as the file system would resolve it.
    return _passed.get(path) or _passed.get(os.path.abspath(os.fsdecode(path)))


def open(file, mode="r", buffering=-1, encoding=None, errors=None, newline=None, closefd=True,
         opener=None):
    """io.open(), except for the paths of the call being served (see the module's docstring)."""
    fd = _passed_fd(file) if opener is None else None
    if fd is not None:
        return _open_passed(fd, os.fsdecode(file), mode, buffering, encoding, errors, newline)
    return _open(file, mode, buffering, encoding, errors, newline, closefd, opener)


def stat(path, *, dir_fd=None, follow_symlinks=True):
    """os.stat(); for the call's paths, its descriptor's (the file itself: no symlinks)."""
    fd = _passed_fd(path) if dir_fd is None else None
    if fd is not None:
        return os.fstat(fd)
    return _stat(path, dir_fd=dir_fd, follow_symlinks=follow_symlinks)


def lstat(path, *, dir_fd=None):
    """os.lstat(), as stat() above."""
    fd = _passed_fd(path) if dir_fd is None else None
    return os.fstat(fd) if fd is not None else _lstat(path, dir_fd=dir_fd)


def access(path, mode, *, dir_fd=None, effective_ids=False, follow_symlinks=True):
    """os.access(); for the call's paths, what its descriptor was opened for (never X_OK)."""
    fd = _passed_fd(path) if dir_fd is None else None
    if fd is None:
        return _access(path, mode, dir_fd=dir_fd, effective_ids=effective_ids,
                       follow_symlinks=follow_symlinks)
    granted = {os.O_RDONLY: os.R_OK, os.O_WRONLY: os.W_OK,
               os.O_RDWR: os.R_OK | os.W_OK}[fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE]
    return mode & ~granted == 0


class serving:
    """`with serving(paths, fds):` open() of each path uses its descriptor.

    The paths are mtapy-courierfilter's, absolute and normalized. A class, not a generator:
    this runs for every message, and costs a fifth as much.
    """

    __slots__ = ()

    def __init__(self, paths: Iterable[str], fds: Iterable[int]):
        _passed.update(zip(paths, fds))

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info) -> None:
        _passed.clear()


def install() -> None:
    """Route open() and os's stat family through this module (once per worker, before the
    policy is imported)."""
    builtins.open = io.open = open
    for original, wrapper in ((os.stat, stat), (os.lstat, lstat), (os.access, access)):
        # What os.supports_fd and the like say of the original holds for the wrapper: shutil
        # chooses its symlink-safe rmtree() by them.
        for supports in (os.supports_dir_fd, os.supports_fd, os.supports_follow_symlinks,
                         os.supports_effective_ids):
            if original in supports:
                supports.add(wrapper)
    os.stat, os.lstat, os.access = stat, lstat, access
