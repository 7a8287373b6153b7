#!/usr/bin/env python3
"""CPU profiling overhead, side by side in one run: throughput of a CPU-bound workload (both
cores busy) with no profiler, under cprof-bpf, perf record -g and bpftrace at the same rate, plus
each profiler's own CPU time, its RSS while sampling (halfway through) and at its peak (VmHWM,
file-backed pages included), and the time from the end of sampling to the file.

    tools/bench/bench_cpu.py [--seconds 10] [--rounds 2] [--freq 99] [--quick]
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from common import BENCH, CPROF, Table, bcc, build, med, ops, parse, peer, ratio, reap, rounds, \
    start


def rss_mb(pid):
    """VmRSS of pid in MB, 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024.0
    except (OSError, AttributeError):
        return 0.0


def run_once(exe, secs, profiler, tmp):
    """Starts the workload, attaches profiler(pid) -> argv; returns (ops, cpu_s, peak_rss_mb,
    tail_s, sampling_rss_mb)."""
    w = subprocess.Popen([exe, str(secs)], stdout=subprocess.PIPE, text=True)
    prof = None
    if profiler:
        argv = profiler(w.pid, tmp)
        prof = start(argv)
        time.sleep(0.05)
    sampling = []
    timer = threading.Timer(secs / 2, lambda: sampling.append(rss_mb(prof.pid))) if prof else None
    if timer:
        timer.start()
    out, _ = w.communicate()
    if timer:
        timer.join()
    t_exit = time.monotonic()
    if not prof:
        return ops(out), 0.0, 0.0, 0.0, 0.0
    # bpftrace and bcc do not stop with their target: Ctrl-C prints the result.
    stop = signal.SIGINT if "bpftrace" in argv[0] or "bpfcc" in argv[0] else None
    cpu, rss, _, _ = reap(prof, stop)
    return ops(out), cpu, rss, time.monotonic() - t_exit, sampling[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--freq", type=int, default=99)
    a = parse(ap, seconds=2, rounds=1)
    tmp = tempfile.mkdtemp(prefix="cprof-bench-")
    exe = build(tmp, os.path.join(BENCH, "cpuburn.c"))
    f = str(a.freq)
    configs = [("none", None),
               (f"cprof-bpf -F {f}", lambda pid, d: [CPROF, "-q", "-p", str(pid), "-F", f, "-o",
                                                      os.path.join(d, "c.pb.gz")])]
    if peer("perf"):
        configs.append((f"perf record -F {f} -g", lambda pid, d: [
            "perf", "record", "-q", "-F", f, "-g", "-p", str(pid), "-o",
            os.path.join(d, "perf.data")]))
    if peer("bpftrace"):
        configs.append((f"bpftrace profile:hz:{f}", lambda pid, d: [
            "bpftrace", "-e", f"profile:hz:{f} /pid == {pid}/ {{ @[ustack, kstack] = count(); }}"]))
    if bcc("profile-bpfcc"):
        configs.append((f"profile-bpfcc -F {f}", lambda pid, d: [
            "profile-bpfcc", "-F", f, "-p", str(pid), "-f", "3600"]))
    results = rounds(configs, a.rounds, lambda c: run_once(exe, a.seconds, c[1], tmp))
    print(f"CPU-bound workload, 2 threads, {a.seconds:g} s, median of {a.rounds} rounds")
    t = Table("profiler", 28, [("throughput", 10, ".3f"), ("own CPU s", 10, ".2f"),
                               ("RSS sampling MB", 16, ".1f"), ("peak RSS MB", 12, ".1f"),
                               ("end->file s", 12, ".2f")])
    t.header()
    for name, _ in configs:
        rs = results[name]
        t.row(name, ratio(results, name, 0), med(rs, 1), med(rs, 4), med(rs, 2), med(rs, 3))
    shutil.rmtree(tmp, ignore_errors=True)

if __name__ == "__main__":
    sys.exit(main())
