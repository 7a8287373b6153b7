#!/usr/bin/env python3
"""Heap profiling overhead, side by side in one run: malloc/free pairs per second of a
malloc-heavy workload (THREADS threads of 16-256 byte pairs, tools/bench/mallocstorm.c) with no
profiler, under cprof-bpf -t heap (default sampling, --heap-sample-bytes 1, and
--heap-alloc-only: no free probe, one trap a pair), under bcc's memleak-bpfcc -p PID, and the
floors: cprof-bpf's own probes running programs that return at once, and empty bpftrace probes
that only count (one uprobe on malloc; uprobe + uretprobe on malloc and uprobe on free). Throughput is measured only once the profiler is attached; the CPU
time the workload used in that window gives ns per pair that a loaded machine does not distort
as much as wall-clock throughput.

Then what one trap costs, from tools/bench/uprobe_cost.c (in this process, thread CPU time per
call, an empty program unless said otherwise), by attach method, program and probed instruction,
and so the best throughput any uprobe-based heap profiler can keep on this machine.

    tools/bench/bench_heap.py [--seconds 5] [--rounds 2] [--threads 2] [--no-traps] [--quick]
"""
import argparse
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from common import BENCH, CPROF, ENV, ROOT, Table, bcc, build, med, ops, parse, peer, rounds, \
    start, wait_for, workload


def build_uprobe_cost(tmp):
    """tools/bench/uprobe_cost.c and its BPF programs; None when they cannot be built."""
    src = os.path.join(ROOT, "tools", "bench")
    obj, exe = os.path.join(tmp, "uprobe_cost.bpf.o"), os.path.join(tmp, "uprobe_cost")
    try:
        subprocess.run(["clang", "-target", "bpf", "-g", "-O2", "-D__TARGET_ARCH_x86",
                        "-I", os.path.join(ROOT, "vmlinux", "x86"), "-c",
                        os.path.join(src, "uprobe_cost.bpf.c"), "-o", obj], check=True)
        subprocess.run(["cc", "-O2", "-g", "-pthread", "-I", os.path.join(ROOT, "user"), "-o", exe,
                        os.path.join(src, "uprobe_cost.c"), "-lbpf"], check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"trap costs skipped: uprobe_cost does not build ({e})")
        return None
    return exe, obj


# (spec for uprobe_cost, what it measures); see uprobe_cost.c for the spec syntax.
TRAPS = [
    ("push/none/perf/empty", "no probe (the loop itself)"),
    ("push/entry/perf/empty", "perf_event uprobe (bpf_program__attach_uprobe), pid filter"),
    ("push/entry/perf/empty/nopid", "perf_event uprobe, no pid filter"),
    ("push/entry/multi/empty", "uprobe_multi link, pid filter"),
    ("push/entry/multi/empty/nopid", "uprobe_multi link, no pid filter"),
    ("push/entry/session/empty", "uprobe_multi session, entry returns 1 (no return probe)"),
    ("push/entry/multi/sleepable", "uprobe_multi link, sleepable program"),
    ("push/entry/perf/percpu", "perf_event uprobe, per-CPU counter (bpftrace's count())"),
    ("push/entry/perf/shared", "perf_event uprobe, one shared counter"),
    ("push/entry,ret/perf/empty", "perf_event uprobe + uretprobe (uretprobe syscall)"),
    ("push/entry,ret/session/empty", "uprobe_multi session with its return"),
    ("nop5/entry/multi/empty", "on a nop5: optimized into a call (uprobe syscall, 6.18)"),
    ("test/entry/perf/empty", "on test %rdi,%rdi: single-stepped out of line"),
    ("malloc/none/perf/empty", "malloc+free pair, no probe"),
    ("malloc/malloc,free-push/session/empty", "pair: cprof-bpf's 2 traps, empty (session)"),
    ("malloc/malloc/session/percpu_countdown",
     "malloc session, cprof-bpf's unsampled path (per-CPU countdown)"),
    ("malloc/malloc/session/task_countdown", "malloc session, countdown in task storage"),
    ("malloc/free-push/multi/filter_miss", "free, cprof-bpf's untracked path (filter)"),
    ("malloc/free-push/multi/hash_miss", "free, a failed lookup in a 262144-entry hash"),
]


def trap_costs(tool, threads, n, calls):
    """ns per call (thread CPU time, median of n rounds) of each TRAPS spec."""
    exe, obj = tool
    got = {spec: [] for spec, _ in TRAPS}
    for _ in range(n):
        r = subprocess.run([exe, "-t", str(threads), "-n", str(calls), obj] +
                           [spec for spec, _ in TRAPS], capture_output=True, text=True)
        for line in r.stdout.splitlines():
            f = line.split()
            if len(f) >= 7 and f[1] == "calls/s":
                got[f[0]].append(float(f[6]))
    return {spec: med(v) for spec, v in got.items() if v}


def print_traps(costs, threads):
    if not costs:
        return
    print(f"\nOne trap, ns of thread CPU time per call ({threads} thread(s), empty program "
          f"unless said otherwise; tools/bench/uprobe_cost.c):")
    loop = costs.get("push/none/perf/empty", 0)
    pair = costs.get("malloc/none/perf/empty", 0)
    for spec, what in TRAPS:
        if spec not in costs:
            print(f"  {'error':>8}  {what}")
            continue
        base = pair if spec.startswith("malloc") else loop
        extra = "" if "/none/" in spec else f"  (+{costs[spec] - base:.0f})"
        print(f"  {costs[spec]:8.1f}{extra:9}  {what}")


def prog_ids(pid):
    """Ids of the BPF programs process pid holds (its fds' fdinfo)."""
    ids = set()
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                for line in f:
                    if line.startswith("prog_id:"):
                        ids.add(int(line.split()[1]))
        except OSError:
            pass
    return ids


def bpf_work(exe, threads):
    """ns a run of cprof-bpf's malloc and free programs take on an unsampled call, from the
    kernel's own accounting (kernel.bpf_stats_enabled, on for one second, then restored): the
    default programs' time per run minus that of the programs emptied, which is what the
    accounting itself costs. {config: {program: ns}}; {} when bpftool cannot say."""
    try:
        with open("/proc/sys/kernel/bpf_stats_enabled") as f:
            was = f.read().strip()
    except OSError:
        return {}
    got = {}
    for name, env in (("default", {}), ("empty", {"CPROF_BENCH_EMPTY_PROBES": "1"})):
        w = workload([exe, "4", str(threads), "now"])
        prof = None
        try:
            ENV.update(env)
            prof = start([CPROF, "-v", "-t", "heap", "-p", str(w.pid), "-d", "3", "-o",
                          "/dev/null", "-f", "top"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
            for k in env:
                ENV.pop(k, None)
            if not wait_for(prof.stdout, "profiling", 120)[0]:
                raise RuntimeError("cprof-bpf did not attach")
            subprocess.run(["sysctl", "-qw", "kernel.bpf_stats_enabled=1"], check=True)
            time.sleep(1)
            out = subprocess.run(["bpftool", "prog", "show", "--json"], capture_output=True,
                                 text=True).stdout
            ids = prog_ids(prof.pid)
        except (OSError, RuntimeError, subprocess.CalledProcessError):
            return {}
        finally:
            subprocess.run(["sysctl", "-qw", f"kernel.bpf_stats_enabled={was}"])
            for proc in (prof, w):
                if proc and proc.poll() is None:
                    proc.kill()
                if proc:
                    proc.wait()
        got[name] = {}
        for p in json.loads(out or "[]"):
            if p.get("id") not in ids:
                continue  # another engineer's profiler
            if p.get("run_cnt") and p["name"] in ("heap_malloc_session", "heap_free"):
                got[name][p["name"]] = p["run_time_ns"] / p["run_cnt"]
    return got


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
    """Starts the storm, attaches the profiler, measures secs; returns (pairs per second, CPU
    ns the storm used per pair)."""
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
    n = ops(out)
    cpu = float(re.search(r"cpu_ns (\d+)", out).group(1))
    return n / secs, cpu / max(n, 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-traps", action="store_true", help="skip the trap cost table")
    a = parse(ap, seconds=1, rounds=1)
    tmp = tempfile.mkdtemp(prefix="cprof-bench-")
    exe = build(tmp, os.path.join(BENCH, "mallocstorm.c"))
    tool = None if a.no_traps else build_uprobe_cost(tmp)

    def cprof(*extra):
        return lambda pid, d: ([CPROF, "-v", "-t", "heap", "-p", str(pid), *extra, "-o",
                                os.path.join(d, "heap.pb.gz")], "profiling")

    def cprof_empty(pid, d):
        ENV["CPROF_BENCH_EMPTY_PROBES"] = "1"
        return cprof()(pid, d)

    configs = [("none", None),
               ("cprof-bpf -t heap", cprof()),
               ("cprof-bpf -t heap, sample-bytes 1", cprof("--heap-sample-bytes", "1")),
               ("cprof-bpf -t heap --heap-alloc-only", cprof("--heap-alloc-only")),
               ("cprof-bpf's probes, empty programs", cprof_empty)]
    if peer("bpftrace"):
        def bpftrace(with_ret_free):
            def config(pid, d):
                libc = libc_of(pid)
                prog = f"uprobe:{libc}:malloc {{ @m = count(); }} "
                if with_ret_free:
                    prog += (f"uretprobe:{libc}:malloc {{ @r = count(); }} "
                             f"uprobe:{libc}:free {{ @f = count(); }}")
                return ["bpftrace", "-p", str(pid), "-e", prog], "Attaching"
            return config
        configs.append(("bpftrace: uprobe malloc, count", bpftrace(False)))
        configs.append(("bpftrace: +uretprobe, +free, count", bpftrace(True)))
    if bcc("memleak-bpfcc"):
        configs.append(("memleak-bpfcc -p", lambda pid, d: (
            ["memleak-bpfcc", "-p", str(pid), "3600"], "Attaching to pid")))
    results = rounds(configs, a.rounds, lambda c: run_once(exe, a.seconds, a.threads, c[1], tmp))
    work = bpf_work(exe, a.threads) if shutil.which("bpftool") else {}
    calls = 30000 if a.quick else 300000
    costs = trap_costs(tool, 1, a.rounds, calls) if tool else {}
    two = trap_costs(tool, a.threads, a.rounds, calls) if tool and a.threads > 1 else {}
    base, base_cpu = med(results["none"], 0), med(results["none"], 1)
    print(f"malloc/free storm, {a.threads} threads of 16-256 B pairs, {a.seconds:g} s measured "
          f"after attach, median of {a.rounds} rounds")
    t = Table("profiler", 36, [("pairs/s", 12, ".0f"), ("throughput", 10, ".4f"),
                               ("ns added/pair", 14, ".0f"), ("CPU ns/pair", 12, ".1f"),
                               ("added", 8, ".1f")])
    t.header()
    for name, _ in configs:
        pairs, cpu = med(results[name], 0), med(results[name], 1)
        # Per thread: each pair takes threads/pairs seconds.
        added = (a.threads / pairs - a.threads / base) * 1e9
        t.row(name, pairs, pairs / base, added, cpu, cpu - base_cpu)
    print("(ns added/pair: wall time per pair per thread over none's; CPU ns/pair: the "
          "workload's CPU time per pair, which a busy machine distorts less)")
    if work.get("default") and work.get("empty"):
        print("\ncprof-bpf's BPF work on an unsampled call (kernel.bpf_stats_enabled: ns a run, "
              "minus the emptied program's, which is the accounting's own cost):")
        for prog in ("heap_malloc_session", "heap_free"):
            d, e = work["default"].get(prog), work["empty"].get(prog)
            if d and e:
                print(f"  {prog:22} {d:7.1f} - {e:5.1f} = {d - e:6.1f} ns")
    if costs:
        print_traps(costs, 1)
        if two:
            print_traps(two, a.threads)
        trap = costs.get("push/entry/session/empty", 0) - costs.get("push/none/perf/empty", 0)
        pair = costs.get("malloc/none/perf/empty")
        two_traps = costs.get("malloc/malloc,free-push/session/empty")
        if trap > 0 and pair and two_traps:
            traps = two_traps - pair
            print(f"\nFloor: an unsampled malloc/free pair takes 2 traps (malloc's entry, free's), "
                  f"{traps:.0f} ns with empty programs (uprobe_cost). Against the storm's "
                  f"{base_cpu:.1f} ns a pair, no uprobe-based heap profiler keeps more than "
                  f"{base_cpu / (base_cpu + traps):.4f} of it here; with one trap a pair "
                  f"({trap:.0f} ns, the cheapest method) {base_cpu / (base_cpu + trap):.4f}.")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
