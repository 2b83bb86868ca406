"""Play Courier around mtapy-courierfilter: courierfilter's start and stop, submit's requests.

Real Courier runs in tests/courier/test_courier_*.py; this plays it exactly (courierfilter(8):
a pipe on stdin that ends at stop, fd 3 closed when ready; submit: one connection per message,
"data path\\ncontrol path...\\n\\n", a reply read until the filter closes) so that the filter's
failure cases can be driven fast and precisely, against a spool folder of the test's own.
"""

import os
import pathlib
import resource
import socket
import subprocess
import time


class FilterProgram:
    """mtapy-courierfilter started as courierfilter starts it, with a private Courier tree."""

    def __init__(self, program, root: pathlib.Path, shim_conf, name="mtapy", max_files=None,
                 fd3=True):
        self.root = root
        self.spool = root / "var"  # Courier's localstatedir
        self.etc = root / "etc"  # Courier's sysconfdir
        for folder in (self.spool / "allfilters", self.spool / "filters", self.spool / "tmp",
                       self.etc / "filters"):
            folder.mkdir(parents=True, exist_ok=True)
        self.socket = self.spool / "allfilters" / name
        stdin_read, self._stdin = os.pipe()
        ready_read, ready_write = os.pipe()
        env = {"PATH": "/usr/bin:/bin", "localstatedir": str(self.spool),
               "sysconfdir": str(self.etc), "MTAPY_SHIM_CONF": str(shim_conf)}
        self.log = root / f"{name}.log"
        def ready_pipe_on_fd3():
            # As courierfilter arranges it. Python's own descriptors are close-on-exec, so
            # close_fds=False passes nothing else (and close_fds would close fd 3 after us).
            if not fd3:  # started by hand: no fd 3 (Python's own are all close-on-exec)
                os.set_inheritable(ready_write, False)
            elif ready_write != 3:
                os.dup2(ready_write, 3)
                os.close(ready_write)
            if max_files:  # a filter that runs out of descriptors
                resource.setrlimit(resource.RLIMIT_NOFILE, (max_files, max_files))

        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [name], executable=str(program), stdin=stdin_read, stdout=log, stderr=log,
                env=env, close_fds=False, preexec_fn=ready_pipe_on_fd3)
        os.close(stdin_read)
        os.close(ready_write)
        self.started = time.monotonic()
        if fd3:
            os.read(ready_read, 1)  # EOF once the filter closed fd 3 (or died)
        else:
            while not self.socket.exists() and self.process.poll() is None:
                time.sleep(0.01)
        self.ready_after = time.monotonic() - self.started
        os.close(ready_read)

    def stop(self, timeout=30):
        """Close stdin, as `courierfilter stop` does; the exit status."""
        if self._stdin is not None:
            os.close(self._stdin)
            self._stdin = None
        return self.process.wait(timeout)

    def output(self):
        return self.log.read_text(errors="replace")

    def message(self, body: bytes, control: bytes = b"", name="msg"):
        """Write a data file and a control file the way submit does; their paths."""
        folder = self.spool / "tmp" / "1795"
        folder.mkdir(exist_ok=True)
        data = folder / f"D{name}"
        ctl = folder / f"C{name}"
        data.write_bytes(body)
        ctl.write_bytes(control or default_control())
        return data, ctl

    def submit(self, data, *controls, timeout=60):
        """One message through the filter, as submit sends it; the reply (str), '' if none."""
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(timeout)
            conn.connect(str(self.socket))
            conn.sendall(b"".join(str(p).encode() + b"\n" for p in (data, *controls)) + b"\n")
            reply = b""
            while chunk := conn.recv(65536):
                reply += chunk
            return reply.decode("utf-8", "replace")


def default_control(sender="sender@example.net", recipients=("someone@example.com",),
                    extra=b""):
    """A control file as Courier 1.0.16 writes it for a plain SMTP message."""
    lines = [b"s" + sender.encode(), b"fdns; client.example.net (softdnserr [::ffff:127.0.0.1])",
             b"e", b"t", b"M000000000000017C.000000006B01885B.000000C8"]
    for r in recipients:
        lines += [b"r" + r.encode(), b"R", b"N"]
    lines += [b"ORELAYCLIENT=", b"OTCPREMOTEIP=::ffff:127.0.0.1", b"uauthsmtp"]
    return b"\n".join(lines) + b"\n" + extra


def message(subject="hello", body="Hello there\n", extra_headers=""):
    return (f"From: sender@example.net\nTo: someone@example.com\nSubject: {subject}\n"
            f"{extra_headers}Message-ID: <1@example.net>\n\n{body}").encode()
