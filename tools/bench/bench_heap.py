#!/usr/bin/env python3
"""Heap profiling overhead, side by side in one run: malloc/free pairs per second of a
malloc-heavy workload (THREADS threads of 16-256 byte pairs, tools/bench/mallocstorm.c) with no
profiler, under cprof-bpf -t heap (default sampling, and --heap-sample-bytes 1), under bcc's
memleak-bpfcc -p PID, and under empty bpftrace probes (uprobe + uretprobe on malloc, uprobe on
free, that only count) as the floor. Throughput is measured only once the profiler is attached.

    tools/bench/bench_heap.py [--seconds 5] [--rounds 2] [--threads 2]
"""
import argparse
import os
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CPROF = os.path.join(ROOT, "build", "cprof-bpf")
ENV = dict(os.environ)


def bcc_headers():
    """bcc needs kernel headers this kernel lacks: tools/bench/bcc-headers.sh makes a tree."""
    r = subprocess.run(["bash", os.path.join(ROOT, "tools", "bench", "bcc-headers.sh")],
                       capture_output=True, text=True)
    if r.returncode:
        print(f"memleak-bpfcc skipped: no kernel headers ({r.stderr.strip()[-200:]})")
        return False
    ENV["BCC_KERNEL_SOURCE"] = r.stdout.strip()
    return True


def build(tmp):
    exe = os.path.join(tmp, "mallocstorm")
    subprocess.run(["cc", "-O2", "-g", "-fno-omit-frame-pointer", "-pthread", "-o", exe,
                    os.path.join(ROOT, "tools", "bench", "mallocstorm.c")], check=True)
    return exe


def libc_of(pid):
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            path = line.split()[-1]
            if re.search(r"/libc\.so\.6$|/libc-[0-9.]+\.so$", path):
                return path
    raise RuntimeError("no libc in the workload's mappings")


def wait_ready(prof, marker, timeout=120):
    """Reads the profiler's merged output until marker appears (it has attached)."""
    seen, end = "", time.time() + timeout
    while marker not in seen and time.time() < end and prof.poll() is None:
        if select.select([prof.stdout], [], [], 0.5)[0]:
            line = prof.stdout.readline()
            if not line:
                break
            seen += line
    if marker not in seen:
        raise RuntimeError(f"profiler did not attach: {seen[-400:]}")


def drain(prof):
    """Keeps reading the profiler's output so it never blocks on a full pipe."""
    while select.select([prof.stdout], [], [], 0)[0]:
        if not os.read(prof.stdout.fileno(), 65536):
            break


def run_once(exe, secs, threads, config, tmp):
    """Starts the storm, attaches the profiler, measures secs; returns pairs per second."""
    w = subprocess.Popen([exe, str(secs), str(threads)] + ([] if config else ["now"]),
                         stdout=subprocess.PIPE, text=True)
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
    assert w.stdout.readline().startswith("ready")
    prof = None
    if config:
        argv, marker = config(w.pid, tmp)
        prof = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=dict(ENV))
        keep(prof)
        ENV.pop("CPROF_BENCH_EMPTY_PROBES", None)
        wait_ready(prof, marker)
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
    return int(re.search(r"ops (\d+)", out).group(1)) / secs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="cprof-bench-")
    exe = build(tmp)

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
    if shutil.which("bpftrace"):
        def empty(pid, d):
            libc = libc_of(pid)
            prog = (f"uprobe:{libc}:malloc {{ @m = count(); }} "
                    f"uretprobe:{libc}:malloc {{ @r = count(); }} "
                    f"uprobe:{libc}:free {{ @f = count(); }}")
            return ["bpftrace", "-p", str(pid), "-e", prog], "Attaching"
        configs.append(("bpftrace empty probes (floor)", empty))
    if shutil.which("memleak-bpfcc") and bcc_headers():
        configs.append(("memleak-bpfcc -p", lambda pid, d: (
            ["memleak-bpfcc", "-p", str(pid), "3600"], "Attaching to pid")))
    results = {name: [] for name, _ in configs}
    for _ in range(a.rounds):
        for name, config in configs:
            results[name].append(run_once(exe, a.seconds, a.threads, config, tmp))
    base = statistics.median(results["none"])
    print(f"malloc/free storm, {a.threads} threads of 16-256 B pairs, {a.seconds:g} s measured "
          f"after attach, median of {a.rounds} rounds")
    print(f"{'profiler':36} {'pairs/s':>12} {'throughput':>10} {'ns added/pair':>14}")
    for name, _ in configs:
        ops = statistics.median(results[name])
        # Per thread: each pair takes threads/ops seconds.
        added = (a.threads / ops - a.threads / base) * 1e9
        print(f"{name:36} {ops:12.0f} {ops / base:10.4f} {added:14.0f}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
