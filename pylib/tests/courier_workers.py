"""Helpers for the tests of Courier's stateful filters: control files, upstream, workers.

Control files are written as Courier writes them; a fake upstream pythonfilter package
whose ttldb/ratelimit/ratelimitauth fail when imported shows that mtapy's are used; workers
are separate /usr/bin/python3 processes that get the pool's state as mtapy-workerd gives it
($MTAPY_STATE, $MTAPY_POOL), build a filter chain, wait for a common start, then run.
"""

import json
import os
import pathlib
import subprocess
import sys
import time
from typing import List, Optional, Sequence, Tuple

PYLIB = pathlib.Path(__file__).resolve().parent.parent

Message = Tuple[str, List[str]]  # (body path, control paths), as Chain.run takes them


def message(folder: pathlib.Path, name: str, sender: str, recipients: Sequence[str],
            ip: str = "192.0.2.1", auth: Optional[str] = None) -> Message:
    """A message's data file and one control file, written as Courier 1.0.16 writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    records = [f"s{sender}", "fdns; client.example.net", "e", "t",
               f"M{name}.000000006B01885B.000000C8"]
    for recipient in recipients:
        records += [f"r{recipient}", "R", "N"]
    records += [f"OTCPREMOTEIP=::ffff:{ip}" if "." in ip else f"OTCPREMOTEIP={ip}", "uesmtp"]
    if auth:
        records.append(f"i{auth}")
    control, body = folder / f"C{name}", folder / f"D{name}"
    control.write_text("\n".join(records) + "\n")
    body.write_text("Subject: test\n\nbody\n")
    return str(body), [str(control)]


UPSTREAM_STUB = "raise ImportError('upstream\\'s {name} was imported instead of mtapy\\'s')\n"


def fake_upstream(site: pathlib.Path, filters: dict) -> pathlib.Path:
    """A pythonfilter package in `site` with `filters` ({name: source}) and failing stubs."""
    package = site / "pythonfilter"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    for name in ("ttldb", "TtlDb", "ratelimit", "ratelimitauth"):
        (package / f"{name}.py").write_text(UPSTREAM_STUB.format(name=name))
    for name, source in filters.items():
        (package / f"{name}.py").write_text(source)
    return site


WORKER = r"""
import json, os, sys, time
sys.path[:0] = sys.argv[1].split(os.pathsep)
import courier.config
courier.config.MODULE_CONFIG_PATHS[:] = [sys.argv[2]]
from mtapy.filter_chain import Chain, read_conf
chain = Chain(read_conf(sys.argv[3]))
messages = json.loads(sys.argv[5])
print("ready", flush=True)
while not os.path.exists(sys.argv[4]):
    time.sleep(0.001)
print(json.dumps([chain.run(body, paths) for body, paths in messages]), flush=True)
"""


def run_workers(count: int, folder: pathlib.Path, state_url: str, site: pathlib.Path,
                chain_conf: str, modules_conf: str, messages: List[Message]) -> List[str]:
    """Run `messages` through the chain in `count` workers at once; every worker's replies."""
    (folder / "pythonfilter.conf").write_text(chain_conf)
    (folder / "pythonfilter-modules.conf").write_text(modules_conf)
    go = folder / "go"
    env = dict(os.environ, MTAPY_STATE=state_url, MTAPY_POOL="courier-test")
    path = os.pathsep.join([str(PYLIB), str(site)])
    workers = [subprocess.Popen(
        [sys.executable, "-c", WORKER, path, str(folder / "pythonfilter-modules.conf"),
         str(folder / "pythonfilter.conf"), str(go), json.dumps(messages)],
        stdout=subprocess.PIPE, text=True, env=env) for _ in range(count)]
    try:
        for worker in workers:
            assert worker.stdout.readline() == "ready\n", "a worker failed to build its chain"
        go.touch()
        return [reply for worker in workers for reply in json.loads(worker.stdout.readline())]
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()


def away_from_a_minute_turn(margin: float = 8.0) -> None:
    """Wait out the end of a minute: a rate window's count is exact but at that instant."""
    if time.time() % 60 > 60 - margin:
        time.sleep(60 - time.time() % 60 + 0.1)
