#!/usr/bin/env python3
"""User-stack unwinding without frame pointers, side by side in one run: a workload built
-O2 -fomit-frame-pointer whose hot path runs through Debian's libc (qsort calling a comparator),
profiled by cprof-bpf (--unwind=fp and auto), `perf record --call-graph fp` and
`perf record --call-graph dwarf` at the same rate. For each: throughput against no profiler,
the profiler's own CPU time, the share of samples whose stack reaches main, and for cprof-bpf
the BPF cost per sample (bpf_stats: run_time_ns / run_cnt). Then table memory per MiB of code
for a few large libraries.

    tools/bench/bench_unwind.py [--seconds 8] [--rounds 2] [--freq 499] [--quick]
"""
import argparse
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from common import CPROF, FIXTURES, Table, build, med, ops, parse, peer, ratio, reap, rounds, \
    start, workload

STATS = "/proc/sys/kernel/bpf_stats_enabled"


def bpf_cost(owner_pid):
    """(run_time_ns, run_cnt) summed over the BPF programs owner_pid holds (fdinfo prog_id)."""
    ids = set()
    for fdinfo in glob.glob(f"/proc/{owner_pid}/fdinfo/*"):
        try:
            m = re.search(r"^prog_id:\s+(\d+)", open(fdinfo).read(), re.M)
        except OSError:
            continue
        if m:
            ids.add(m.group(1))
    ns = cnt = 0
    for i in ids:
        r = subprocess.run(["bpftool", "-j", "prog", "show", "id", i], capture_output=True,
                           text=True)
        p = json.loads(r.stdout or "{}")
        if p.get("name") == "on_sample":
            ns += p.get("run_time_ns", 0)
            cnt += p.get("run_cnt", 0)
    return ns, cnt


def cprof_reach(path):
    total = ok = 0
    with open(path) as f:
        for line in f:
            stack, _, n = line.rstrip().rpartition(" ")
            frames = stack.split(";")
            total += int(n)
            if "main" in frames:
                ok += int(n)
    return ok / total if total else 0.0


def perf_reach(data):
    out = subprocess.run(["perf", "script", "-i", data, "-F", "ip,sym"], capture_output=True,
                         text=True).stdout
    total = ok = 0
    for block in out.split("\n\n"):
        syms = [ln.split()[1] for ln in block.strip().splitlines() if len(ln.split()) >= 2]
        if not syms:
            continue
        total += 1
        ok += "main" in syms
    return ok / total if total else 0.0


def run_once(exe, secs, cfg, tmp):
    """Returns dict(ops, cpu, reach, ns_per_sample)."""
    w = workload([exe, str(secs)])
    res = {"cpu": 0.0, "reach": None, "ns": None, "ns_target": None, "out_mb": None}
    prof, cost = None, {}
    if cfg:
        argv, kind = cfg(w.pid, tmp, secs)
        prof = start(argv)
        if kind.startswith("cprof"):
            def sample_cost():  # read while the programs are still loaded
                time.sleep(max(secs - 1.0, 0.5))
                cost["v"] = bpf_cost(prof.pid)
            t = threading.Thread(target=sample_cost)
            t.start()
    out, _ = w.communicate()
    res["ops"] = ops(out)
    if not prof:
        return res
    res["cpu"], _, _, err = reap(prof, signal.SIGINT if kind == "perf" else None)
    if kind.startswith("cprof"):
        t.join()
        ns, cnt = cost.get("v", (0, 0))
        res["ns"] = ns / cnt if cnt else None
        m = re.search(r"distinct stacks, (\d+) samples", err)
        if m and int(m.group(1)):
            # All of the program's time over the target's samples: other processes' samples
            # (filtered out at once) are charged to the target, an upper bound.
            res["ns_target"] = ns / int(m.group(1))
        res["reach"] = cprof_reach(os.path.join(tmp, "c.folded"))
        res["out_mb"] = os.path.getsize(os.path.join(tmp, "c.folded")) / 2**20
        m = re.search(r"unwind: (\d+) tables, (\d+) rows, (\d+) bytes for (\d+) bytes", err)
        if m:
            res["table"] = (int(m.group(3)), int(m.group(4)))
    else:
        res["out_mb"] = os.path.getsize(os.path.join(tmp, "perf.data")) / 2**20
        t0 = time.monotonic()
        res["reach"] = perf_reach(os.path.join(tmp, "perf.data"))
        res["cpu_report"] = time.monotonic() - t0
    return res


def table_memory():
    libs = ["/lib/x86_64-linux-gnu/libc.so.6", "/lib/x86_64-linux-gnu/libstdc++.so.6",
            "/lib/x86_64-linux-gnu/libcrypto.so.3", shutil.which("python3.11") or "",
            *sorted(glob.glob("/usr/lib/x86_64-linux-gnu/libLLVM-1*.so.1"))[:1]]
    rows = []
    for lib in libs:
        if not lib or not os.path.exists(lib):
            continue
        t0 = time.monotonic()
        r = subprocess.run([CPROF, "unwind-table", os.path.realpath(lib)], capture_output=True,
                           text=True)
        dt = time.monotonic() - t0
        m = re.search(r"rows (\d+) bytes (\d+) text (\d+)", r.stderr)
        if m:
            n, b, text = map(int, m.groups())
            rows.append((os.path.basename(lib), text / 2**20, n, b / (text / 2**20) / 1024, dt))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--freq", type=int, default=499)
    a = parse(ap, seconds=2, rounds=1)
    tmp = tempfile.mkdtemp(prefix="cprof-bench-unw-")
    exe = build(tmp, os.path.join(FIXTURES, "unwind_qsort.c"), ["-fomit-frame-pointer"])
    f = str(a.freq)

    def cprof(mode):
        return lambda pid, d, s: ([CPROF, "-v", "-p", str(pid), "-F", f, "--unwind",
                                   mode, "-f", "folded", "-o", os.path.join(d, "c.folded")],
                                  "cprof")

    def perf(cg):
        return lambda pid, d, s: (["perf", "record", "-q", "-F", f, "--call-graph", cg, "-p",
                                   str(pid), "-o", os.path.join(d, "perf.data")], "perf")

    configs = [("none", None), (f"cprof-bpf --unwind=fp -F {f}", cprof("fp")),
               (f"cprof-bpf --unwind=auto -F {f}", cprof("auto"))]
    if peer("perf"):
        configs += [(f"perf --call-graph fp -F {f}", perf("fp")),
                    (f"perf --call-graph dwarf -F {f}", perf("dwarf"))]
    old_stats = open(STATS).read().strip()
    with open(STATS, "w") as fh:
        fh.write("1")
    try:
        results = rounds(configs, a.rounds, lambda c: run_once(exe, a.seconds, c[1], tmp))
    finally:
        with open(STATS, "w") as fh:
            fh.write(old_stats)
    print(f"no-frame-pointer qsort workload, 1 thread, {a.seconds:g} s, median of {a.rounds} "
          f"rounds")
    tab = Table("profiler", 32, [("throughput", 10, ".3f"), ("own CPU s", 10, ".2f"),
                                 ("report s", 9, ".2f"), ("output MB", 10, ".1f"),
                                 ("reach main", 11, ".3f"), ("BPF ns/run", 11, ".0f"),
                                 ("ns/sample", 10, ".0f")])
    tab.header()
    for name, _ in configs:
        rs = results[name]
        tab.row(name, ratio(results, name, "ops"),
              *(med(rs, k) for k in ("cpu", "cpu_report", "out_mb", "reach", "ns", "ns_target")))
    print("report s: perf script's time to turn perf.data into stacks (perf dwarf unwinds "
          "there);\nBPF ns/run: bpf_stats run_time_ns / run_cnt of on_sample (every CPU "
          "sample); ns/sample: the same time over the target's samples")
    for name, _ in configs:
        t = [r["table"] for r in results[name] if r.get("table") and r["table"][1]]
        if t:
            b, text = t[0]
            print(f"{name}: tables {b / 1024:.0f} KiB for {text / 2**20:.2f} MiB of code "
                  f"({b / 1024 / (text / 2**20):.0f} KiB per MiB)")
    print()
    libs = Table("library", 24, [("code MiB", 9, ".2f"), ("rows", 9, "d"), ("KiB/MiB", 8, ".0f"),
                                 ("build s", 8, ".2f")])
    libs.header()
    for row in table_memory():
        libs.row(*row)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
