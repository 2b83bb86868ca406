"""courier_ns - init (pid 1) of the private mount + pid namespace that Courier runs in.

DESCRIPTION  Started by courier_harness.Courier as
               unshare -m -p -f --mount-proc --propagation private python3 courier_ns.py \
                   BASE TREE SYSLOG [BIND...]
             It builds the root Courier is chrooted into, BASE/ns/merged: an overlay whose
             upper layer is a tmpfs and whose lower layers are TREE (Debian's unpacked
             Courier, copied onto the tmpfs first) over the host's /. Writes never reach the
             host. Each BIND (a host folder) is bind-mounted at the same path inside, so
             sockets and programs there are reachable under the same name from both sides.
             Then it prints "ready" and stays as the syslog daemon: datagrams to the root's
             /dev/log are appended to SYSLOG, one line each. It reaps orphans (Courier's
             daemons detach and land here) and exits when its stdin reaches EOF; the kernel
             then kills every process left in the namespace and drops its mounts.
SEE ALSO     courier_harness.py, README.md
"""

import os
import select
import shutil
import socket
import subprocess
import sys


def mount(*args):
    subprocess.run(["mount", *args], check=True)


def build_root(base, tree, binds):
    ns = os.path.join(base, "ns")
    mount("-t", "tmpfs", "-o", "mode=0755", "courier-ns", ns)
    lower, upper, work, root = (os.path.join(ns, d) for d in ("lower", "upper", "work", "merged"))
    for d in (upper, work, root):
        os.mkdir(d)
    # A lower layer may not sit inside another lower layer (mount fails with ELOOP), and the
    # cached tree is inside /, so the tree is copied onto the tmpfs first (about 5 MB).
    shutil.copytree(tree, lower, symlinks=True)
    mount("-t", "overlay", "overlay", "-o",
          f"lowerdir={lower}:/,upperdir={upper},workdir={work}", root)
    mount("-t", "proc", "proc", os.path.join(root, "proc"))
    # Only the device nodes Courier opens; the host's /dev/log must not receive its logs.
    dev = os.path.join(root, "dev")
    mount("-t", "tmpfs", "-o", "mode=0755", "courier-dev", dev)
    for name in ("null", "zero", "random", "urandom", "tty"):
        open(os.path.join(dev, name), "w").close()
        mount("--bind", "/dev/" + name, os.path.join(dev, name))
    # The overlay does not descend into the host's other mounts, and a socket seen through an
    # overlay is not the host's socket, so shared folders are bind-mounted.
    for path in binds:
        inside = root + os.path.abspath(path)
        os.makedirs(inside, exist_ok=True)
        mount("--bind", path, inside)
    return root


def serve(root, syslog_path):
    log = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    log.bind(os.path.join(root, "dev", "log"))
    os.chmod(os.path.join(root, "dev", "log"), 0o666)
    out = open(syslog_path, "ab", buffering=0)
    print("ready", root, flush=True)
    while True:
        readable, _, _ = select.select([sys.stdin, log], [], [], 0.5)
        if log in readable:
            out.write(log.recv(65536).rstrip(b"\n") + b"\n")
        if sys.stdin in readable and not os.read(sys.stdin.fileno(), 4096):
            return
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            pass


def main():
    base, tree, syslog_path, *binds = sys.argv[1:]
    try:
        root = build_root(base, tree, binds)
    except (OSError, subprocess.CalledProcessError) as e:
        print("failed", e, flush=True)
        sys.exit(1)
    serve(root, syslog_path)


if __name__ == "__main__":
    main()
