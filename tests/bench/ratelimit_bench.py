"""ratelimit_bench.py - the seed's rate limiter on mtapy against its peers, in one run.

DESCRIPTION  Not pass/fail. Two comparisons, unpinned and pinned (taskset -c 0 on every
             server and client), REPS times:
             1. ${readsocket} listeners driven alone by rawpp (connect, line, half-close, read
                to EOF, as Exim does), 1 and 8 clients: mtapy's listener running
                mtapy.filters.ratelimit.sender_warn (the shared LMDB count), the same listener
                running a stateless check (what the one-hop issue measured), and the seed's
                Twisted daemon (a dict in one process). Target: the limiter ≥ 0.8× the
                stateless call's req/s.
             2. Through real Exim, added RCPT p50 over an Exim without policy: mtapy's
                limiter by ${dlfunc} (shim preloaded) against Exim's own
                `ratelimit = N / 1h / strict / $sender_address` condition.
             Every key is the same sender (the worst case: all writes on one record); the
             limit is never reached.
USAGE        as root: MTAPY_BUILD=build /usr/bin/python3 tests/bench/ratelimit_bench.py [--reps 3]
"""

import argparse
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import exim_bench as eb  # noqa: E402  (its staging, daemons, Exim and clients)

RL_POLICY = """\
from mtapy.filters import ratelimit
ratelimit.COUNT = 10 ** 9
ratelimit.SMTP = ""
over = ratelimit.over
sender_warn = ratelimit.sender_warn
"""
DENY = "         message   = refused by policy\n"
ACLS = {
    "floor": "",
    "mtapy_over": "  deny   condition = ${dlfunc{MTAPY_SO}{python}{over}{$sender_address}}\n" + DENY,
    "exim_ratelimit": "  deny   ratelimit = 1000000000 / 1h / strict / $sender_address\n" + DENY,
}


def exim_for(stage, run, style, daemon, prefix):
    def text_for(config):
        return config.replace("@ACLS@", "acl_connect:\n  accept\n\nacl_mail:\n  accept\n\n"
                              "acl_rcpt:\n" + ACLS[style] + eb.ACL_TAIL)
    env = {"LD_PRELOAD": str(stage / "bin" / "mtapy_exim.so")} if style == "mtapy_over" else None
    return eb.build_exim(stage, f"{run}-{style}", text_for, daemon.shim_conf_for("rl"), prefix,
                         env)


def one_run(stage, run, pinned, a):
    prefix = ["taskset", "-c", "0"] if pinned else []
    policies = stage / "policies"
    rs = {name: stage / "run" / f"{run}-{name}.sock" for name in ("acl", "rl")}
    pools = (eb.pool_toml("acl", policies / "acl.py", readsocket=str(rs["acl"]), **eb.POOL_OPTIONS)
             + eb.pool_toml("rl", policies / "rl.py", readsocket=str(rs["rl"]), **eb.POOL_OPTIONS))
    daemon = eb.PinnedDaemon(stage, run, pools, "", prefix).start()
    twisted, twisted_path = eb.start_line_daemon(stage, run, prefix)
    out = {}
    try:
        listeners = {
            "mtapy_limiter": (rs["rl"], "sender_warn alice@client.test", "no", daemon.pids),
            "mtapy_stateless": (rs["acl"], "check user1", "false", daemon.pids),
            "twisted_seed": (twisted_path, "alice@client.test", "no", lambda: [twisted.pid]),
        }
        for name, listener in listeners.items():
            out[name] = eb.listener_alone(stage, listener, prefix, a)
            eb.log(f"  {run} alone {name}: {out[name]}")
        for style in ACLS:
            exim = exim_for(stage, run, style, daemon, prefix).start()
            try:
                for clients in (1, 8):
                    out[f"{style}_c{clients}"] = eb.rcpt_load(exim.port, clients, a.seconds, pinned)
                    eb.log(f"  {run} {style} {clients}: {out[f'{style}_c{clients}']}")
            finally:
                exim.stop()
    finally:
        twisted.terminate()
        daemon.stop()
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5, help="per RCPT measurement")
    p.add_argument("--alone-calls", type=int, default=20000)
    p.add_argument("--alone-warmup", type=int, default=500)
    a = p.parse_args()
    if not eb.have_twisted():
        sys.exit("ratelimit_bench.py: the seed's daemon needs Twisted: apt-get install -y "
                 "python3-twisted")
    build = pathlib.Path(eb.os.environ.get("MTAPY_BUILD", eb.TOP / "build")).resolve()
    eb.ensure_user(eb.POOL_USER)
    bench_bin = pathlib.Path(tempfile.mkdtemp(prefix="mtapy-rl-bin-"))
    subprocess.run(["gcc", "-O2", "-o", str(bench_bin / "rawpp"), str(HERE / "rawpp.c")], check=True)
    stage = eb.make_stage(build, "/tmp", bench_bin)
    (stage / "policies" / "rl.py").write_text(RL_POLICY)
    (stage / "policies" / "rl.py").chmod(0o644)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    runs = {"unpinned": [], "pinned": []}
    for rep in range(a.reps):
        for pinned in ((False, True) if rep % 2 == 0 else (True, False)):
            mode = "pinned" if pinned else "unpinned"
            runs[mode].append(one_run(stage, f"r{rep}{mode[0]}", pinned, a))
    med = statistics.median
    print(f"#### Rate limiter ({started}; median of {a.reps} runs; per-run ratios' median)\n")
    print("| `${readsocket}` listener alone | mode | 1 client req/s, p50 µs | 8 clients req/s, "
          "p50 µs |")
    print("|---|---|---|---|")
    for name in ("mtapy_limiter", "mtapy_stateless", "twisted_seed"):
        for mode, rs in runs.items():
            cells = [f"{med(r[name][c]['rps'] for r in rs):,.0f}, {med(r[name][c]['p50'] for r in rs):.0f}"
                     for c in ("c1", "c8")]
            print(f"| {name} | {mode} | {cells[0]} | {cells[1]} |")
    print("\n| ratio (req/s) | mode | 1 client | 8 clients | target |")
    print("|---|---|---|---|---|")
    for label, num, den, target in (("limiter ÷ stateless call", "mtapy_limiter", "mtapy_stateless",
                                     "≥ 0.8"),
                                    ("limiter ÷ the Twisted seed", "mtapy_limiter", "twisted_seed",
                                     "")):
        for mode, rs in runs.items():
            cells = [f"{med(r[num][c]['rps'] / r[den][c]['rps'] for r in rs):.2f}"
                     for c in ("c1", "c8")]
            print(f"| {label} | {mode} | {cells[0]} | {cells[1]} | {target} |")
    print("\n| through Exim, added RCPT p50 ms | mode | 1 client | 8 clients |")
    print("|---|---|---|---|")
    for style in ("mtapy_over", "exim_ratelimit"):
        for mode, rs in runs.items():
            cells = [f"+{med(r[f'{style}_c{c}']['p50'] - r[f'floor_c{c}']['p50'] for r in rs) / 1000:.3f}"
                     for c in (1, 8)]
            print(f"| {style} | {mode} | {cells[0]} | {cells[1]} |")
    for mode, rs in runs.items():
        ratio = [med((r[f"mtapy_over_c{c}"]["p50"] - r[f"floor_c{c}"]["p50"]) /
                     max(1e-6, r[f"exim_ratelimit_c{c}"]["p50"] - r[f"floor_c{c}"]["p50"])
                     for r in rs) for c in (1, 8)]
        print(f"\nmtapy's limiter ÷ Exim's ratelimit, added RCPT p50, {mode}: "
              f"{ratio[0]:.2f} (1 client), {ratio[1]:.2f} (8 clients)")


if __name__ == "__main__":
    main()
