#!/usr/bin/env python3
"""The agent's own cost, side by side in one run: a CPU-bound workload (both cores busy) runs for
SECONDS with no profiler, under `cprof-bpf agent` at 19 Hz (the default) and 99 Hz, and under
`perf record -a -F 19 -g` (the system-wide tool users would pick). For each: the profiler's own
CPU (% of one core) while the workload runs (steady state, from /proc/PID/stat) and over its
whole run (start-up and shutdown included, from its rusage), its peak RSS, and the workload's
throughput relative to no profiler.

    tools/bench/bench_agent.py [--seconds 60] [--rounds 1] [--quick]

--churn runs the fleet setting instead: a service built without frame pointers plus about
--rate new processes a second of a dozen distribution executables (shell tools, a compressor,
an interpreter), for --seconds with 5 s windows, with `cprof-bpf agent` (its defaults) and
`perf record -a -g -F 19` side by side in the same run. It reports each one's CPU over the
whole run and in steady state (after --warmup s: the agent's start-up, its first reading of
every running process and building of their tables, left out), peak RSS, the ratios agent CPU /
perf CPU, the share of the service's hot samples whose stack keeps its callers (`run_cpu <-
main`) in the agent's windows, and the agent's CPU on the same machine with no load started.

    tools/bench/bench_agent.py --churn [--seconds 30] [--rate 50] [--warmup 10]

--restart measures what the on-disk table cache (--unwind-cache) saves at a restart: the same
setting for --seconds with an empty cache, then again, a new agent with the cache the first
one left. For each: the agent's CPU, its CPU time spent on unwind tables (built, or read from
the cache) and the tables built and read, from its /metrics at the end.

    tools/bench/bench_agent.py --restart [--seconds 20] [--rate 50]
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from common import BENCH, CPROF, ROOT, Table, build, med, ops, parse, peer, ratio, reap, rounds, start


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def cpu_ns(pid):
    """CPU time of all of pid's threads (ns, /proc/PID/task/*/schedstat): finer than ticks."""
    total = 0
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (FileNotFoundError, ProcessLookupError):
                pass
    except FileNotFoundError:
        pass
    return total


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


# Short-lived commands of the churn: distribution binaries (built without frame pointers).
CHURN = [["true"], ["ls", "/usr/bin"], ["cat", "/etc/os-release"], ["sort", "/etc/services"],
         ["grep", "-c", "tcp", "/etc/services"], ["sed", "-n", "1p", "/etc/services"],
         ["gzip", "-c", "/etc/services"], ["head", "-c", "100", "/etc/services"],
         ["date"], ["wc", "-l", "/etc/services"], ["md5sum", "/etc/services"],
         ["sh", "-c", ":"]]


def churn(rate, until):
    """Starts about rate processes a second, round robin over CHURN, until the deadline."""
    n = 0
    t0 = time.monotonic()
    while time.monotonic() < until:
        argv = CHURN[n % len(CHURN)]
        if shutil.which(argv[0]):
            subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        n += 1
        ahead = t0 + n / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    return n


def complete_share(files, pid):
    """Share of pid's samples with leaf hot_a/hot_b whose callers are run_cpu <- main."""
    good = total = 0.0
    for f in files:
        out = subprocess.run(["go", "tool", "pprof", "-traces", f"-tagfocus=pid={pid}", f],
                             capture_output=True, text=True).stdout
        for block in out.split("-----------+")[1:]:
            lines = [l.strip() for l in block.splitlines() if l.strip()]
            fr = [l for l in lines if not l.startswith("-") and ": " not in l]
            if not fr:
                continue
            first = fr[0].split()
            if len(first) < 2 or first[1] not in ("hot_a", "hot_b"):
                continue
            v = float(first[0][:-2]) / 1000 if first[0].endswith("ms") else \
                float(first[0].rstrip("s") or 0)
            names = [first[1]] + [l.split()[-1] for l in fr[1:]]
            total += v
            if names[1:3] == ["run_cpu", "main"]:
                good += v
    return good / total if total else 0.0


def run_churn(a, tmp):
    svc = build(tmp, os.path.join(ROOT, "tests", "fixtures", "workload.c"),
                flags=("-fomit-frame-pointer",))
    store = os.path.join(tmp, "agent")
    # The agent alone, no load started by us: its floor on this machine, over 15 s start-up
    # included and once started (the 10 s after its first 5).
    idle = start([CPROF, "agent", "-q", "-i", "5", "-o", os.path.join(tmp, "idle")],
                 stderr=subprocess.DEVNULL)
    time.sleep(5)
    i0 = cpu_ns(idle.pid)
    time.sleep(10)
    idle_steady = (cpu_ns(idle.pid) - i0) / 1e9 / 10
    idle_cpu, idle_rss, _, _ = reap(idle, signal.SIGTERM)
    # A cold start, as a first run on a machine (no tables kept by an earlier run).
    agent = start([CPROF, "agent", "-q", "-i", "5", "-o", store, "--unwind-cache",
                   os.path.join(tmp, "cache")], stderr=subprocess.DEVNULL)
    perf = None
    if peer("perf"):
        perf = start(["perf", "record", "-q", "-a", "-g", "-F", "19", "-o",
                      os.path.join(tmp, "perf.data")], stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    w = subprocess.Popen([svc, "cpu", str(a.seconds + 2)], stdout=subprocess.DEVNULL)
    # Steady state: from --warmup s in (start-up done: BPF loaded, the running processes read
    # and their tables built) to the end.
    nproc = churn(a.rate, t0 + a.warmup)
    tw, aw, pw = time.monotonic(), cpu_ns(agent.pid), cpu_ns(perf.pid) if perf else 0
    nproc += churn(a.rate, t0 + a.seconds)
    te = time.monotonic()
    asteady = (cpu_ns(agent.pid) - aw) / 1e9 / (te - tw)
    psteady = (cpu_ns(perf.pid) - pw) / 1e9 / (te - tw) if perf else 0.0
    wall = time.monotonic() - t0
    acpu, arss, _, _ = reap(agent, signal.SIGTERM)
    pcpu, prss = (reap(perf, signal.SIGINT)[:2]) if perf else (0.0, 0.0)
    w.kill()
    w.wait()
    files = sorted(os.path.join(store, f) for f in os.listdir(store) if f.endswith(".pb.gz"))
    share = complete_share(files, w.pid)
    print(f"no-fp service + {nproc / wall:.0f} new processes/s of {len(CHURN)} executables, "
          f"{a.seconds:g} s, 5 s windows; agent and perf side by side")
    t = Table("profiler", 28, [("CPU % whole run", 15, ".2f"), ("CPU % steady", 12, ".2f"),
                               ("peak RSS MB", 12, ".1f"), ("complete", 9, ".3f")])
    t.header()
    t.row("cprof-bpf agent (defaults)", acpu / wall * 100, asteady * 100, arss, share)
    if perf:
        t.row("perf record -a -g -F 19", pcpu / wall * 100, psteady * 100, prss, 0.0)
        print(f"agent CPU / perf CPU: whole run {acpu / pcpu if pcpu else float('nan'):.2f}, "
              f"steady (after {a.warmup:g} s) {asteady / psteady if psteady else float('nan'):.2f}")
    print(f"agent with no load started: {idle_cpu / 15 * 100:.2f}% of a core over its first 15 s "
          f"(start-up included), {idle_steady * 100:.2f}% over the next 10 s; "
          f"peak RSS {idle_rss:.1f} MB")


def agent_metrics(port):
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    m = {}
    for line in text.splitlines():
        if line.startswith("cprof_agent_"):
            k, v = line.rsplit(" ", 1)
            m[k[len("cprof_agent_"):]] = float(v)
    return m


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_restart(a, tmp):
    svc = build(tmp, os.path.join(ROOT, "tests", "fixtures", "workload.c"),
                flags=("-fomit-frame-pointer",))
    cache = os.path.join(tmp, "cache")
    w = subprocess.Popen([svc, "cpu", str(2 * a.seconds + 10)], stdout=subprocess.DEVNULL)
    t = Table("agent run", 26, [("CPU % of a core", 15, ".2f"), ("table CPU s", 11, ".3f"),
                                ("built", 6, "d"), ("from cache", 10, "d"),
                                ("read CPU s", 10, ".3f")])
    print(f"no-fp service + about {a.rate:g} new processes/s, {a.seconds:g} s per run; "
          f"the second agent starts with the cache the first left")
    t.header()
    for name in ("first (empty cache)", "restart (cache kept)"):
        port = free_port()
        agent = start([CPROF, "agent", "-q", "-i", "5", "-o", os.path.join(tmp, name[:5]),
                       "--listen", f"127.0.0.1:{port}", "--unwind-cache", cache],
                      stderr=subprocess.DEVNULL)
        t0 = time.monotonic()
        churn(a.rate, t0 + a.seconds)
        m = agent_metrics(port)
        wall = time.monotonic() - t0
        cpu, _, _, _ = reap(agent, signal.SIGTERM)
        t.row(name, cpu / wall * 100, m["unwind_build_seconds_total"],
              int(m["unwind_tables_built_total"]), int(m["unwind_cache_loads_total"]),
              m["unwind_cache_load_seconds_total"])
    w.kill()
    w.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--churn", action="store_true")
    ap.add_argument("--rate", type=float, default=50)
    ap.add_argument("--restart", action="store_true")
    ap.add_argument("--warmup", type=float, default=10,
                    help="--churn: seconds before the steady-state CPU is measured")
    a = parse(ap, seconds=3, rounds=1)
    if a.restart:
        tmp = tempfile.mkdtemp(prefix="cprof-bench-agent-")
        run_restart(a, tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        return 0
    if a.churn:
        tmp = tempfile.mkdtemp(prefix="cprof-bench-agent-")
        run_churn(a, tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        return 0
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
