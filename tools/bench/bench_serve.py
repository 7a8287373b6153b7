#!/usr/bin/env python3
"""cprof-bpf serve: requests per second on /healthz and on the /debug/pprof/ index (wrk), beside
a Go program's own net/http/pprof server on the same machine in the same run, and the latency
the HTTP path adds to a 5 s CPU capture (serve vs `cprof-bpf record -d 5` vs Go's own
/debug/pprof/profile?seconds=5).

    tools/bench/bench_serve.py [--seconds 5] [--connections 32] [--rounds 3] [--quick]
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

from common import BENCH, CPROF, Table, build, med, parse, rounds


def start(argv, pattern, env=None):
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         env=env)
    m = re.search(pattern, p.stdout.readline())
    if not m:
        p.kill()
        sys.exit(f"{argv[0]} did not start")
    return p, m.group(1)


def wrk(url, secs, conns):
    out = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{secs}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))
    p99 = re.search(r"99%\s+([0-9.]+)(us|ms|s)", out)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[p99.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, float(p99.group(1)) * scale, int(errors.group(1)) if errors else 0


def timed(argv):
    t0 = time.monotonic()
    subprocess.run(argv, check=True, capture_output=True)
    return time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    a = parse(ap, seconds=1, rounds=1)
    tmp = tempfile.mkdtemp(prefix="cprof-bench-serve-")
    env = dict(os.environ, GOCACHE=os.path.join(tmp, "gocache"), HOME=tmp, GO111MODULE="off")
    gobin = os.path.join(tmp, "gopprof")
    subprocess.run(["go", "build", "-o", gobin, os.path.join(BENCH, "gopprof.go")], check=True,
                   env=env)
    burn = build(tmp, os.path.join(BENCH, "cpuburn.c"))
    srv, url = start([CPROF, "serve", "--listen", "127.0.0.1:0", "-q"],
                     r"serving (http://\S+?)/debug/pprof/")
    gosrv, gourl = start([gobin], r"ready (http://\S+)")
    target = goburn = None
    try:
        print(f"wrk -t2 -c{a.connections} -d{a.seconds}s, median of {a.rounds} rounds; "
              "the machine is shared, so figures are noisy")
        tab = Table("endpoint", 34, [("req/s", 10, ".0f"), ("p99 ms", 8, ".2f"), ("non-2xx", 8, "d")])
        tab.header()
        rows = {}
        for name, u in [("cprof-bpf /healthz", url + "/healthz"),
                        ("go net/http /healthz", gourl + "/healthz"),
                        ("cprof-bpf /debug/pprof/ (index)", url + "/debug/pprof/"),
                        ("go net/http/pprof /debug/pprof/", gourl + "/debug/pprof/")]:
            runs = [wrk(u, a.seconds, a.connections) for _ in range(a.rounds)]
            rps = med(runs, 0)
            p99 = med(runs, 1)
            rows[name] = rps
            tab.row(name, rps, p99, sum(r[2] for r in runs))
        print(f"ratio cprof/go, /healthz: {rows['cprof-bpf /healthz'] / rows['go net/http /healthz']:.2f}; "
              f"index: {rows['cprof-bpf /debug/pprof/ (index)'] / rows['go net/http/pprof /debug/pprof/']:.2f}"
              " (the index lists every process with CPU%; Go's lists its own profiles)")

        # The capture's target: one thread burning CPU, as the Go program's own loop does.
        target = subprocess.Popen([burn, "3600", "1"], stdout=subprocess.DEVNULL)
        goburn, burnurl = start([gobin, "burn"], r"ready (http://\S+)")
        print("\n5 s CPU capture, wall time from request to profile on disk (median):")
        out = os.path.join(tmp, "p.pb.gz")
        cases = [
            ("cprof-bpf serve (curl)", ["curl", "-sf", "-o", out,
                                        f"{url}/debug/pprof/profile?pid={target.pid}&seconds=5"]),
            ("cprof-bpf record -d 5", [CPROF, "-q", "-p", str(target.pid), "-d", "5", "-o", out]),
            ("go net/http/pprof (its own)", ["curl", "-sf", "-o", out,
                                             f"{burnurl}/debug/pprof/profile?seconds=5"]),
        ]
        timed(cases[1][1])  # warm the page cache with the target's files
        times = rounds(cases, a.rounds, lambda c: timed(c[1]))
        for name, _ in cases:
            t = med(times[name])
            print(f"  {name:30} {t:6.3f} s  (+{(t - 5) * 1000:.0f} ms over the 5 s)")
    finally:
        for p in (target, srv, gosrv, goburn):
            if p is None:
                continue
            p.terminate()
            p.wait()


if __name__ == "__main__":
    main()
