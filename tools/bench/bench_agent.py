#!/usr/bin/env python3
"""The agent's own cost, side by side in one run: a CPU-bound workload (both cores busy) runs for
SECONDS with no profiler, under `cprof-bpf agent` at 19 Hz (the default) and 99 Hz, and under
`perf record -a -F 19 -g` (the system-wide tool users would pick). For each: the profiler's own
CPU (% of one core) while the workload runs (steady state, from /proc/PID/stat) and over its
whole run (start-up and shutdown included, from its rusage), its peak RSS, and the workload's
throughput relative to no profiler.

    tools/bench/bench_agent.py [--seconds 60] [--rounds 1]
"""
import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CPROF = os.path.join(ROOT, "build", "cprof-bpf")


def build(tmp):
    exe = os.path.join(tmp, "cpuburn")
    subprocess.run(["cc", "-O2", "-g", "-fno-omit-frame-pointer", "-pthread", "-o", exe,
                    os.path.join(ROOT, "tools", "bench", "cpuburn.c")], check=True)
    return exe


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
        prof = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(2.0)  # attached and in steady state
        c0 = cpu_ticks(prof.pid)
    t0 = time.monotonic()
    w = subprocess.run([exe, str(secs), "2"], capture_output=True, text=True, check=True)
    ops = int(re.search(r"ops (\d+)", w.stdout).group(1))
    if not prof:
        return ops, 0.0, 0.0, 0.0
    steady = (cpu_ticks(prof.pid) - c0) / os.sysconf("SC_CLK_TCK") / (time.monotonic() - t0)
    prof.send_signal(stop_sig)
    _, _, ru = os.wait4(prof.pid, 0)
    wall = time.monotonic() - t_start
    return (ops, steady * 100, (ru.ru_utime + ru.ru_stime) / wall * 100,
            ru.ru_maxrss / 1024.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--rounds", type=int, default=1)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="cprof-bench-agent-")
    exe = build(tmp)
    configs = [("none", None, None)]
    for hz in (19, 99):
        configs.append((f"cprof-bpf agent -F {hz}",
                        [CPROF, "agent", "-q", "-F", str(hz), "-o", os.path.join(tmp, f"a{hz}")],
                        signal.SIGTERM))
    if shutil.which("perf"):
        configs.append(("perf record -a -F 19 -g",
                        ["perf", "record", "-q", "-a", "-F", "19", "-g", "-o",
                         os.path.join(tmp, "perf.data")], signal.SIGINT))
    results = {name: [] for name, _, _ in configs}
    for _ in range(a.rounds):
        for name, argv, sig in configs:
            results[name].append(run_once(exe, a.seconds, argv, sig))
    base = statistics.median(r[0] for r in results["none"])
    print(f"CPU-bound workload, 2 threads on 2 cores, {a.seconds:g} s, "
          f"median of {a.rounds} round(s); the profilers profile the whole system")
    print(f"{'profiler':28} {'throughput':>10} {'CPU % steady':>12} {'CPU % whole':>12} "
          f"{'peak RSS MB':>12}")
    for name, _, _ in configs:
        rs = results[name]
        print(f"{name:28} {statistics.median(r[0] for r in rs) / base:10.3f} "
              f"{statistics.median(r[1] for r in rs):12.2f} "
              f"{statistics.median(r[2] for r in rs):12.2f} "
              f"{statistics.median(r[3] for r in rs):12.1f}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
