#!/usr/bin/env python3
"""The threads snapshot beside the tools people run for "every thread's stack now": for a process
of N sleeping threads plus one spinning thread (tests/fixtures/threadpark.c `many N SHM`), the
wall time of `cprof-bpf -t threads -p PID`, `gdb -p PID -batch -ex 'thread apply all bt'` and
`eu-stack -p PID`, and the longest gap the spinning thread saw between two of its iterations
while each ran (the longest pause a target thread saw; ptrace tools stop every thread for their
whole walk). Rounds interleave the tools; medians are printed.

    tools/bench/bench_threads.py [--threads 10,100,1000] [--rounds 3] [--quick]
"""
import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

from common import CPROF, FIXTURES, Table, build, med, parse, workload


def tools(pid):
    t = {"cprof-bpf": [CPROF, "-t", "threads", "-p", str(pid), "-f", "text", "-o", "-"]}
    if shutil.which("gdb"):
        t["gdb"] = ["gdb", "-p", str(pid), "-batch", "-nx", "-ex", "thread apply all bt"]
    if shutil.which("eu-stack"):
        t["eu-stack"] = ["eu-stack", "-p", str(pid)]
    return t


def one(argv, fd):
    """(seconds the tool took, longest spinner gap in s while it ran)."""
    time.sleep(0.05)
    os.pwrite(fd, struct.pack("<Q", 0), 16)  # reset the longest gap
    time.sleep(0.05)  # a gap of the quiet process, for reference
    quiet = struct.unpack("<Q", os.pread(fd, 8, 16))[0] / 1e9
    os.pwrite(fd, struct.pack("<Q", 0), 16)
    t0 = time.monotonic()
    r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
    took = time.monotonic() - t0
    gap = struct.unpack("<Q", os.pread(fd, 8, 16))[0] / 1e9
    if r.returncode:
        raise RuntimeError(f"{argv[0]} failed ({r.returncode})")
    return took, gap, quiet


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", default="10,100,1000")
    ap.add_argument("--rounds", type=int, default=3)
    a = parse(ap, rounds=1, threads="10,100")
    tmp = tempfile.mkdtemp(prefix="bench-threads-")
    exe = build(tmp, os.path.join(FIXTURES, "threadpark.c"))
    tab = Table("threads / tool", 22, [("snapshot ms", 12, ".0f"), ("longest pause ms", 17, ".1f"),
                                       ("quiet gap ms", 13, ".1f")])
    tab.header()
    for n in [int(x) for x in a.threads.split(",")]:
        shm = os.path.join(tmp, f"spin-{n}")
        w = workload([exe, "many", str(n), shm])
        fd = os.open(shm, os.O_RDWR)
        res = {}
        try:
            for _ in range(a.rounds):
                for name, argv in tools(w.pid).items():
                    res.setdefault(name, []).append(one(argv, fd))
        finally:
            os.close(fd)
            w.kill()
            w.wait()
        for name, rs in res.items():
            tab.row(f"{n + 1} {name}", med(rs, 0) * 1e3, med(rs, 1) * 1e3, med(rs, 2) * 1e3)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
