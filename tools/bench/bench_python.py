#!/usr/bin/env python3
"""Python frames: what the CPython walk costs per sample and how accurate it is.

For each CPython 3.10-3.13 found (pyenv's builds under ~/.pyenv/versions, Debian's python3.11),
runs tests/fixtures/python/hot.py in its `truth` mode (main -> work_a / work_b, a pure-Python
loop; work_a does 3x work_b's work and the workload times both itself) and reports, rounds
interleaved, medians:
  ns/smp py   the cpu program's BPF time per run (kernel.bpf_stats_enabled: run_time_ns /
              run_cnt) with Python frames walked,
  ns/smp nat  the same with the Python walk off (CPROF_BENCH_NO_PYTHON=1: the native table walk
              alone, same process, same stacks), and x their ratio;
  py%         the share of the target's samples that hold its Python frames (main and a work_*);
  a cprof     work_a's share of work_a + work_b in the profile; a truth: what the workload
              measured itself; a austin: austin's figure where austin supports the version;
  thr         the workload's throughput (calls/s) profiled at 99 Hz over unprofiled.

Usage: tools/bench/bench_python.py [--seconds 8] [--rounds 2] [--quick]
"""
import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import CPROF, FIXTURES, Table, med, parse, reap, rounds, wait_for  # noqa: E402

HOT = os.path.join(FIXTURES, "python", "hot.py")


def pythons():
    out = []
    for minor in (10, 11, 12, 13):
        pat = os.path.expanduser(f"~/.pyenv/versions/3.{minor}*/bin/python3.{minor}")
        out += [(p.split("/versions/")[1].split("/")[0], p) for p in sorted(glob.glob(pat))]
    if os.path.exists("/usr/bin/python3.11"):
        out.append(("debian-3.11", "/usr/bin/python3.11"))
    return out


def prog_stats(owner, name="on_sample"):
    """(run_time_ns, run_cnt) of the programs called name that process owner loaded (others'
    profilers may run the same program at the same time)."""
    ids = set()
    fds = f"/proc/{owner}/fdinfo"
    for fd in os.listdir(fds) if os.path.isdir(fds) else []:
        try:
            m = re.search(r"^prog_id:\s*(\d+)", open(os.path.join(fds, fd)).read(), re.M)
        except OSError:
            continue
        if m:
            ids.add(int(m.group(1)))
    r = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True)
    t = c = 0
    for p in json.loads(r.stdout or "[]"):
        if p.get("name") == name and p.get("id") in ids:
            t += p.get("run_time_ns", 0)
            c += p.get("run_cnt", 0)
    return t, c


def traces(path):
    """[function names, leaf first] of each sample kind, with its value, from go tool pprof."""
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
            cur = (float(re.match(r"[\d.]+", head).group(0)), [fn])
        elif cur is not None and fn:
            cur[1].append(fn)
    if cur:
        res.append(cur)
    return res


def truth_run(exe, seconds):
    w = subprocess.Popen([exe, HOT, "truth", str(seconds)], stdout=subprocess.PIPE, text=True)
    w.stdout.readline()
    return w


def truth_result(w):
    out = w.communicate()[0]
    m = re.search(r"calls (\d+) work_a_share ([\d.]+)", out)
    return int(m.group(1)), float(m.group(2))


def run(cfg, seconds, tmp):
    name, exe, mode = cfg
    if mode == "none":
        w = truth_run(exe, seconds)
        calls, truth = truth_result(w)
        return {"thr": calls / seconds, "truth": truth}
    if mode == "austin":
        out = os.path.join(tmp, "austin.txt")
        r = subprocess.run(["austin", "-i", "10000", "-o", out, exe, HOT, "truth", str(seconds)],
                           capture_output=True, text=True, timeout=seconds + 60)
        a = b = 0
        if r.returncode == 0 and os.path.exists(out):
            for line in open(out):
                stack, _, val = line.rstrip().rpartition(" ")
                if ";work_a (" in stack:
                    a += int(val)
                elif ";work_b (" in stack:
                    b += int(val)
        if a + b == 0:
            return {"austin_err": (r.stderr.strip().splitlines() or ["no samples"])[-1]}
        return {"austin": a / (a + b)}
    env = dict(os.environ)
    if mode == "native":
        env["CPROF_BENCH_NO_PYTHON"] = "1"
    w = truth_run(exe, seconds + 4)
    time.sleep(0.5)
    out = os.path.join(tmp, "py.pb.gz")
    p = subprocess.Popen([CPROF, "-v", "-p", str(w.pid), "-d", str(seconds), "-F", "99", "-o",
                          out], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True)
    # bpf_stats count from the load: read them while the program runs.
    ok, _ = wait_for(p.stderr, "profiling", 60)
    t0 = prog_stats(p.pid)
    time.sleep(seconds / 2)
    t1 = prog_stats(p.pid)
    reap(p)
    if not ok:
        raise ValueError("cprof-bpf did not start")
    calls, truth = truth_result(w)
    dc = t1[1] - t0[1]
    res = {"ns": (t1[0] - t0[0]) / dc if dc > 0 else None, "truth": truth,
           "thr": calls / (seconds + 4)}
    if mode == "py":
        tr = traces(out)
        total = sum(v for v, _ in tr)
        with_py = sum(v for v, fns in tr if "main" in fns and
                      any(f in ("work_a", "work_b") for f in fns))
        a = sum(v for v, fns in tr if "work_a" in fns)
        b = sum(v for v, fns in tr if "work_b" in fns)
        res.update(py=with_py / total if total else None, a=a / (a + b) if a + b else None)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    a = parse(ap, seconds=3, rounds=1)
    subprocess.run(["sysctl", "-qw", "kernel.bpf_stats_enabled=1"], check=True)
    t = Table("python", 14, [("ns/smp py", 10, ".0f"), ("ns/smp nat", 10, ".0f"),
                             ("x", 5, ".2f"), ("py%", 5, ".2f"), ("a cprof", 8, ".3f"),
                             ("a truth", 8, ".3f"), ("a austin", 8, ".3f"), ("thr", 5, ".2f")])
    print(f"cpu at 99 Hz, {a.seconds:g} s per run, {a.rounds} round(s); "
          "kernel.bpf_stats_enabled=1 while it runs")
    t.header()
    notes = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, exe in pythons():
            cfgs = [(m, exe, m) for m in ("none", "py", "native")]
            if subprocess.run(["which", "austin"], capture_output=True).returncode == 0:
                cfgs.append(("austin", exe, "austin"))
            res = rounds(cfgs, a.rounds, lambda c: run(c, a.seconds, tmp),
                         errors=(subprocess.TimeoutExpired, AttributeError, ValueError))
            ns_py, ns_nat = med(res["py"], "ns"), med(res["native"], "ns")
            base = med(res["none"], "thr")
            thr = med(res["py"], "thr")
            t.row(name, ns_py, ns_nat, ns_py / ns_nat if ns_py and ns_nat else None,
                  med(res["py"], "py"), med(res["py"], "a"), med(res["py"], "truth"),
                  med(res.get("austin", []), "austin"), thr / base if thr and base else None)
            for r in res.get("austin", []):
                if "austin_err" in r:
                    notes.append(f"austin on {name}: {r['austin_err']}")
                    break
    for n in notes:
        print(n)
    subprocess.run(["sysctl", "-qw", "kernel.bpf_stats_enabled=0"])


if __name__ == "__main__":
    main()
