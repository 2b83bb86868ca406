"""exim_harness - a private, real Exim 4.96 daemon wired to a real mtapy-workerd, and its clients.

DESCRIPTION  Exim runs from Debian's /usr/sbin/exim4 with `-C` pointing at a config written here
             (root-owned, in a root-owned 0755 folder, as Exim requires for root's `-C`), on a
             free loopback port, with its own spool, log and mail folders. Mail for
             @mtapy.test is delivered into the maildir mail/<local part>/. The shim reaches
             the daemon through $MTAPY_SHIM_CONF, which the config keeps (keep_environment).
             Clients: Smtp (a raw socket that closes without QUIT, because Exim spends 200 ms
             on a QUIT), swaks, and `exim -bh` (a whole SMTP dialogue without a daemon).
RECIPES      docs/design.md section 3.4 (running Exim for tests: -C, -bh, pitfalls).
SEE ALSO     ../conftest.py (the staged install and Daemon), exim_test_policy.py (the Python
             side of every decision the configs below ask for)
"""

import grp
import os
import pathlib
import pwd
import shutil
import signal
import socket
import subprocess
import textwrap

from conftest import Daemon, free_port, pool_toml, wait_for

EXIM = "/usr/sbin/exim4"
EXIM_USER = "Debian-exim"
DOMAIN = "mtapy.test"
LOCAL_PARTS = ("user1", "user2", "postmaster")
RS_FALLBACK = "DEFER: mtapy unreachable"


# --- how a config asks Python: ${dlfunc} or ${readsocket} ----------------------------------


def dlfunc(function, *args):
    """The ${dlfunc} expansion that calls FUNCTION(ARGS) in the shim's pool."""
    return "${dlfunc{MTAPY_SO}{python}{%s}%s}" % (function, "".join("{%s}" % a for a in args))


def readsocket(function, *args, pool="acl"):
    """The ${readsocket} expansion for the same call, with the documented DEFER fallback."""
    words = " ".join(["%s:%s" % (pool, function)] + ["${quote:%s}" % a for a in args])
    return "${readsocket{MTAPY_RS_PATH}{%s\\n}{5s}{}{%s}}" % (words, RS_FALLBACK)


def decide(mode, verb, function, args, message, conditions=()):
    """ACL statements: VERB (deny/accept) when Python's FUNCTION(ARGS) answers true.

    dlfunc: the call is the condition itself (it must answer true/false/yes/no).
    readsocket: the recommended idiom - keep the answer in $acl_m_mtapy, defer on "DEFER...",
    then test the value.
    """
    extra = "".join(f"\n         {c}" for c in conditions)
    if mode == "dlfunc":
        return (
            f"  {verb:6} condition = {dlfunc(function, *args)}{extra}\n"
            f"         message   = {message}\n"
        )
    return (
        f"  warn   set acl_m_mtapy = {readsocket(function, *args)}{extra}\n"
        f"  defer  condition   = ${{if match{{$acl_m_mtapy}}{{\\N^DEFER\\N}}}}{extra}\n"
        f"         message     = temporary policy failure, please try later\n"
        f"         log_message = mtapy: $acl_m_mtapy\n"
        f"  {verb:6} condition   = ${{if eq{{$acl_m_mtapy}}{{true}}}}{extra}\n"
        f"         message     = {message}\n"
    )


def value(mode, function, *args):
    """An expansion whose value is Python's answer (for add_header)."""
    return dlfunc(function, *args) if mode == "dlfunc" else readsocket(function, *args)


def acl_config(mode):
    """The ACLs of the test config: every decision below is Python's (exim_test_policy.py)."""
    client = "client $sender_host_address refused by Python policy"
    sender = "sender <$sender_address> refused by Python policy"
    recipient = "recipient $local_part refused by Python policy"
    tri = "tri-state said deny for $local_part"
    # Six arguments after the function name: the most Exim 4.96 passes without crashing.
    args = ["$bh_X-Test:", "", "$sender_address", "$recipients", "five 5", "$h_X-Six:"]
    return "".join(
        [
            "acl_connect:\n",
            # 127.0.0.1 is not asked, so with mtapy down its sessions reach MAIL (451 there).
            "  accept hosts = 127.0.0.1\n",
            decide(mode, "deny", "client_blocked", ["$sender_host_address"], client),
            "  accept\n\n",
            "acl_mail:\n",
            decide(mode, "deny", "sender_blocked", ["$sender_address"], sender),
            "  accept\n\n",
            "acl_rcpt:\n",
            # tri-WORD: Python answers True, False or None for WORD
            # (test_true_false_and_none_in_a_deny_condition).
            decide(
                mode, "deny", "tri", ["${sg{$local_part}{^tri-}{}}"], tri, ["local_parts = ^tri-"]
            ),
            "  accept local_parts = ^tri-\n",
            decide(mode, "deny", "recipient_blocked", ["$local_part"], recipient),
            "  accept domains = +local_domains\n",
            "  deny   message = relay not permitted\n\n",
            "acl_data:\n",
            "  warn   add_header = X-Mtapy-Args: " + value(mode, "hexargs", *args) + "\n",
            # None: a forced failure skips the modifier (${readsocket}: an empty value).
            "  warn   add_header = X-Mtapy-None: " + value(mode, "tri", "none") + "\n",
            "  accept\n",
        ]
    )


def main_config(directory, port, so, readsocket_path, mode, acls=None):
    """The whole -C config: main options, ACLs, one router, one appendfile transport.

    ACLS (default: acl_config(MODE)) must define acl_connect, acl_mail, acl_rcpt, acl_data.
    """
    return (
        textwrap.dedent(
            f"""\
        # Written by tests/exim/exim_harness.py ({mode}); a private Exim for mtapy's tests.
        # Macro names must not contain each other (Exim matches them as substrings).
        MTAPY_SO = {so}
        MTAPY_RS_PATH = {readsocket_path}

        primary_hostname   = {DOMAIN}
        qualify_domain     = {DOMAIN}
        spool_directory    = {directory}/spool
        log_file_path      = {directory}/log/%slog
        pid_file_path      = {directory}/exim.pid
        daemon_smtp_ports  = {port}
        local_interfaces   = 127.0.0.1
        exim_user          = {EXIM_USER}
        exim_group         = {EXIM_USER}
        never_users        = root
        domainlist local_domains = {DOMAIN}
        host_lookup        = !*
        rfc1413_hosts      = !*
        rfc1413_query_timeout = 0s
        # Exim purges the environment; the shim finds its shim.conf through this variable.
        keep_environment   = MTAPY_SHIM_CONF
        tls_advertise_hosts =
        # The daemon runs as Debian-exim; without this, delivery re-execs and loses root (-C).
        deliver_drop_privilege = true
        smtp_accept_max    = 100
        smtp_connect_backlog = 100
        log_selector       = +subject +received_recipients

        acl_smtp_connect   = acl_connect
        acl_smtp_mail      = acl_mail
        acl_smtp_rcpt      = acl_rcpt
        acl_smtp_data      = acl_data

        begin acl

        """
        )
        + (acls or acl_config(mode))
        + textwrap.dedent(
            f"""
        begin routers

        local_user:
          driver      = accept
          domains     = +local_domains
          local_parts = lsearch;{directory}/localparts
          transport   = local_file

        begin transports

        # $local_part is tainted; the lookup's $local_part_data is not. Maildir: concurrent
        # deliveries to one mbox file would wait for its lock (lock_interval, 3 s).
        local_file:
          driver      = appendfile
          directory   = {directory}/mail/$local_part_data
          maildir_format
          user        = {EXIM_USER}
          group       = {EXIM_USER}
          mode        = 0644
        """
        )
    )


# --- mtapy-workerd for Exim ----------------------------------------------------------------

HERE = pathlib.Path(__file__).resolve().parent
TOP = HERE.parent.parent
POOL_CLIENTS = ("Debian-exim", "root")


class Mtapy:
    """The daemon plus one shim.conf per pool (several pools serve Exim, so each names one)."""

    def __init__(self, daemon):
        self.daemon = daemon
        self.shim = {}
        for pool in ("acl", "geo"):
            path = daemon.dir / f"shim-{pool}.conf"
            path.write_text(f"socket_dir = {daemon.dir}\npool = {pool}\ntimeout = 5s\n")
            path.chmod(0o644)
            self.shim[pool] = path


def stage_policies(stage):
    """Copy the test policy and deploy/policies/ into the stage; return their folder."""
    folder = stage / "policies" / "exim"
    folder.mkdir(mode=0o755, exist_ok=True)
    for source in [HERE / "exim_test_policy.py", *(TOP / "deploy" / "policies").iterdir()]:
        if source.is_file():
            shutil.copy(source, folder / source.name)
            (folder / source.name).chmod(0o644)
    return folder


def mtapy_pools(policies, readsocket):
    return pool_toml(
        "acl", policies / "exim_test_policy.py", clients=POOL_CLIENTS, process_limit=4,
        readsocket=str(readsocket),
    ) + pool_toml("geo", policies / "geoip.py", clients=POOL_CLIENTS, user="mtapy-t2")


def start_mtapy(stage, name):
    policies = stage_policies(stage)
    readsocket = stage / "run" / name / "readsocket.sock"
    daemon = Daemon(stage, name, mtapy_pools(policies, readsocket))
    return Mtapy(daemon.start())


def build_exim(stage, mtapy, name, mode, pool="acl", acls=None):
    """An Exim (not started) whose ACLs ask MTAPY's POOL through MODE."""
    directory = stage / "run" / name
    port = free_port()
    text = main_config(
        directory, port, stage / "bin" / "mtapy_exim.so", mtapy.daemon.readsocket, mode, acls
    )
    return Exim(directory, text, mtapy.shim[pool], port, mode)


# --- the Exim process -------------------------------------------------------------------------


def listening(port):
    """True while something listens on 127.0.0.1:PORT (read from /proc, no connection made)."""
    wanted = "0100007F:%04X" % port
    with open("/proc/net/tcp") as table:
        return any(
            line.split()[1] == wanted and line.split()[3] == "0A" for line in table.readlines()[1:]
        )


class Exim:
    """A private Exim: its folder, config, daemon, logs and delivered mail."""

    def __init__(self, directory, config_text, shim_conf, port=0, mode="dlfunc"):
        self.dir = pathlib.Path(directory)
        self.mode = mode
        self.port = port
        self.conf = self.dir / "exim.conf"
        self.pidfile = self.dir / "exim.pid"
        self.shim_conf = pathlib.Path(shim_conf)
        self.pid = None
        self._prepare(config_text)

    def _prepare(self, config_text):
        uid, gid = pwd.getpwnam(EXIM_USER).pw_uid, grp.getgrnam(EXIM_USER).gr_gid
        self.dir.mkdir(mode=0o755, parents=True)
        os.chown(self.dir, 0, 0)
        for name in ("spool", "log", "mail"):
            (self.dir / name).mkdir(mode=0o750 if name != "mail" else 0o755)
            os.chown(self.dir / name, uid, gid)
        (self.dir / "localparts").write_text("".join(f"{p}: {p}\n" for p in LOCAL_PARTS))
        # Root's -C is trusted only for a root-owned file that nobody else can write.
        self.conf.write_text(config_text)
        self.conf.chmod(0o644)
        self.check_config()

    def env(self):
        return dict(os.environ, MTAPY_SHIM_CONF=str(self.shim_conf))

    def check_config(self):
        """`exim -bV` reads the whole config; raise with Exim's words if it is wrong."""
        r = subprocess.run(
            [EXIM, "-C", str(self.conf), "-bV"], capture_output=True, text=True, env=self.env()
        )
        if r.returncode != 0:
            raise RuntimeError(f"Exim refuses {self.conf}: {r.stdout}{r.stderr}")

    def start(self):
        subprocess.run(
            [EXIM, "-C", str(self.conf), "-bd", "-oX", str(self.port), "-oP", str(self.pidfile)],
            check=True,
            env=self.env(),
        )
        if not wait_for(lambda: listening(self.port) and self.pidfile.exists()):
            if self.pidfile.exists():  # up but not listening: it must not outlive the test
                self.pid = int(self.pidfile.read_text().split()[0])
                self.stop()
            raise RuntimeError(f"Exim did not start listening on {self.port}: {self.paniclog()}"
                               f"\nmainlog tail:\n{self.mainlog()[-1500:]}")
        self.pid = int(self.pidfile.read_text().split()[0])
        return self

    def stop(self):
        """SIGTERM the daemon (by its own pid) and wait until the port is closed."""
        if self.pid is None:
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        wait_for(lambda: not listening(self.port))
        self.pid = None

    # Logs and mail.
    def _read(self, name):
        path = self.dir / "log" / name
        return path.read_text(errors="replace") if path.exists() else ""

    def mainlog(self):
        return self._read("mainlog")

    def rejectlog(self):
        return self._read("rejectlog")

    def paniclog(self):
        return self._read("paniclog")

    def mailbox(self, local_part):
        """Every message delivered to LOCAL_PART, concatenated in delivery order."""
        folder = self.dir / "mail" / local_part / "new"
        files = (
            sorted(folder.iterdir(), key=lambda f: f.stat().st_mtime_ns) if folder.exists() else []
        )
        return b"".join(f.read_bytes() for f in files)

    def wait_delivered(self, message_id, timeout=10):
        """Wait for the mainlog's "Completed" line of MESSAGE_ID (delivery is asynchronous)."""
        return wait_for(lambda: f"{message_id} Completed" in self.mainlog(), timeout)

    # Clients.
    def smtp(self, source="127.0.0.1"):
        return Smtp(self.port, source)

    def swaks(self, *args, source=None):
        """Run swaks against this daemon; returns (exit status, transcript)."""
        command = ["swaks", "--server", f"127.0.0.1:{self.port}", "--helo", "client.test", *args]
        if source:
            command += ["--local-interface", source]
        r = subprocess.run(command, capture_output=True, text=True, timeout=30)
        return r.returncode, r.stdout + r.stderr

    def bh(self, ip, commands, env=None, conf=None, options=()):
        """`exim -bh IP`: run an SMTP dialogue without a daemon; returns BhResult.

        A QUIT is added; its 221 (or the 421 of a dropped session) is not among the replies.
        """
        dialogue = b"".join(
            (c.encode() if isinstance(c, str) else c) + b"\r\n" for c in [*commands, "QUIT"]
        )
        r = subprocess.run(
            [EXIM, "-C", str(conf or self.conf), *options, "-bh", ip],
            input=dialogue,
            capture_output=True,
            timeout=30,
            env=env or self.env(),
        )
        return BhResult(
            r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
        )

    def be(self, expression, env=None):
        """`exim -be EXPRESSION` as root; returns the CompletedProcess (bytes)."""
        return subprocess.run(
            [EXIM, "-C", str(self.conf), "-be", expression],
            capture_output=True,
            timeout=30,
            env=env or self.env(),
        )


class BhResult:
    """What `exim -bh` printed: SMTP replies on stdout, the ACL trace and LOG: lines on stderr."""

    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr
        self.replies = replies_in(stdout)
        if self.replies and self.replies[-1][0] in (221, 421):
            self.replies.pop()

    def codes(self):
        return [code for code, _ in self.replies]


def replies_in(text):
    """Split SMTP output into (code, text) replies; multi-line replies are joined by \\n."""
    replies, lines = [], []
    for line in text.splitlines():
        if len(line) >= 4 and line[:3].isdigit() and line[3] in "- ":
            lines.append(line[4:])
            if line[3] == " ":
                replies.append((int(line[:3]), "\n".join(lines)))
                lines = []
    return replies


class Smtp:
    """One SMTP session over a plain socket, one command at a time.

    close() drops the connection without QUIT: Exim answers QUIT only after waiting up to
    200 ms for the client to go away, which would dominate the run time of these tests.
    """

    def __init__(self, port, source="127.0.0.1", timeout=20):
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout, source_address=(source, 0)
        )
        self.file = self.sock.makefile("rb")
        self.banner = self.reply()

    def reply(self):
        lines = []
        while True:
            line = self.file.readline()
            if not line:
                return (0, "connection closed: " + "\n".join(lines))
            line = line.rstrip(b"\r\n").decode(errors="replace")
            lines.append(line[4:])
            if len(line) < 4 or line[3] != "-":
                return (int(line[:3]), "\n".join(lines))

    def cmd(self, line):
        self.sock.sendall((line.encode() if isinstance(line, str) else line) + b"\r\n")
        return self.reply()

    def data(self, message):
        """DATA, then MESSAGE (bytes, lines ending in \\n), then the final dot."""
        reply = self.cmd("DATA")
        if reply[0] != 354:
            return reply
        body = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        body = b"\r\n".join(b"." + l if l.startswith(b".") else l for l in body.split(b"\r\n"))
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        self.sock.sendall(body + b".\r\n")
        return self.reply()

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def send(exim, sender, recipients, message=b"Subject: test\n\nbody\n", source="127.0.0.1"):
    """One whole session: returns {"banner", "mail", "rcpt": [...], "data"} replies."""
    result = {"rcpt": []}
    with exim.smtp(source) as s:
        result["banner"] = s.banner
        if s.banner[0] != 220:
            return result
        s.cmd("EHLO client.test")
        result["mail"] = s.cmd(f"MAIL FROM:<{sender}>")
        if result["mail"][0] != 250:
            return result
        for r in recipients:
            result["rcpt"].append(s.cmd(f"RCPT TO:<{r}>"))
        if any(code == 250 for code, _ in result["rcpt"]):
            result["data"] = s.data(message)
    return result


def message_id(reply):
    """The Exim message id in a "250 OK id=..." reply to DATA."""
    code, text = reply
    assert code == 250 and "id=" in text, reply
    return text.split("id=")[1].split()[0]
