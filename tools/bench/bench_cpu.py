#!/usr/bin/env python3
"""CPU profiling overhead, side by side in one run: throughput of a CPU-bound workload (both
cores busy) with no profiler, under cprof-bpf, perf record -g and bpftrace at the same rate, plus
each profiler's own CPU time, its RSS while sampling (halfway through) and at its peak (VmHWM,
file-backed pages included), and the time from the end of sampling to the file.

    tools/bench/bench_cpu.py [--seconds 10] [--rounds 2] [--freq 99]
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CPROF = os.path.join(ROOT, "build", "cprof-bpf")


ENV = dict(os.environ)


def bcc_headers():
    """bcc needs kernel headers this kernel lacks: tools/bench/bcc-headers.sh makes a tree."""
    r = subprocess.run(["bash", os.path.join(ROOT, "tools", "bench", "bcc-headers.sh")],
                       capture_output=True, text=True)
    if r.returncode:
        print(f"profile-bpfcc skipped: no kernel headers ({r.stderr.strip()[-200:]})")
        return False
    ENV["BCC_KERNEL_SOURCE"] = r.stdout.strip()
    return True


def build(tmp):
    exe = os.path.join(tmp, "cpuburn")
    subprocess.run(["cc", "-O2", "-g", "-fno-omit-frame-pointer", "-pthread", "-o", exe,
                    os.path.join(ROOT, "tools", "bench", "cpuburn.c")], check=True)
    return exe


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
        prof = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, env=ENV)
        time.sleep(0.05)
    sampling = []
    timer = threading.Timer(secs / 2, lambda: sampling.append(rss_mb(prof.pid))) if prof else None
    if timer:
        timer.start()
    out, _ = w.communicate()
    if timer:
        timer.join()
    t_exit = time.monotonic()
    ops = int(re.search(r"ops (\d+)", out).group(1))
    if not prof:
        return ops, 0.0, 0.0, 0.0, 0.0
    if "bpftrace" in argv[0] or "bpfcc" in argv[0]:
        prof.send_signal(2)  # these do not stop with their target: Ctrl-C prints the result
    _, status, ru = os.wait4(prof.pid, 0)
    tail = time.monotonic() - t_exit
    prof.stderr.read()
    prof.returncode = status
    return ops, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024.0, tail, sampling[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--freq", type=int, default=99)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="cprof-bench-")
    exe = build(tmp)
    f = str(a.freq)
    configs = [("none", None),
               (f"cprof-bpf -F {f}", lambda pid, d: [CPROF, "-q", "-p", str(pid), "-F", f, "-o",
                                                      os.path.join(d, "c.pb.gz")])]
    if shutil.which("perf"):
        configs.append((f"perf record -F {f} -g", lambda pid, d: [
            "perf", "record", "-q", "-F", f, "-g", "-p", str(pid), "-o",
            os.path.join(d, "perf.data")]))
    if shutil.which("bpftrace"):
        configs.append((f"bpftrace profile:hz:{f}", lambda pid, d: [
            "bpftrace", "-e", f"profile:hz:{f} /pid == {pid}/ {{ @[ustack, kstack] = count(); }}"]))
    if shutil.which("profile-bpfcc") and bcc_headers():
        configs.append((f"profile-bpfcc -F {f}", lambda pid, d: [
            "profile-bpfcc", "-F", f, "-p", str(pid), "-f", "3600"]))
    results = {name: [] for name, _ in configs}
    for _ in range(a.rounds):
        for name, prof in configs:
            results[name].append(run_once(exe, a.seconds, prof, tmp))
    base = statistics.median(r[0] for r in results["none"])
    print(f"CPU-bound workload, 2 threads, {a.seconds:g} s, median of {a.rounds} rounds")
    print(f"{'profiler':28} {'throughput':>10} {'own CPU s':>10} {'RSS sampling MB':>16} "
          f"{'peak RSS MB':>12} {'end->file s':>12}")
    for name, _ in configs:
        rs = results[name]
        ops = statistics.median(r[0] for r in rs)
        print(f"{name:28} {ops / base:10.3f} {statistics.median(r[1] for r in rs):10.2f} "
              f"{statistics.median(r[4] for r in rs):16.1f} "
              f"{statistics.median(r[2] for r in rs):12.1f} "
              f"{statistics.median(r[3] for r in rs):12.2f}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
