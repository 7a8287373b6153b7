"""The agent's default unwinding (--unwind auto), end to end: a service built without frame
pointers beside a stream of short-lived processes keeps its callers, the short-lived processes
are symbolized, and /metrics reports what the unwind tables cost."""
import os
import re
import subprocess
import threading
import time

import pytest

from conftest import build, pprof_top, pprof_traces, trace_share
from conftest import CPROF, assert_no_sanitizer, start_cprof
from test_agent import fetch, finish, listen_url, metrics, windows


def start_agent(*args):
    return start_cprof("agent", *args, stdout=subprocess.PIPE)

NOFP = ("-O2", "-g", "-fomit-frame-pointer")


@pytest.fixture(scope="session")
def nofp_load(workdir):
    return build(workdir, "agent_load.c", "agent_load-nofp", flags=NOFP, extra=("-pthread",))


@pytest.fixture(scope="session")
def nofp_work(workdir):
    return build(workdir, "workload.c", "workload-nofp", flags=NOFP)


def test_defaults_complete_stacks_beside_short_lived(nofp_work, nofp_load, spawn, tmp_path):
    out = tmp_path / "store"
    w = spawn(nofp_work, "cpu", 30)
    # --max-rss: the sanitizer build's RSS (shadow memory) is far above the release build's;
    # resetting the symbol caches would drop the snapshots of processes already gone.
    # Building a table under ASan takes several times the release build's CPU: the same
    # budget in tables built needs a larger --unwind-cpu there (the release build runs with
    # the default).
    san = ("--unwind-cpu", "10") if os.sep + "san" + os.sep in CPROF else ()
    a = start_agent("-o", out, "-i", 2, "-d", 16, "-F", 99, "--listen", "127.0.0.1:0", "-v",
                    "--max-rss", "4G", *san)
    url = listen_url(a)
    # A cold start builds the tables of what the machine runs within --unwind-cpu (1% of a
    # core after a first allowance): on a busy machine that takes seconds. The windows after
    # it are the ones checked.
    time.sleep(5)
    warm = time.time()
    shorts = []
    deadline = time.time() + 6
    while time.time() < deadline:  # short-lived processes of one no-fp executable
        s = subprocess.Popen([nofp_load, "short", "300"])
        s.wait()
        shorts.append(s.pid)
    time.sleep(2.5)
    m = metrics(fetch(url + "/metrics"))
    finish(a)
    # The windows written after the warm-up (a busy machine may start the agent late).
    files = [f for f in windows(out) if os.path.getmtime(f) > warm + 1]
    assert files, (windows(out), warm)
    traces = []
    for f in files:
        traces += [(v, fns) for v, fns in pprof_traces(f, extra=(f"-tagfocus=pid={w.pid}",))
                   if fns and fns[0] in ("hot_a", "hot_b")]
    share, total = trace_share(traces, lambda fns: fns[1:3] == ["run_cpu", "main"])
    assert total > 0
    # The first sample of a process is walked before its table exists: nearly all keep callers.
    assert share >= 0.9, (share, {k: v for k, v in m.items() if "unwind" in k})
    # Each short-lived process is symbolized by its executable's cached symbols, and walked
    # with the executable's shared table from its first sample on (mapped at its exec).
    sampled, symbolized, named = set(), set(), set()
    for f in files:
        for pid in shorts:
            rows, _ = pprof_top(f, "samples", extra=[f"-tagfocus=pid={pid}"])
            if rows:
                sampled.add(pid)
                # Symbolized from the file's cached symbols though the process is gone.
                if "burn_until" in rows or "short_lived_hot" in rows:
                    symbolized.add(pid)
                if "short_lived_hot" in rows:
                    named.add(pid)
    assert len(sampled) >= len(shorts) // 4, (len(sampled), len(shorts))
    # (a sample may fall in the kernel's exit path only)
    assert len(symbolized) >= 0.6 * len(sampled), (len(symbolized), len(sampled))
    # Those whose exec notice was handled while they lived keep their caller. Under the
    # sanitizer build on a busy machine many exit first (procs_missed): half at least.
    assert len(named) >= 0.4 * len(sampled), (len(named), len(sampled), m)
    # Tables are per file: the short-lived processes share one executable's table.
    assert m["cprof_agent_unwind_tables"] >= 2, m
    assert m["cprof_agent_unwind_tables_built_total"] >= 2, m
    assert m["cprof_agent_unwind_execs_total"] >= len(shorts) // 2, m
    assert m["cprof_agent_unwind_exe_hits_total"] >= m["cprof_agent_unwind_execs_total"], m
    # (the machine's other processes are sampled and get tables too, one per file: how many
    # depends on what else runs, so the sharing is checked through the hits above)
    assert m["cprof_agent_unwind_build_seconds_total"] > 0, m


def test_tables_only_for_sampled_processes(nofp_load, tmp_path):
    """Processes that exec and exit without a sample get no table (and cost no build)."""
    out = tmp_path / "store"
    a = start_agent("-o", out, "-i", 1, "-d", 8, "-F", 19, "--listen", "127.0.0.1:0", "-vv")
    url = listen_url(a)
    lines = []
    drain = threading.Thread(target=lambda: lines.extend(a.stderr), daemon=True)
    drain.start()
    time.sleep(1)
    pids = set()
    for _ in range(40):  # /bin/true: a few ms each, almost never sampled at 19 Hz
        t = subprocess.Popen(["/bin/true"])
        t.wait()
        pids.add(t.pid)
    time.sleep(2.5)
    assert fetch(url + "/healthz")[0] == 200
    assert a.wait(timeout=60) == 0
    drain.join(timeout=10)
    err = "".join(lines)
    assert_no_sanitizer(err)
    # Per-process tables are set up by "unwind: pid N: ..." lines; a process of an executable
    # seen before only gets the known tables mapped ("known executables only"), nothing built.
    setup = {int(x) for x in re.findall(r"unwind: pid (\d+): \d+ trie entries, [0-9.]+ ms\n", err)}
    assert setup, "no per-process table set-up in the agent's log"
    # A few of the 40 are sampled (19 Hz over a few ms each); a table for each would be 40.
    assert len(pids & setup) < 20, sorted(pids & setup)


def test_unwind_cpu_option(tmp_path):
    from conftest import run_cprof
    r = run_cprof("agent", "--unwind-cpu", "200", "-o", tmp_path, check=False)
    assert r.returncode == 2 and b"--unwind-cpu" in r.stderr
