#!/usr/bin/env python3
"""Lock-contention and off-CPU profiling overhead, side by side in one run.

Workloads (tests/fixtures/lockwork.c): an uncontended lock/unlock loop (one thread), a contended
four-thread lock loop with short critical sections, and a context-switch-heavy pipe ping-pong
between two threads. Each runs with no profiler, under cprof-bpf (-t mutex for the lock loops,
-t offcpu for the ping-pong) and under the tools one would pick instead: bpftrace with a
uprobe/uretprobe pair on pthread_mutex_lock (and with the futex syscall tracepoints, the
cprof-bpf design in bpftrace), bpftrace on sched_switch, and libbpf-tools' offcputime. Every
profiler is attached before the workload's timed part starts. Prints throughput relative to no
profiler (median of the rounds), the same per CPU second the workload used (steadier on a
shared machine, where other jobs take CPU from the workload), the share of lock acquisitions
that had to wait, and the profiler's own CPU time.

    tools/bench/bench_lock.py [--seconds 5] [--rounds 2] [--quick] [--fraction]

--fraction: only the contended lock loop, with no profiler and under `-t mutex` with
--mutex-fraction 1, 10 and 100 (Go's SetMutexProfileFraction: the contentions dropped in BPF
cost one random number each, the kept ones a stack walk); no peer tools, no tracefs.

bpftrace's tracepoints need tracefs: where it is not mounted, the benchmark runs those bpftrace
scripts in a private mount namespace (unshare -m) with tracefs mounted there only, never on the
machine itself (cprof-bpf does not need it).
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from common import CPROF, FIXTURES, Table, build, med, parse, peer, reap, rounds, start, \
    wait_for, workload

LIBC = "/lib/x86_64-linux-gnu/libc.so.6"


# Runs a command in a private mount namespace where tracefs is mounted (the machine's mounts are
# untouched). unshare and sh exec, so the pid (and rusage) is the command's own.
IN_TRACEFS_NS = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                 "mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing; "
                 'exec "$@"', "sh"]


def tracefs_usable():
    if not shutil.which("unshare"):
        return False
    r = subprocess.run([*IN_TRACEFS_NS, "test", "-d", "/sys/kernel/tracing/events/syscalls"],
                       capture_output=True)
    return r.returncode == 0


def wait_attached(prof, marker, timeout=60):
    """Reads the profiler's output until it says it is attached (None: it says nothing)."""
    if marker is None:
        time.sleep(1.5)
        return prof.poll() is None
    return wait_for(prof.stdout if marker[0] == "out" else prof.stderr, marker[1], timeout)[0]


def run_once(exe, mode, secs, cfg, tmp):
    """Runs one workload under cfg; returns (ops, contended, profiler CPU s, workload CPU s)."""
    env = dict(os.environ, LOCKWORK_GATE="1")
    w = workload([exe, mode, str(secs)], stdin=subprocess.PIPE, env=env)
    prof = None
    if cfg:
        argv, marker = cfg(w.pid, tmp)
        prof = start(argv, stdout=subprocess.PIPE)
        if not wait_attached(prof, marker):
            prof.kill()
            w.kill()
            raise RuntimeError(f"{argv[0]} did not attach: {prof.stderr.read()[-300:]}")
        time.sleep(0.2)
    w.stdin.write("g")
    w.stdin.flush()
    w.stdin.close()
    out = w.stdout.read()
    _, _, wru = os.wait4(w.pid, 0)
    w.returncode = 0
    wcpu = wru.ru_utime + wru.ru_stime
    m = re.search(r"ops (\d+)(?: contended (\d+))?", out)
    ops, contended = int(m.group(1)), int(m.group(2) or 0)
    if not prof:
        return ops, contended, 0.0, wcpu
    # bpftrace and offcputime print their result on Ctrl-C; cprof-bpf ends with its target.
    cpu, _, _, _ = reap(prof, None if "cprof-bpf" in argv[0] else signal.SIGINT)
    return ops, contended, cpu, wcpu


def cprof(kind, *extra):
    return lambda pid, d: ([CPROF, "-v", "-t", kind, *extra, "-p", str(pid), "-o",
                            os.path.join(d, f"{kind}.pb.gz")], ("err", "profiling"))


def fraction_workloads():
    """The --fraction row set: the contended loop under each mutex fraction."""
    cfgs = [("none", None)]
    for n in (1, 10, 100):
        cfgs.append((f"cprof-bpf mutex fraction {n}",
                     cprof("mutex", "--mutex-fraction", str(n))))
    return [("contended lock loop, 4 threads", "contended", cfgs)]


def bpftrace(script, tracefs=False):
    prefix = IN_TRACEFS_NS if tracefs else []
    return lambda pid, d: ([*prefix, "bpftrace", "-e", script.replace("PID", str(pid))],
                           ("out", "Attaching"))


# The usual way with uprobes: time pthread_mutex_lock from entry to return, by stack.
BT_UPROBE = (f"uprobe:{LIBC}:pthread_mutex_lock /pid == PID/ {{ @t[tid] = nsecs; }} "
             f"uretprobe:{LIBC}:pthread_mutex_lock /@t[tid]/ "
             "{ @[ustack] = sum(nsecs - @t[tid]); delete(@t[tid]); }")
# cprof-bpf's design written in bpftrace: the futex syscall, lock waits only.
BT_FUTEX = ("tracepoint:syscalls:sys_enter_futex /pid == PID && (args->op & 127) == 0 && "
            "args->val == 2/ { @t[tid] = nsecs; } "
            "tracepoint:syscalls:sys_exit_futex /@t[tid]/ "
            "{ @[ustack] = sum(nsecs - @t[tid]); delete(@t[tid]); }")
# Off-CPU time as bpftrace users write it: stacks at the switch-out, time at the switch-in.
BT_SWITCH = ("tracepoint:sched:sched_switch { "
             "if (pid == PID) { @t[tid] = nsecs; @s[tid] = ustack; @k[tid] = kstack; } "
             "$n = args->next_pid; $t = @t[$n]; "
             "if ($t) { @[@s[$n], @k[$n]] = sum(nsecs - $t); delete(@t[$n]); } }")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--fraction", action="store_true",
                    help="only the contended loop under --mutex-fraction 1, 10, 100")
    a = parse(ap, seconds=1, rounds=1)
    tmp = tempfile.mkdtemp(prefix="cprof-bench-lock-")
    exe = build(tmp, os.path.join(FIXTURES, "lockwork.c"))
    if a.fraction:
        return report(exe, a, tmp, fraction_workloads())
    have_bt = peer("bpftrace")
    have_tp = have_bt and tracefs_usable()
    lock_cfgs = [("none", None), ("cprof-bpf -t mutex", cprof("mutex"))]
    if have_bt:
        lock_cfgs.append(("bpftrace uprobe+uretprobe", bpftrace(BT_UPROBE)))
    if have_tp:
        lock_cfgs.append(("bpftrace futex tracepoints", bpftrace(BT_FUTEX, tracefs=True)))
    sw_cfgs = [("none", None), ("cprof-bpf -t offcpu", cprof("offcpu"))]
    if have_tp:
        sw_cfgs.append(("bpftrace sched_switch", bpftrace(BT_SWITCH, tracefs=True)))
    if peer("/usr/sbin/offcputime"):
        sw_cfgs.append(("libbpf-tools offcputime", lambda pid, d: (
            ["/usr/sbin/offcputime", "-p", str(pid)], None)))
    workloads = [("uncontended lock loop, 1 thread", "uncontended", lock_cfgs),
                 ("contended lock loop, 4 threads", "contended", lock_cfgs),
                 ("pipe ping-pong, 2 threads", "switch", sw_cfgs)]
    return report(exe, a, tmp, workloads)


def report(exe, a, tmp, workloads):
    print(f"{a.seconds:g} s per run, median of {a.rounds} rounds; throughput relative to no "
          "profiler")
    for title, mode, cfgs in workloads:
        res = rounds(cfgs, a.rounds, lambda c: run_once(exe, mode, a.seconds, c[1], tmp),
                     RuntimeError)
        base = med(res["none"], 0)
        base_cpu = med([r[0] / r[3] for r in res["none"]])
        print(f"\n{title}")
        tab = Table("profiler", 30, [("throughput", 10, ".3f"), ("per CPU s", 10, ".3f"),
                                     ("waited %", 9, ".2f"), ("own CPU s", 10, ".2f")],
                    indent="  ")
        tab.header()
        for name, _ in cfgs:
            rs = res[name]
            if not rs:
                continue
            waited = med([100.0 * r[1] / r[0] if r[0] else 0 for r in rs])
            per_cpu = med([r[0] / r[3] for r in rs]) / base_cpu
            tab.row(name, med(rs, 0) / base, per_cpu,
                    waited if mode == "contended" else float("nan"), med(rs, 2))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
