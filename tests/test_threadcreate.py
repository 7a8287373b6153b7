"""threadcreate (Go's threadcreate profile for any process), end to end: a fixture creates N
threads from main -> spawn_workers -> spawn_one -> pthread_create (and forks one process, which
is no thread creation); the profile, through a file and through serve, read by go tool pprof,
counts exactly N with that chain."""
import signal
import subprocess
import threading
import urllib.error
import urllib.request

import pytest

from conftest import build_fp_variant, go_pprof, pprof_traces, profile_gated, wait_for
from test_serve import server  # noqa: F401 (the fixture)

CHAIN = ["clone3", "create_thread", "pthread_create", "spawn_one", "spawn_workers", "main"]


@pytest.fixture(scope="session", params=["fp", "nofp"])
def threadspawn(workdir, request):
    return build_fp_variant(workdir, "threadspawn.c", "threadspawn", request.param, extra=("-pthread",))


def _check(path, n):
    """The profile has exactly n thread creations, all with the creating chain in order."""
    traces = pprof_traces(path)
    total = sum(v for v, _ in traces)
    assert total == n, traces
    for v, fns in traces:
        idx = [fns.index(f) if f in fns else -1 for f in CHAIN]
        # clone3 is glibc 2.34+'s; older glibc creates threads with clone.
        assert idx[0] >= 0 or "clone" in fns, fns
        assert all(i >= 0 for i in idx[1:]) and idx[1:] == sorted(idx[1:]), (
            fns, go_pprof("-comments", path))
    top = go_pprof("-top", path)
    assert "Type: threadcreate" in top, top


def test_threadcreate_counts_creations_with_their_stack(threadspawn, workdir):
    n = 37
    path = f"{workdir}/tc-{threadspawn.rsplit('-', 1)[1]}.pb.gz"
    out, _ = profile_gated([threadspawn, n], "-t", "threadcreate", "-o", path)
    assert f"created {n}" in out, out
    _check(path, n)


def test_threadcreate_through_serve(threadspawn, server, workdir):  # noqa: F811
    sv = server()
    n = 12
    w = subprocess.Popen([threadspawn, str(n)], stdout=subprocess.PIPE, text=True)
    got = {}

    def fetch():
        try:
            with urllib.request.urlopen(
                    f"{sv.url}/debug/pprof/threadcreate?pid={w.pid}&seconds=3", timeout=60) as r:
                got["status"], got["body"] = r.status, r.read()
        except urllib.error.HTTPError as e:
            got["status"], got["body"] = e.code, e.read()

    try:
        assert w.stdout.readline().startswith("ready")
        t = threading.Thread(target=fetch)
        t.start()
        # The capture is attached once the server logs it; then the threads are created.
        assert wait_for(lambda: "profiling (threadcreate)" in sv.stderr(), 60), sv.stderr()
        w.send_signal(signal.SIGUSR1)
        out = w.communicate(timeout=60)[0]
        t.join(60)
    finally:
        if w.poll() is None:
            w.kill()
            w.wait()
    assert f"created {n}" in out, out
    assert got.get("status") == 200, got
    path = f"{workdir}/tc-serve.pb.gz"
    with open(path, "wb") as f:
        f.write(got["body"])
    _check(path, n)
    # The index lists the route; the flame graph takes the type.
    with urllib.request.urlopen(f"{sv.url}/debug/pprof/", timeout=30) as r:
        assert "/debug/pprof/threadcreate" in r.read().decode()
    with urllib.request.urlopen(f"{sv.url}/debug/pprof/flamegraph?type=threadcreate&seconds=0.2",
                                timeout=30) as r:
        assert r.status == 200


def test_threadcreate_bad_values(server):  # noqa: F811
    sv = server()
    for q, code in [("pid=abc", 400), ("seconds=-1", 400), ("pid=999999999", 400),
                    ("fraction=10", 400), ("rate=5", 400)]:
        try:
            urllib.request.urlopen(f"{sv.url}/debug/pprof/threadcreate?{q}", timeout=30)
            status, body = 200, b""
        except urllib.error.HTTPError as e:
            status, body = e.code, e.read()
        text = body.decode(errors="replace").strip()
        assert status == code and len(text.splitlines()) == 1, (q, status, text)
