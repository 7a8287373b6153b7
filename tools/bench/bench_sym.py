#!/usr/bin/env python3
"""Symbolization throughput, side by side in one run: unique addresses per second resolved to
function + file:line + inlined frames in a large binary with separate DWARF (glibc, whose debug
file libc6-dbg installs under /usr/lib/debug/.build-id), by `cprof-bpf symbolize`,
`eu-addr2line -i -f` and `addr2line -i -f`, each reading the same addresses in one batch on
stdin. Cold: a fresh process, the debug file not yet read. Warm: the same addresses again in the
same process (the second half of a doubled batch). Also checks that the three agree on the
innermost file:line.

    tools/bench/bench_sym.py [--addrs 20000] [--rounds 3] [--file /lib/x86_64-linux-gnu/libc.so.6]
                             [--record-seconds 30] [--quick]

Then a whole-system record of --record-seconds (0: skipped): the time from the end of sampling
to the written file, which holds draining, symbolizing every unique address and writing.
"""
import argparse
import os
import random
import re
import subprocess
import sys
import time

from common import CPROF, Table, parse, peer


def functions(path):
    """(start, size) of every sized function in path's symbol table, or in its debug file."""
    out = subprocess.run(["nm", "-S", "--defined-only", path], capture_output=True,
                         text=True).stdout
    if "no symbols" in out or not out.strip():
        bid = re.search(r"Build ID: ([0-9a-f]+)", subprocess.run(
            ["readelf", "-n", path], capture_output=True, text=True).stdout).group(1)
        debug = f"/usr/lib/debug/.build-id/{bid[:2]}/{bid[2:]}.debug"
        out = subprocess.run(["nm", "-S", "--defined-only", debug], capture_output=True,
                             text=True).stdout
    funcs = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "tTwW" and int(parts[1], 16) > 1:
            funcs.add((int(parts[0], 16), int(parts[1], 16)))
    return sorted(funcs)


def addresses(path, n, seed=1):
    rnd = random.Random(seed)
    funcs = functions(path)
    out = set()
    while len(out) < n:
        start, size = rnd.choice(funcs)
        out.add(start + rnd.randrange(size))
    return [f"{a:x}" for a in sorted(out)]


def run(argv, addrs):
    """Seconds to resolve addrs on stdin, and the output."""
    data = "".join(f"0x{a}\n" for a in addrs)
    t = time.perf_counter()
    r = subprocess.run(argv, input=data, capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    if r.returncode:
        raise SystemExit(f"{argv[0]} failed: {r.stderr[-300:]}")
    return elapsed, r.stdout


def first_functions(out, count_frames):
    """Splits addr2line -i -f output into per-address innermost names using the number of
    frames each address got (count_frames: list), returns the list of names."""
    lines = out.splitlines()
    names, i = [], 0
    for k in count_frames:
        # The innermost frame's file (basename) and line: function names may differ by alias
        # (cprof-bpf names a function as its symbol does: write, not __GI___libc_write).
        file, _, line = lines[i + 1].rpartition(" (discriminator")[0].partition(":") \
            if "(discriminator" in lines[i + 1] else lines[i + 1].partition(":")
        names.append((os.path.basename(file), line.split(":")[0]))
        i += 2 * k
    return names


def frames_per_address(tool, argv, addrs):
    """Runs the tool once per address on a small sample to learn frame counts (for agreement)."""
    counts = []
    for a in addrs:
        _, out = run(argv, [a])
        counts.append(len(out.splitlines()) // 2)
    return counts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addrs", type=int, default=20000)
    ap.add_argument("--file", default="/lib/x86_64-linux-gnu/libc.so.6")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--record-seconds", type=float, default=30)
    args = parse(ap, addrs=500, rounds=1, record_seconds=2)
    if not os.access(CPROF, os.X_OK):
        sys.exit("build/cprof-bpf missing: run make")
    addrs = addresses(args.file, args.addrs)
    tools = {"cprof-bpf": [CPROF, "symbolize", "-e", args.file]}
    if peer("eu-addr2line"):
        tools["eu-addr2line"] = ["eu-addr2line", "-i", "-f", "-C", "-e", args.file]
    if peer("addr2line"):
        tools["addr2line"] = ["addr2line", "-i", "-f", "-C", "-e", args.file]
    print(f"{len(addrs)} unique addresses in {args.file} ({len(functions(args.file))} "
          f"functions), one batch on stdin")
    def best(argv, batch):
        return min(run(argv, batch)[0] for _ in range(args.rounds))

    results = {}
    for name, argv in tools.items():
        start = best(argv, addrs[:1])
        cold = best(argv, addrs)
        double = best(argv, addrs + addrs)
        results[name] = (start, cold, max(double - cold, 1e-6))
    base = results["cprof-bpf"]
    n = len(addrs)
    tab = Table("tool", 14, [("start s", 9, ".3f"), ("batch s", 9, ".3f"),
                             ("cold addr/s", 13, ".0f"), ("warm addr/s", 13, ".0f"),
                             ("batch x", 9, ".2f"), ("cold x", 8, ".2f"), ("warm x", 8, ".2f")],
                sep="")
    tab.header()
    for name, (start, cold, warm) in results.items():
        c = n / max(cold - start, 1e-6)
        bc = n / max(base[1] - base[0], 1e-6)
        tab.row(name, start, cold, c, n / warm, cold / base[1], bc / c, warm / base[2])
    print("start: one address (process start, reading the file and finding its debug file);"
          " cold: per address\nin a first pass, start excluded; warm: the same addresses"
          " again in the same process.\nx: the tool's time over cprof-bpf's (above 1:"
          " cprof-bpf is faster). Best of --rounds runs.")
    # Agreement on a sample: innermost function, as each tool prints it.
    sample = addrs[:: max(1, len(addrs) // 50)]
    names = {}
    for name, argv in tools.items():
        counts = frames_per_address(name, argv, sample)
        _, out = run(argv, sample)
        names[name] = first_functions(out, counts)
    for name in tools:
        if name == "cprof-bpf":
            continue
        same = sum(a == b for a, b in zip(names["cprof-bpf"], names[name]))
        print(f"innermost file:line equal to {name}'s: {same}/{len(sample)}")
    if args.record_seconds > 0:
        tail, nlocs = record_tail(args.record_seconds)
        print(f"cprof-bpf -a -d {args.record_seconds}: {tail:.2f} s from the end of sampling to"
              f" the file ({nlocs} unique locations symbolized, kernel included)")


def record_tail(seconds):
    """sudo cprof-bpf -a -d S: (seconds after the S, unique locations in the profile)."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "all.pb.gz")
        t = time.perf_counter()
        r = subprocess.run([CPROF, "-a", "-d", str(seconds), "-F", "99", "-o", out],
                           capture_output=True, text=True)
        elapsed = time.perf_counter() - t
        if r.returncode:
            raise SystemExit(f"cprof-bpf -a failed: {r.stderr[-300:]}")
        raw = subprocess.run(["go", "tool", "pprof", "-raw", out], capture_output=True,
                             text=True).stdout
        locs = raw.split("Locations", 1)[1].split("Mappings", 1)[0]
        nlocs = len(re.findall(r"^\s+\d+: 0x", locs, re.M))
    return elapsed - seconds, nlocs


if __name__ == "__main__":
    main()
