"""courier_harness - a private, real Debian Courier 1.0.16 for end-to-end tests of courierfilters.

DESCRIPTION  Courier cannot be installed next to Exim, so stage-courier.sh unpacks Debian's
             .debs into a cached tree and Courier runs chrooted into an overlay of that tree
             over the host's / (courier_ns.py), inside a private mount + pid namespace. The
             network namespace is the host's: ESMTP listens on 127.0.0.1:<free port> and the
             test talks to it directly. courierd delivers mail for USERS@ME into
             /home/USER/Maildir in the chroot (authdaemond with authpam finds them in the
             chroot's /etc/passwd). Global filters go to /usr/lib/courier/filters/NAME and
             are activated as filterctl would. Host folders passed as `binds` are mounted at
             the same path inside, so a filter can reach a host daemon's sockets and binaries.
             Every process and mount is gone after close(): the namespace dies with its init.
IDS          In the chroot only: courier = COURIER_UID:COURIER_GID, USERS from USER_UID0 on.
             A filter runs as COURIER_UID, so that is the uid a host daemon sees through
             SO_PEERCRED; put it (numeric) in the pool's `clients`. The ids are chosen far
             from the ranges Debian allocates and are checked to be unused on the host.
SEE ALSO     README.md (what Courier needs and why), stage-courier.sh, courier_ns.py,
             test_courier_harness.py (a filter written from the protocol, and how to use this)
"""

import grp
import os
import pathlib
import pwd
import shutil
import smtplib
import socket
import subprocess
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
PYTHON = "/usr/bin/python3"
ME = "courier.mtapy.test"
USERS = ("alice", "bob", "carol")
COURIER_UID = COURIER_GID = 59990
USER_UID0 = 59991
LOCALSTATEDIR = "/var/lib/courier"
SOCKET_DIRS = {"all": LOCALSTATEDIR + "/allfilters", "filters": LOCALSTATEDIR + "/filters"}
# The environment of commands run in the chroot; Courier's own scripts start from `env -i`.
CHROOT_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root"}


class CourierUnavailable(Exception):
    """This machine cannot run the harness at all (not root, no unshare): tests skip."""


def stage(cache=None):
    """Run stage-courier.sh (downloads once, then a few ms); return the unpacked tree."""
    args = ["bash", str(HERE / "stage-courier.sh")] + ([str(cache)] if cache else [])
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"stage-courier.sh failed: {r.stderr.strip()}")
    return pathlib.Path(r.stdout.strip().splitlines()[-1])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port):
    """True while something listens on 127.0.0.1:PORT (read from /proc, no connection made)."""
    wanted = "0100007F:%04X" % port
    with open("/proc/net/tcp") as table:
        return any(
            line.split()[1] == wanted and line.split()[3] == "0A" for line in table.readlines()[1:]
        )


def wait_for(predicate, timeout=10, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def check_ids_unused(count):
    """The chroot's ids must mean nothing on the host, or SO_PEERCRED would name a host user."""
    for uid in [COURIER_UID] + [USER_UID0 + i for i in range(count)]:
        for lookup, kind in ((pwd.getpwuid, "uid"), (grp.getgrgid, "gid")):
            try:
                entry = lookup(uid)
            except KeyError:
                continue
            raise RuntimeError(
                f"{kind} {uid} belongs to {entry[0]} on this host; courier_harness.py gives it "
                f"to Courier's chroot. Change COURIER_UID/USER_UID0 there to free ids.")


class Sent:
    """The replies of one SMTP session: banner, mail, rcpt (a list) and data ((code, text)
    or None when no recipient was accepted). Multi-line texts are joined by \\n."""

    def __init__(self):
        self.banner = self.mail = self.data = None
        self.rcpt = []

    def __repr__(self):
        return f"Sent(mail={self.mail}, rcpt={self.rcpt}, data={self.data})"


class Courier:
    """Courier in its namespace: start(), then send() mail and look at maildirs and syslog."""

    def __init__(self, binds=(), users=USERS, me=ME, port=None, cache=None):
        if os.geteuid() != 0:
            raise CourierUnavailable("Courier runs in a mount namespace: run the tests as root")
        if not shutil.which("unshare") or not shutil.which("nsenter"):
            raise CourierUnavailable("unshare/nsenter (util-linux) are missing")
        check_ids_unused(len(users))
        self.binds = [os.path.abspath(b) for b in binds]
        self.users = tuple(users)
        self.me = me
        self.port = port or free_port()
        self.cache = cache
        self.base = self.controller = self.pid = self.root = None

    # --- the namespace --------------------------------------------------------------------

    def start(self):
        tree = stage(self.cache)
        self.base = pathlib.Path(tempfile.mkdtemp(prefix="mtapy-courier-"))
        (self.base / "ns").mkdir()
        self.syslog_path = self.base / "syslog.txt"
        self.syslog_path.touch()
        try:
            self._start_namespace(tree)
            self._configure()
            self._start_daemons()
        except BaseException:
            self.close()
            raise
        return self

    def _start_namespace(self, tree):
        # start_new_session: a ^C in the test's terminal reaches pytest, not pid 1 in there.
        self.controller = subprocess.Popen(
            ["unshare", "-m", "-p", "-f", "--mount-proc", "--propagation", "private",
             PYTHON, str(HERE / "courier_ns.py"), str(self.base), str(tree),
             str(self.syslog_path), *self.binds],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True)
        first = self.controller.stdout.readline().decode(errors="replace").split()
        if first[:1] != ["ready"]:
            rest = self.controller.stdout.read().decode(errors="replace")
            self.controller.wait(10)
            message = " ".join(first) + rest
            if "Operation not permitted" in message:
                raise CourierUnavailable(f"no mount/pid namespace here: {message}")
            raise RuntimeError(f"courier_ns.py could not build Courier's root: {message}")
        self.root = first[1]
        # unshare -f forks once; that child is pid 1 inside and the one to nsenter.
        children = pathlib.Path(f"/proc/{self.controller.pid}/task/{self.controller.pid}/children")
        self.pid = int(children.read_text().split()[0])

    def close(self):
        """End the namespace: EOF on init's stdin; the kernel kills the rest and unmounts."""
        if self.controller is not None:
            try:
                self.controller.stdin.close()
                self.controller.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.controller.pid, 9)
                self.controller.wait(10)
            self.controller.stdout.close()
            self.controller = None
            # The namespace is gone once its init has been reaped; the port closes with it.
            wait_for(lambda: not listening(self.port), 5)
        if self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None

    def __enter__(self):
        return self.start() if self.controller is None else self

    def __exit__(self, *exc):
        self.close()

    def path(self, inside):
        """The host's name for INSIDE (an absolute path in the chroot), valid while running."""
        return pathlib.Path(f"/proc/{self.pid}/root{self.root}{inside}")

    def run(self, command, user=None, check=True, input=None, timeout=30):
        """Run COMMAND (a list) in the chroot, as root or as USER; returns CompletedProcess."""
        userspec = [f"--userspec={user}:{user}"] if user else []
        r = subprocess.run(
            ["nsenter", "-t", str(self.pid), "-m", "-p", "--", "chroot", *userspec, self.root,
             *command],
            input=input, capture_output=True, timeout=timeout, env=CHROOT_ENV)
        if check and r.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} in Courier's chroot exited {r.returncode}: "
                f"{r.stdout.decode(errors='replace')}{r.stderr.decode(errors='replace')}"
                f"\nsyslog tail:\n" + "\n".join(self.syslog()[-15:]))
        return r

    # --- configuration ---------------------------------------------------------------------

    def _write(self, inside, text, mode=0o644, owner=(0, 0)):
        p = self.path(inside)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
        p.chmod(mode)
        os.chown(p, *owner)

    def _append(self, inside, text):
        with open(self.path(inside), "a") as f:
            f.write(text)

    def _configure(self):
        uids = {u: USER_UID0 + i for i, u in enumerate(self.users)}
        self._append("/etc/passwd", f"courier:x:{COURIER_UID}:{COURIER_GID}:Courier mail server:"
                     f"{LOCALSTATEDIR}:/usr/sbin/nologin\n" +
                     "".join(f"{u}:x:{i}:{i}::/home/{u}:/bin/sh\n" for u, i in uids.items()))
        self._append("/etc/group", f"courier:x:{COURIER_GID}:\n" +
                     "".join(f"{u}:x:{i}:\n" for u, i in uids.items()))
        etc = "/etc/courier"
        self._write(f"{etc}/me", self.me + "\n")
        self._write(f"{etc}/defaultdomain", self.me + "\n")
        self._write(f"{etc}/locals", f"localhost\n{self.me}\n")
        self._write(f"{etc}/esmtpacceptmailfor.dir/local", self.me + "\n")
        # Only loopback relays; Debian's default also lets in 10/8 and 192.168/16.
        self._write(f"{etc}/smtpaccess/default",
                    "127.0.0.1\tallow,RELAYCLIENT\n"
                    ":0000:0000:0000:0000:0000:0000:0000:0001\tallow,RELAYCLIENT\n")
        self._configure_esmtpd(f"{etc}/esmtpd")
        # Courier's init scripts make these; its daemons run as courier and need them.
        lsd = self.path(LOCALSTATEDIR)
        for p in [lsd, *lsd.rglob("*")]:
            os.chown(p, COURIER_UID, COURIER_GID, follow_symlinks=False)
        for d in ("", "allfilters", "filters", "msgq", "msgs", "track"):
            (lsd / d).chmod(0o750)
        (lsd / "tmp").chmod(0o770)
        for d in (etc, f"{etc}/aliases", f"{etc}/filters", f"{etc}/filters/active"):
            os.chown(self.path(d), 0, COURIER_GID)
        for d in ("/run/courier", "/run/courier/authdaemon"):
            self.path(d).mkdir(exist_ok=True)
            os.chown(self.path(d), 0, COURIER_GID)
        self.path("/run/courier").chmod(0o775)
        self.path("/run/courier/authdaemon").chmod(0o750)
        for u, uid in uids.items():
            home = self.path(f"/home/{u}")
            home.mkdir(parents=True)
            os.chown(home, uid, uid)
            self.run(["maildirmake", f"/home/{u}/Maildir"], user=u)
        for tool in ("makeacceptmailfor", "makesmtpaccess", "makealiases"):
            self.run([f"/usr/lib/courier/{tool}"])

    def _configure_esmtpd(self, inside):
        settings = {"PORT": str(self.port), "ADDRESS": "127.0.0.1", "BOFHCHECKDNS": "0",
                    "TARPIT": "0", "ESMTP_LOG_DIALOG": "1",
                    # Every test client is 127.0.0.1: at the default 5 sessions per address,
                    # sessions just closed but not yet reaped refused concurrent tests' next.
                    "MAXPERIP": "100",
                    # No reverse lookup of the client: the machine has no DNS to ask.
                    "TCPDOPTS": '"-nodnslookup -stderrlogger=/usr/sbin/courierlogger '
                                '-noidentlookup"'}
        lines = [l for l in self.path(inside).read_text().splitlines()
                 if l.split("=", 1)[0] not in settings]
        self._write(inside, "\n".join(lines + [f"{k}={v}" for k, v in settings.items()]) + "\n")

    def _start_daemons(self):
        # authdaemond first: without it RCPT to a local user gets "450 Service temporarily
        # unavailable" and courierlocal cannot look the user up.
        self.run(["/usr/sbin/authdaemond", "start"])
        if not wait_for(lambda: self.path("/run/courier/authdaemon/socket").exists()):
            raise RuntimeError("authdaemond did not create its socket:\n" + self.syslog_text())
        self.run(["/usr/sbin/courierfilter", "start"])
        self.run(["/usr/sbin/courier", "start"])
        self.run(["/usr/sbin/esmtpd", "start"])
        if not wait_for(lambda: listening(self.port)):
            raise RuntimeError(f"Courier's ESMTP did not listen on 127.0.0.1:{self.port}:\n"
                               + self.syslog_text())

    # --- global filters --------------------------------------------------------------------

    def install_filter(self, name, program, mode="all", restart=True):
        """Install PROGRAM (a host path to copy, or the text/bytes of a script) as filter NAME.

        MODE "all" or "filters" goes into /etc/courier/filters/NAME-mode, the file libfilter
        reads to choose allfilters/ or filters/ (the filter must honour it itself). It is
        activated like `filterctl start NAME` and courierfilter is restarted, which returns
        only when every filter has closed fd 3 (is ready).
        """
        inside = f"/usr/lib/courier/filters/{name}"
        content = pathlib.Path(program).read_bytes() if isinstance(program, pathlib.Path) \
            else program
        self._write(inside, content, mode=0o755)
        self._write(f"/etc/courier/filters/{name}-mode", ("all" if mode == "all" else
                                                          "filters") + "\n")
        active = self.path(f"/etc/courier/filters/active/{name}")
        if not active.is_symlink():
            active.symlink_to(inside)
        if restart:
            self.restart_filters()

    def remove_filter(self, name, restart=True):
        """Deactivate filter NAME (filterctl stop); courierfilter removes its socket."""
        self.path(f"/etc/courier/filters/active/{name}").unlink(missing_ok=True)
        if restart:
            self.restart_filters()

    def restart_filters(self):
        self.run(["/usr/sbin/courierfilter", "stop"])
        self.run(["/usr/sbin/courierfilter", "start"])

    def filter_socket(self, name):
        """The host path of filter NAME's socket, or None while it has none."""
        for directory in SOCKET_DIRS.values():
            p = self.path(f"{directory}/{name}")
            if p.exists():
                return p
        return None

    # --- mail --------------------------------------------------------------------------------

    def send(self, sender, recipients, message, helo="client.test", timeout=30):
        """One SMTP session from the host to Courier; returns Sent (all replies).

        MESSAGE is bytes with \\n or \\r\\n line ends; smtplib dot-stuffs it but leaves a bare
        \\n alone (and would add a blank line at the end), so line ends become \\r\\n here.
        The connection is closed without QUIT: nothing in these tests depends on the 221.
        """
        message = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        sent = Sent()
        s = smtplib.SMTP(timeout=timeout)
        try:
            sent.banner = s.connect("127.0.0.1", self.port)
            s.ehlo(helo)
            sent.mail = s.mail(sender)
            if sent.mail[0] != 250:
                return _decoded(sent)
            sent.rcpt = [s.rcpt(r) for r in recipients]
            if any(code == 250 for code, _ in sent.rcpt):
                try:
                    sent.data = s.data(message)
                except smtplib.SMTPDataError as e:   # DATA itself refused (not 354)
                    sent.data = (e.smtp_code, e.smtp_error)
                except smtplib.SMTPServerDisconnected as e:
                    sent.data = (0, f"connection closed: {e}")
        finally:
            s.close()
        return _decoded(sent)

    def maildir(self, user):
        """Every message delivered to USER's ~/Maildir/new, oldest first, as bytes."""
        folder = self.path(f"/home/{user}/Maildir/new")
        files = sorted(folder.iterdir(), key=lambda f: (f.stat().st_mtime_ns, f.name))
        return [f.read_bytes() for f in files]

    def wait_maildir(self, user, count=1, timeout=10):
        """Wait (bounded) until USER has COUNT messages; return them (fewer on timeout)."""
        wait_for(lambda: len(self.maildir(user)) >= count, timeout)
        return self.maildir(user)

    def queue_files(self):
        """Paths (relative to /var/lib/courier) of queued and in-submission message files."""
        lsd = self.path(LOCALSTATEDIR)
        # Message files are one folder down (tmp/<time/10000>/D<inode>, msgs/<n>/C<inode>);
        # files directly in tmp/ are courierd's lock and trigger.
        return sorted(str(p.relative_to(lsd)) for d in ("msgs", "msgq", "tmp")
                      for p in (lsd / d).glob("*/*") if p.is_file())

    def wait_queue_empty(self, timeout=10):
        """Wait until courierd has finished with every message (delivered or bounced)."""
        return wait_for(lambda: not self.queue_files(), timeout)

    def syslog(self):
        """Every syslog line of the namespace so far: Courier's daemons and filters' stderr."""
        return self.syslog_path.read_text(errors="replace").splitlines()

    def syslog_text(self):
        return "\n".join(self.syslog())

    def wait_syslog(self, text, timeout=10):
        """Wait until a syslog line contains TEXT; return that line or None."""
        found = []
        wait_for(lambda: found.extend(l for l in self.syslog() if text in l) or found, timeout)
        return found[0] if found else None


def _decoded(sent):
    """smtplib gives bytes texts; tests compare strings."""
    def d(reply):
        if reply is None:
            return None
        code, text = reply
        return (code, text.decode(errors="replace") if isinstance(text, bytes) else text)
    sent.banner, sent.mail, sent.data = d(sent.banner), d(sent.mail), d(sent.data)
    sent.rcpt = [d(r) for r in sent.rcpt]
    return sent
