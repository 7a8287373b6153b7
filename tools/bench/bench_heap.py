#!/usr/bin/env python3
"""Heap profiling overhead, side by side in one run: malloc/free pairs per second of a
malloc-heavy workload (THREADS threads of 16-256 byte pairs, tools/bench/mallocstorm.c) with no
profiler, under cprof-bpf -t heap (default sampling, and --heap-sample-bytes 1), under bcc's
memleak-bpfcc -p PID, and under empty bpftrace probes (uprobe + uretprobe on malloc, uprobe on
free, that only count) as the floor. Throughput is measured only once the profiler is attached.

    tools/bench/bench_heap.py [--seconds 5] [--rounds 2] [--threads 2] [--quick]
"""
import argparse
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from common import BENCH, CPROF, ENV, Table, bcc, build, med, ops, parse, peer, rounds, start, \
    wait_for, workload


def libc_of(pid):
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            path = line.split()[-1]
            if re.search(r"/libc\.so\.6$|/libc-[0-9.]+\.so$", path):
                return path
    raise RuntimeError("no libc in the workload's mappings")


def drain(prof):
    """Keeps reading the profiler's output so it never blocks on a full pipe."""
    while select.select([prof.stdout], [], [], 0)[0]:
        if not os.read(prof.stdout.fileno(), 65536):
            break


def run_once(exe, secs, threads, config, tmp):
    """Starts the storm, attaches the profiler, measures secs; returns pairs per second."""
    w = workload([exe, str(secs), str(threads)] + ([] if config else ["now"]))
    started = [w]
    try:
        return measure(w, secs, config, tmp, started.append)
    finally:
        # Whatever happened (a profiler that never attached, Ctrl-C), leave nothing running.
        for proc in started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def measure(w, secs, config, tmp, keep):
    prof = None
    if config:
        argv, marker = config(w.pid, tmp)
        prof = start(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        keep(prof)
        ENV.pop("CPROF_BENCH_EMPTY_PROBES", None)
        attached, seen = wait_for(prof.stdout, marker, 120)
        if not attached:
            raise RuntimeError(f"profiler did not attach: {seen[-400:]}")
        time.sleep(0.5)
        w.send_signal(signal.SIGUSR1)
    end = time.time() + secs + 60
    out = ""
    while w.poll() is None and time.time() < end:
        if prof:
            drain(prof)
        time.sleep(0.2)
    out = w.stdout.read()
    if prof:
        prof.send_signal(signal.SIGINT)
        try:
            prof.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            prof.kill()
            prof.communicate()
    if w.poll() is None:
        w.kill()
    w.wait()
    return ops(out) / secs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    a = parse(ap, seconds=1, rounds=1)
    tmp = tempfile.mkdtemp(prefix="cprof-bench-")
    exe = build(tmp, os.path.join(BENCH, "mallocstorm.c"))

    def cprof(*extra):
        return lambda pid, d: ([CPROF, "-v", "-t", "heap", "-p", str(pid), *extra, "-o",
                                os.path.join(d, "heap.pb.gz")], "profiling")

    def cprof_empty(pid, d):
        ENV["CPROF_BENCH_EMPTY_PROBES"] = "1"
        return cprof()(pid, d)

    configs = [("none", None),
               ("cprof-bpf -t heap", cprof()),
               ("cprof-bpf -t heap, sample-bytes 1", cprof("--heap-sample-bytes", "1")),
               ("cprof-bpf probes, empty programs", cprof_empty)]
    if peer("bpftrace"):
        def empty(pid, d):
            libc = libc_of(pid)
            prog = (f"uprobe:{libc}:malloc {{ @m = count(); }} "
                    f"uretprobe:{libc}:malloc {{ @r = count(); }} "
                    f"uprobe:{libc}:free {{ @f = count(); }}")
            return ["bpftrace", "-p", str(pid), "-e", prog], "Attaching"
        configs.append(("bpftrace empty probes (floor)", empty))
    if bcc("memleak-bpfcc"):
        configs.append(("memleak-bpfcc -p", lambda pid, d: (
            ["memleak-bpfcc", "-p", str(pid), "3600"], "Attaching to pid")))
    results = rounds(configs, a.rounds, lambda c: run_once(exe, a.seconds, a.threads, c[1], tmp))
    base = med(results["none"])
    print(f"malloc/free storm, {a.threads} threads of 16-256 B pairs, {a.seconds:g} s measured "
          f"after attach, median of {a.rounds} rounds")
    t = Table("profiler", 36, [("pairs/s", 12, ".0f"), ("throughput", 10, ".4f"),
                               ("ns added/pair", 14, ".0f")])
    t.header()
    for name, _ in configs:
        pairs = med(results[name])
        # Per thread: each pair takes threads/pairs seconds.
        added = (a.threads / pairs - a.threads / base) * 1e9
        t.row(name, pairs, pairs / base, added)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
