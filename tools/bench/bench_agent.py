#!/usr/bin/env python3
"""The agent's own cost, side by side in one run: a CPU-bound workload (both cores busy) runs for
SECONDS with no profiler, under `cprof-bpf agent` at 19 Hz (the default) and 99 Hz, and under
`perf record -a -F 19 -g` (the system-wide tool users would pick). For each: the profiler's own
CPU (% of one core) while the workload runs (steady state, from /proc/PID/stat) and over its
whole run (start-up and shutdown included, from its rusage), its peak RSS, and the workload's
throughput relative to no profiler.

    tools/bench/bench_agent.py [--seconds 60] [--rounds 1] [--quick]
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from common import BENCH, CPROF, Table, build, med, ops, parse, peer, ratio, reap, rounds, start


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def run_once(exe, secs, argv, stop_sig):
    """Starts the profiler (argv, or None), then the workload; stops the profiler after it.
    Returns (ops, steady cpu %, whole-run cpu %, peak rss MB)."""
    prof = None
    if argv:
        t_start = time.monotonic()
        prof = start(argv, stderr=subprocess.DEVNULL)
        time.sleep(2.0)  # attached and in steady state
        c0 = cpu_ticks(prof.pid)
    t0 = time.monotonic()
    w = subprocess.run([exe, str(secs), "2"], capture_output=True, text=True, check=True)
    if not prof:
        return ops(w.stdout), 0.0, 0.0, 0.0
    steady = (cpu_ticks(prof.pid) - c0) / os.sysconf("SC_CLK_TCK") / (time.monotonic() - t0)
    cpu, rss, _, _ = reap(prof, stop_sig)
    wall = time.monotonic() - t_start
    return ops(w.stdout), steady * 100, cpu / wall * 100, rss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--rounds", type=int, default=1)
    a = parse(ap, seconds=3, rounds=1)
    tmp = tempfile.mkdtemp(prefix="cprof-bench-agent-")
    exe = build(tmp, os.path.join(BENCH, "cpuburn.c"))
    configs = [("none", None, None)]
    for hz in (19, 99):
        configs.append((f"cprof-bpf agent -F {hz}",
                        [CPROF, "agent", "-q", "-F", str(hz), "-o", os.path.join(tmp, f"a{hz}")],
                        signal.SIGTERM))
    if peer("perf"):
        configs.append(("perf record -a -F 19 -g",
                        ["perf", "record", "-q", "-a", "-F", "19", "-g", "-o",
                         os.path.join(tmp, "perf.data")], signal.SIGINT))
    results = rounds(configs, a.rounds, lambda c: run_once(exe, a.seconds, c[1], c[2]))
    print(f"CPU-bound workload, 2 threads on 2 cores, {a.seconds:g} s, "
          f"median of {a.rounds} round(s); the profilers profile the whole system")
    t = Table("profiler", 28, [("throughput", 10, ".3f"), ("CPU % steady", 12, ".2f"),
                               ("CPU % whole", 12, ".2f"), ("peak RSS MB", 12, ".1f")])
    t.header()
    for name, _, _ in configs:
        rs = results[name]
        t.row(name, ratio(results, name, 0), med(rs, 1), med(rs, 2), med(rs, 3))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
