#!/usr/bin/env python3
"""The threads snapshot beside the tools people run for "every thread's stack now": for a process
of N sleeping threads plus one spinning thread (tests/fixtures/threadpark.c `many N SHM`), the
wall time of `cprof-bpf -t threads -p PID`, `gdb -p PID -batch -ex 'thread apply all bt'` and
`eu-stack -p PID`, and the longest gap the spinning thread saw between two of its iterations
while each ran (the longest pause a target thread saw; ptrace tools stop every thread for their
whole walk), against the longest gap it saw in a window of the same length right after, with
no tool running (the machine's own scheduling delay). Then where cprof-bpf's time went, from
its phase checkpoints (CPROF_DEBUG_MEM), in CPU time: on a busy machine the wall time of every
tool is mostly waiting for a CPU. Rounds interleave the tools; medians are printed.

    tools/bench/bench_threads.py [--threads 10,100,1000] [--rounds 3] [--quick]
                                 [--baseline OTHER_BUILD/cprof-bpf]

--baseline runs another build of cprof-bpf beside this one (an earlier commit's, to compare).
"""
import argparse
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time

from common import CPROF, ENV, FIXTURES, Table, build, med, parse, workload

# cprof-bpf's checkpoints (util/mem.h) that end each phase, and the phase's name. The time
# before the first checkpoint (exec, dynamic linking, options) and after the last (exit) is
# the rest of the run's wall time.
PHASES = [
    ("threads: BPF opened", "start"),
    ("threads: BPF loaded", "BPF load"),
    ("BPF attached", "unwind tables"),
    ("threads: read", "iterator read"),
    ("BPF freed", "describe"),
    ("symbolized", "symbolize"),
    ("committed", "write"),
]
# The longest quiet window measured after a tool: a gap is a maximum over the window, so the
# windows compared are of the same length, up to this.
QUIET_MAX_S = 5.0


def tools(pid, baseline=None):
    t = {"cprof-bpf": [CPROF, "-t", "threads", "-p", str(pid), "-f", "text", "-o", "-"]}
    if baseline:
        t["baseline"] = [baseline] + t["cprof-bpf"][1:]
    if shutil.which("gdb"):
        t["gdb"] = ["gdb", "-p", str(pid), "-batch", "-nx", "-ex", "thread apply all bt"]
    if shutil.which("eu-stack"):
        t["eu-stack"] = ["eu-stack", "-p", str(pid)]
    return t


def gap(fd, reset=False):
    """The spinner's longest gap so far (s); reset: start a new maximum."""
    if reset:
        os.pwrite(fd, struct.pack("<Q", 0), 16)
        return 0.0
    return struct.unpack("<Q", os.pread(fd, 8, 16))[0] / 1e9


def phases(stderr, cpu):
    """cprof-bpf's CPU time by phase (ms) from its checkpoint lines (each says the process's
    CPU time so far), "exec+exit" being what it used before the first and after the last; cpu:
    its whole CPU time (s)."""
    at = {}
    for line in stderr.splitlines():
        m = re.search(r"mem (.+?)\s+rss .* \(cpu\s+([\d.]+)\)", line)
        if m:
            at[m.group(1)] = float(m.group(2))
    out, prev = {}, None
    for mark, name in PHASES:
        if mark in at:
            out[name] = at[mark] - (prev if prev is not None else at.get("start", 0.0))
            prev = at[mark]
    out["exec+exit"] = cpu * 1e3 - sum(out.values())
    return out


def one(name, argv, fd):
    """One run of a tool: {took s, cpu s (its own, user + system), pause s (longest spinner gap
    while it ran), quiet s (longest gap in a window as long, right after, with nothing
    running), and for cprof-bpf its CPU time by phase (ms)}."""
    time.sleep(0.05)
    gap(fd, reset=True)
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         env=dict(ENV, CPROF_DEBUG_MEM="1"))
    err = p.stderr.read().decode(errors="replace")
    _, status, ru = os.wait4(p.pid, 0)
    took = time.monotonic() - t0
    pause = gap(fd)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode:
        raise RuntimeError(f"{argv[0]} failed ({p.returncode}): {err[-300:]!r}")
    gap(fd, reset=True)
    time.sleep(min(took, QUIET_MAX_S))
    res = {"took": took, "cpu": ru.ru_utime + ru.ru_stime, "pause": pause, "quiet": gap(fd)}
    if name in ("cprof-bpf", "baseline"):
        res.update(phases(err, res["cpu"]))
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", default="10,100,1000")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--baseline", help="another cprof-bpf build to run beside this one")
    a = parse(ap, rounds=1, threads="10,100")
    tmp = tempfile.mkdtemp(prefix="bench-threads-")
    exe = build(tmp, os.path.join(FIXTURES, "threadpark.c"))
    print("longest pause: the spinning thread's longest gap between two iterations while the "
          "tool ran;\nquiet gap: its longest gap in a window as long (up to "
          f"{QUIET_MAX_S:.0f} s) right after, no tool running:\nthe machine's own scheduling "
          "delay. A pause well above the quiet gap is the tool stopping the target.\n")
    tab = Table("threads / tool", 22, [("snapshot ms", 12, ".0f"), ("own cpu ms", 11, ".0f"),
                                       ("longest pause ms", 17, ".1f"), ("quiet gap ms", 13, ".1f"),
                                       ("pause - quiet", 14, "+.1f")])
    tab.header()
    own = {}
    for n in [int(x) for x in a.threads.split(",")]:
        shm = os.path.join(tmp, f"spin-{n}")
        w = workload([exe, "many", str(n), shm])
        fd = os.open(shm, os.O_RDWR)
        res = {}
        try:
            for _ in range(a.rounds):
                for name, argv in tools(w.pid, a.baseline).items():
                    res.setdefault(name, []).append(one(name, argv, fd))
        finally:
            os.close(fd)
            w.kill()
            w.wait()
        for name, rs in res.items():
            pause, quiet = med(rs, "pause") * 1e3, med(rs, "quiet") * 1e3
            tab.row(f"{n + 1} {name}", med(rs, "took") * 1e3, med(rs, "cpu") * 1e3, pause, quiet,
                    pause - quiet)
        for name in ("cprof-bpf", "baseline"):
            if name in res:
                own[f"{n + 1} {name}"] = res[name]
    names = [p for _, p in PHASES] + ["exec+exit"]
    print("\ncprof-bpf's own CPU time by phase (ms, medians; on a busy machine its wall time is "
          "mostly\nwaiting for a CPU: snapshot ms - own cpu ms):")
    ph = Table("threads / build", 16, [(p, max(len(p), 6), ".1f") for p in names] +
               [("total", 6, ".1f")])
    ph.header()
    for n, rs in own.items():
        ph.row(str(n), *[med(rs, p) for p in names], med(rs, "cpu") * 1e3)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
