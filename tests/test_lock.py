"""mutex and offcpu profiles, end to end: real futex waits and real blocking, read through
go tool pprof."""
import os
import re
import time

import pytest

from conftest import (build, go_pprof, pprof_top, pprof_traces, profile_gated, run_cprof,
                      trace_share)


@pytest.fixture(scope="session")
def lockwork(workdir):
    return build(workdir, "lockwork.c", "lockwork", extra=("-pthread",))


def _through(fns, func, caller, kernel=None):
    """A stack that waited in func. Frame-pointer stacks lose func itself when it calls a libc
    function without a frame (pthread_mutex_lock, read, nanosleep): then func's caller stands
    for it, with the kernel frame that says which wait it was."""
    if func in fns:
        return True
    return caller in fns and (kernel is None or kernel in fns)


def _raw(path):
    return go_pprof("-raw", path)


def _duration(path):
    """The profile's duration in seconds, as pprof reads it."""
    m = re.search(r"Duration: ([0-9.]+)(m?s),", go_pprof("-top", "-nodecount=1", path))
    return float(m.group(1)) * (1e-3 if m.group(2) == "ms" else 1)


def test_mutex_contended_site_and_total(lockwork, workdir):
    out = os.path.join(workdir, "mutex.pb.gz")
    r = run_cprof("-t", "mutex", "-o", out, "--", lockwork, "mutex", 3)
    m = re.search(r"waited (\d+) contended (\d+)", r.stdout.decode())
    assert m, r.stdout
    waited, contended = int(m.group(1)) / 1e9, int(m.group(2))
    assert contended > 20, "the fixture did not contend"

    traces = pprof_traces(out)
    share, total = trace_share(traces, lambda f: _through(f, "contended_site", "mutex_thread"))
    assert share >= 0.9, traces[:5]
    # The delay is what the threads measured around their own contended pthread_mutex_lock.
    assert abs(total - waited) <= 0.2 * waited, (total, waited)
    rows, count = pprof_top(out, "contentions")
    assert 0.5 * contended <= count <= 3 * contended, (count, contended)

    raw = _raw(out)
    assert "contentions/count delay/nanoseconds" in raw, raw[:300]
    assert "Period: 1" in raw


def test_rwlock_waits(lockwork, workdir):
    """The gate: with `-- CMD` the first waits can come before the unwind table of libc is
    loaded (a busy machine), and those stacks stop in glibc; attaching first tests the walk."""
    out = os.path.join(workdir, "rwlock.pb.gz")
    stdout, _ = profile_gated([lockwork, "rwlock", 2], "-t", "mutex", "-o", out,
                              stdin_gate=True, env=dict(os.environ, LOCKWORK_GATE="1"))
    waited = int(re.search(r"waited (\d+)", stdout).group(1)) / 1e9
    assert waited > 0.5, stdout
    traces = pprof_traces(out)
    _, total = trace_share(traces, lambda f: True)
    assert abs(total - waited) <= 0.2 * waited, (total, waited)
    # glibc's rwlock functions have no frame: frame-pointer stacks stop at them, unwinding by
    # tables reaches the site.
    if any("rwlock_site" in f for _, f in traces):
        share, _ = trace_share(traces, lambda f: "rwlock_site" in f)
        assert share >= 0.9, traces[:5]


def test_mutex_without_tracefs(lockwork, workdir, monkeypatch):
    """Where tracefs is not mounted the raw syscall tracepoints time the same waits."""
    monkeypatch.setenv("CPROF_NO_TRACEFS", "1")
    out = os.path.join(workdir, "mutex-raw.pb.gz")
    r = run_cprof("-v", "-t", "mutex", "-o", out, "--", lockwork, "mutex", 2)
    assert "raw syscall tracepoints" in r.stderr.decode()
    waited = int(re.search(r"waited (\d+)", r.stdout.decode()).group(1)) / 1e9
    traces = pprof_traces(out)
    share, total = trace_share(traces, lambda f: _through(f, "contended_site", "mutex_thread"))
    assert share >= 0.9 and abs(total - waited) <= 0.2 * waited, (share, total, waited)


def test_cond_wait_is_not_mutex_contention(lockwork, workdir):
    out = os.path.join(workdir, "cond.pb.gz")
    r = run_cprof("-t", "mutex", "-o", out, "--", lockwork, "cond", 2)
    assert "signals" in r.stdout.decode()
    # The thread spends ~2 s in pthread_cond_wait; as lock contention that would be ~2 s.
    _, total = trace_share(pprof_traces(out), lambda f: True)
    assert total < 0.1, pprof_traces(out)[:3]
    comments = go_pprof("-comments", out)
    # The waits were seen, as futex waits that are no lock wait (about one per signal, every
    # 50 ms; fewer on a loaded machine).
    m = re.search(r"no lock wait.*not counted: (\d+)", comments)
    assert m and int(m.group(1)) >= 10, comments


def test_mutex_min_wait(lockwork, workdir):
    out = os.path.join(workdir, "minwait.pb.gz")
    # Waits last about 3 holds of 200 us; none lasts a second.
    run_cprof("-t", "mutex", "--min-wait", 1000000, "-o", out, "--", lockwork, "mutex", 1)
    _, total = trace_share(pprof_traces(out), lambda f: True)
    assert total == 0
    comments = go_pprof("-comments", out)
    assert re.search(r"under min-wait, not counted: [1-9]", comments), comments


def test_offcpu_blocked_functions(lockwork, workdir):
    out = os.path.join(workdir, "offcpu.pb.gz")
    secs = 3
    run_cprof("-t", "offcpu", "-o", out, "--", lockwork, "block", secs)
    traces = pprof_traces(out)
    read_share, total = trace_share(traces,
                               lambda f: _through(f, "block_in_read", "main", "ksys_read"))
    sleep_share, _ = trace_share(
        traces, lambda f: _through(f, "block_in_sleep", "sleep_thread", "do_nanosleep"))
    assert read_share + sleep_share >= 0.9, traces[:6]
    assert 0.4 <= read_share <= 0.6, (read_share, sleep_share)
    # Two threads, each off the CPU for the whole run.
    assert abs(total - 2 * secs) <= 0.1 * 2 * secs, total
    raw = _raw(out)
    assert "contentions/count delay/nanoseconds" in raw
    # Kernel frames start at the scheduler, without the profiler's own.
    assert "__schedule" in raw and "bpf_prog_" not in raw and "bpf_trace_run" not in raw
    assert "__traceiter_sched_switch" not in raw


def test_block_alias_and_min_block(lockwork, workdir):
    out = os.path.join(workdir, "block.pb.gz")
    # 100 ms naps fall under 250 ms; the 2 s read does not.
    run_cprof("-t", "block", "--min-block", 250000, "-o", out, "--", lockwork, "block", 2)
    traces = pprof_traces(out)
    sleep = sum(v for v, f in traces if "do_nanosleep" in f)
    read = sum(v for v, f in traces if "ksys_read" in f)
    assert sleep == 0 and 1.8 <= read <= 2.2, (sleep, read, traces[:3])
    comments = go_pprof("-comments", out)
    assert "type: block" in comments
    assert re.search(r"under min-block, not counted: [1-9]", comments), comments


def test_offcpu_whole_system(lockwork, spawn, workdir):
    w = spawn(lockwork, "block", 30)
    out = os.path.join(workdir, "offcpu-all.pb.gz")
    run_cprof("-t", "offcpu", "-a", "-d", 2, "-o", out)
    traces = pprof_traces(out, extra=[f"-tagfocus=pid={w.pid}"])
    sleep = sum(v for v, f in traces if _through(f, "block_in_sleep", "sleep_thread",
                                                 "do_nanosleep"))
    # The sleeping thread naps in 100 ms steps: nearly all of the profile's time is seen. (The
    # profile may last longer than -d while unwind tables are built for every process.)
    dur = _duration(out)
    assert 0.8 * dur <= sleep <= 1.05 * dur, (sleep, dur, traces[:3])
    assert f"exe:[{lockwork}]" in _raw(out).replace(" ", "")


def test_wall_combines_on_and_off_cpu(lockwork, workdir):
    out = os.path.join(workdir, "wall.pb.gz")
    secs = 2
    run_cprof("-t", "cpu,offcpu", "-F", 199, "-o", out, "--", lockwork, "mutex", secs)
    raw = _raw(out)
    assert "cpu/nanoseconds offcpu/nanoseconds wall/nanoseconds" in raw, raw[:300]
    _, wall = pprof_top(out, "wall")
    _, cpu = pprof_top(out, "cpu")
    _, off = pprof_top(out, "offcpu")
    # Five threads (four contending, main joining them) all the time, on or off the CPU.
    assert abs(wall - 5 * secs) <= 0.15 * 5 * secs, wall
    assert abs(cpu + off - wall) <= 0.01 * wall and cpu > 0.1 and off > 1, (cpu, off)
    on_rows, _ = pprof_top(out, "wall", extra=["-tagfocus=state=on-cpu"])
    assert "contended_site" in on_rows, list(on_rows)[:10]
    assert "wall_switch" in run_cprof("check").stdout.decode()


def test_offcpu_full_map_is_counted(lockwork, workdir):
    out = os.path.join(workdir, "offcpu-full.pb.gz")
    r = run_cprof("-t", "offcpu", "--max-stacks", 64, "-o", out, "--", lockwork, "deepsleep", 1)
    err = r.stderr.decode()
    m = re.search(r"(\d+) samples dropped: aggregation map full", err)
    assert m and int(m.group(1)) > 0, err
    assert "aggregation map full" in go_pprof("-comments", out)
    # What fitted is still there.
    _, total = trace_share(pprof_traces(out), lambda f: True)
    assert total > 0


@pytest.mark.parametrize("kind,mode,func", [("mutex", "mutex", "mutex_thread"),
                                            ("offcpu", "block", "sleep_thread")])
def test_target_exits_mid_profile(lockwork, spawn, workdir, kind, mode, func):
    # Long enough to outlast the profiler's start (unwind tables, under ASan) on a busy machine.
    w = spawn(lockwork, mode, 4)
    out = os.path.join(workdir, f"exit-{kind}.pb.gz")
    t0 = time.time()
    run_cprof("-t", kind, "-p", w.pid, "-d", 60, "-o", out)
    assert time.time() - t0 < 30, "cprof-bpf should stop when its target exits"
    rows, _ = pprof_top(out, "delay")
    assert rows.get(func, (0, 0))[1] > 0.5, rows


def test_wait_profiles_load_and_bad_flags(lockwork):
    out = run_cprof("check").stdout.decode()
    for prog in ("futex_enter_tp", "futex_exit_tp", "futex_enter_raw", "futex_exit_raw",
                 "offcpu_switch"):
        assert re.search(rf"{prog}\s+ok", out), out
    for args, text in [(["-t", "cpu", "--min-wait", "10"], "--min-wait applies to -t mutex"),
                       (["-t", "mutex", "--min-block", "10"], "--min-block applies to -t offcpu"),
                       (["-t", "mutex", "--min-wait", "-1"], "invalid --min-wait"),
                       (["-t", "offcpu", "--min-block", "x"], "invalid --min-block")]:
        r = run_cprof("-p", "1", *args, check=False)
        err = r.stderr.decode().strip()
        assert r.returncode == 2 and text in err and len(err.splitlines()) == 1, err
