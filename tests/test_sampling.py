"""Go's two sampling knobs for the wait profiles, end to end: --mutex-fraction (mutex, like
runtime.SetMutexProfileFraction) and --block-rate (block/offcpu, like
runtime.SetBlockProfileRate), on workloads whose own counts and sleep durations are known, read
through go tool pprof; and through serve as fraction= / rate=."""
import os
import re
import subprocess
import urllib.error
import urllib.request

import pytest

from conftest import (assert_no_sanitizer, build, go_pprof, pprof_top, read_until, run_cprof,
                      start_cprof)
from test_serve import server  # noqa: F401 (the fixture)


@pytest.fixture(scope="session")
def lockwork(workdir):
    return build(workdir, "lockwork.c", "lockwork", extra=("-pthread",))


def _gated(lockwork, workdir, mode, secs, *profiles):
    """Runs `lockwork MODE SECS` gated (LOCKWORK_GATE=1), with one `cprof-bpf -p PID` per entry
    of profiles (a list of extra arguments each) attached to it at the same time, then releases
    it: every profile sees the same events. Each is attached once the one before it profiles:
    at each event their programs then run in that order, and a program's clock reading comes
    after the stack walks of those attached before it (on this busy machine a walk can be
    preempted for 100 us), so the profile to compare against the others goes first. Returns
    (the workload's output, [profile paths])."""
    env = dict(os.environ, LOCKWORK_GATE="1")
    w = subprocess.Popen([lockwork, mode, str(secs)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, env=env)
    procs, paths = [], []
    try:
        assert w.stdout.readline().startswith("ready")
        for i, args in enumerate(profiles):
            paths.append(f"{workdir}/{mode}-{i}.pb.gz")
            procs.append(start_cprof(*args, "-v", "-p", w.pid, "-o", paths[-1]))
            err = read_until(procs[-1].stderr, "profiling", 60)
            assert "profiling" in err, err
        w.stdin.write("x")
        w.stdin.close()
        out = w.stdout.read()
        w.wait(timeout=120)
        for p in procs:
            err = p.communicate(timeout=120)[1]
            assert_no_sanitizer(err)
            assert p.returncode == 0, err
        return out, paths
    finally:
        for p in [w, *procs]:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_mutex_fraction_scales_counts_and_keeps_the_site(lockwork, workdir):
    """4 threads in short critical sections: each counts the acquisitions that found the lock
    taken (the known count of contention events). An exact profile and one with fraction 10
    watch the same run."""
    out, (sampled, exact) = _gated(lockwork, workdir, "contended", 6,
                                   ["-t", "mutex", "--mutex-fraction", "10"],
                                   ["-t", "mutex", "--mutex-fraction", "1"])
    known = int(re.search(r"contended (\d+)", out).group(1))
    assert known > 500, out
    n1, total1 = pprof_top(exact, "contentions")
    n10, total10 = pprof_top(sampled, "contentions")
    d1, _ = pprof_top(exact, "delay")
    d10, _ = pprof_top(sampled, "delay")
    com1, com10 = go_pprof("-comments", exact), go_pprof("-comments", sampled)
    # Fraction 1 is exact: no sampling said, nothing left out; its count is the workload's.
    assert "mutex-fraction" not in com1 and "left out" not in com1, com1
    # (A lock found taken may take more than one futex wait, or none when freed meanwhile.)
    assert 0.7 < n1["contended_thread"][1] / known < 1.5, (n1["contended_thread"], known)
    assert "mutex-fraction: 10" in com10 and "left out by mutex-fraction" in com10, com10
    # The contended site keeps its share.
    share1 = n1["contended_thread"][1] / total1
    share10 = n10["contended_thread"][1] / total10
    assert share1 > 0.8 and abs(share10 - share1) < 0.1, (share1, share10)
    # Scaled by 10: counts within 20% of the exact profile's, and multiples of 10.
    r = n10["contended_thread"][1] / n1["contended_thread"][1]
    assert 0.8 < r < 1.2, (n1["contended_thread"], n10["contended_thread"])
    assert total10 % 10 == 0, total10
    # Delay too, more loosely: lock waits here are heavy-tailed (a holder preempted on this
    # busy machine keeps the others waiting for milliseconds), and 1 in 10 of them is kept.
    r = d10["contended_thread"][1] / d1["contended_thread"][1]
    assert 0.5 < r < 2, (d1["contended_thread"], d10["contended_thread"])


def test_block_rate_keeps_long_waits_and_scales_short_ones(lockwork, workdir):
    """One thread naps 200 us at a time, another 100 ms: an exact block profile and one at a
    rate of 1 ms watch the same run."""
    rate = 1000000  # the 100 ms naps are always kept, the 200 us ones about 1 in 4
    out, (sampled, exact) = _gated(lockwork, workdir, "naps", 2,
                                   ["-t", "block", "--block-rate", str(rate)], ["-t", "block"])
    m = re.search(r"naps short (\d+) long (\d+)", out)
    assert m, out
    s0 = s1 = int(m.group(1))
    l1 = int(m.group(2))
    d0, _ = pprof_top(exact, "delay")
    n0, _ = pprof_top(exact, "contentions")
    d1, _ = pprof_top(sampled, "delay")
    n1, _ = pprof_top(sampled, "contentions")
    com = go_pprof("-comments", sampled)
    assert f"block-rate: {rate} ns" in com and "left out by block-rate" in com, com
    # Long waits: every one kept, as itself (count 1 each, its own duration).
    assert l1 >= 15 and n1["long_nap"][1] >= l1 - 1, (n1["long_nap"], l1)
    assert n1["long_nap"][1] <= l1 + 2, (n1["long_nap"], l1)
    assert abs(d1["long_nap"][1] - l1 * 0.1) < 0.2 * l1 * 0.1, (d1["long_nap"], l1)
    # Short waits: sampled and scaled, their count and time within 20% of the exact profile.
    assert s0 > 1000, s0
    assert 0.8 < n0["short_nap"][1] / s0 < 1.25, (n0["short_nap"], s0)
    for what, a, b in (("count", n0, n1), ("delay", d0, d1)):
        r = (b["short_nap"][1] / s1) / (a["short_nap"][1] / s0)
        assert 0.8 < r < 1.2, (what, a["short_nap"], s0, b["short_nap"], s1)
    # The total block time of the process, within 20%.
    t0 = d0["short_nap"][1] + d0["long_nap"][1]
    t1 = d1["short_nap"][1] + d1["long_nap"][1]
    assert 0.8 < t1 / t0 < 1.2, (t0, t1)


@pytest.mark.parametrize("args,text", [
    (["-t", "mutex", "--mutex-fraction", "0"], "invalid --mutex-fraction"),
    (["-t", "mutex", "--mutex-fraction", "-3"], "invalid --mutex-fraction"),
    (["-t", "mutex", "--mutex-fraction", "1e3"], "invalid --mutex-fraction"),
    (["-t", "block", "--block-rate", "garbage"], "invalid --block-rate"),
    (["-t", "block", "--block-rate", "0"], "invalid --block-rate"),
    (["-t", "block", "--block-rate", "-1"], "invalid --block-rate"),
    (["-t", "cpu", "--mutex-fraction", "10"], "--mutex-fraction applies to -t mutex"),
    (["-t", "mutex", "--block-rate", "1000"], "--block-rate applies to -t offcpu"),
    # Which of the two is wrong, as for every integer flag.
    (["-t", "mutex", "--mutex-fraction", "0"], "out of range, expected 1 to 1000000000"),
    (["-t", "mutex", "--mutex-fraction", "1e3"], "not an integer, expected 1 to"),
    (["-t", "block", "--block-rate", "99999999999999999999"],
     "out of range, expected 1 to 3600000000000 nanoseconds"),
    (["-t", "block", "--block-rate", "garbage"], "not an integer, expected 1 to"),
])
def test_bad_sampling_values(args, text):
    r = run_cprof("-p", "1", *args, check=False)
    err = r.stderr.decode().strip()
    assert r.returncode == 2 and text in err and len(err.splitlines()) == 1, err


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_serve_fraction_and_rate(lockwork, spawn, server, workdir):  # noqa: F811
    sv = server()
    w = spawn(lockwork, "mutex", 30, 20)
    st, body = _get(f"{sv.url}/debug/pprof/mutex?pid={w.pid}&seconds=2&fraction=10")
    assert st == 200, body
    path = f"{workdir}/serve-frac.pb.gz"
    with open(path, "wb") as f:
        f.write(body)
    com = go_pprof("-comments", path)
    assert "mutex-fraction: 10" in com, com
    count, _ = pprof_top(path, "contentions")
    assert count["contended_site"][1] > 0 and count["contended_site"][1] % 10 == 0, count
    b = spawn(lockwork, "naps", 30)
    st, body = _get(f"{sv.url}/debug/pprof/block?pid={b.pid}&seconds=2&rate=1000000")
    assert st == 200, body
    path = f"{workdir}/serve-rate.pb.gz"
    with open(path, "wb") as f:
        f.write(body)
    assert "block-rate: 1000000 ns" in go_pprof("-comments", path)
    for q, what in [("mutex?fraction=0", "invalid fraction"),
                    ("mutex?fraction=-2", "invalid fraction"),
                    ("block?rate=garbage", "invalid rate"),
                    ("block?fraction=10", "fraction= applies to /debug/pprof/mutex"),
                    ("mutex?rate=10", "rate= applies to /debug/pprof/block"),
                    ("profile?fraction=10", "fraction= applies")]:
        st, body = _get(f"{sv.url}/debug/pprof/{q}&pid={w.pid}&seconds=1")
        text = body.decode(errors="replace").strip()
        assert st == 400 and what in text and len(text.splitlines()) == 1, (q, st, text)
