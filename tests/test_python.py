"""Python frames: CPython 3.10-3.13 (pyenv's builds under ~/.pyenv/versions when present,
Debian's python3.11 always) profiled from outside, checked through `go tool pprof`."""
import glob
import json
import os
import re
import shutil
import subprocess
import time

import pytest

from conftest import (FIXTURES, ROOT, go_pprof, pprof_traces, read_until, run_cprof, start_cprof,
                      trace_share)

HOT = os.path.join(FIXTURES, "python", "hot.py")
LAYOUT_CHECK = os.path.join(FIXTURES, "python", "layout_check.py")
DEBIAN = "/usr/bin/python3.11"


def interpreters():
    """(id, path) of every CPython 3.10-3.13 found: pyenv's, then Debian's."""
    found = []
    home = os.path.expanduser("~")
    for minor in (10, 11, 12, 13):
        for exe in sorted(glob.glob(f"{home}/.pyenv/versions/3.{minor}*/bin/python3.{minor}")):
            ver = exe.split("/versions/")[1].split("/")[0]
            if ver.endswith("t"):  # free-threaded: not supported
                continue
            found.append((f"pyenv-{ver}", exe))
    if os.path.exists(DEBIAN):
        found.append(("debian-3.11", DEBIAN))
    return found


PYTHONS = interpreters()
print("Python interpreters under test:", ", ".join(i for i, _ in PYTHONS) or "none")
# The feature tests run on the oldest and the newest layout found, and on Debian's.
FEATURE_PYTHONS = [p for p in PYTHONS if p[0].startswith(("pyenv-3.10", "pyenv-3.13"))] + [
    p for p in PYTHONS if p[0] == "debian-3.11"]


def params(pythons, every_version=False):
    """pytest params of pythons; with every_version, each of 3.10-3.13 and Debian's 3.11 that is
    absent is a skipped param that says so."""
    out = [pytest.param(exe, id=i) for i, exe in pythons]
    if every_version:
        for minor in (10, 11, 12, 13):
            if not any(i.startswith(f"pyenv-3.{minor}.") for i, _ in pythons):
                out.append(pytest.param(None, id=f"pyenv-3.{minor}", marks=pytest.mark.skip(
                    reason=f"no CPython 3.{minor} under ~/.pyenv/versions")))
        if not any(i == "debian-3.11" for i, _ in pythons):
            out.append(pytest.param(None, id="debian-3.11", marks=pytest.mark.skip(
                reason=f"{DEBIAN} absent (tools/install-deps.sh installs it)")))
    if not out:
        return [pytest.param(None, marks=pytest.mark.skip(reason="no CPython 3.10-3.13 here"))]
    return out


@pytest.fixture
def pyproc():
    procs = []

    def start(exe, mode, seconds=30, prefix=()):
        p = subprocess.Popen([*prefix, exe, HOT, mode, str(seconds)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        procs.append(p)
        line = p.stdout.readline()
        assert line.startswith("ready"), (line, p.stderr.read() if p.poll() is not None else "")
        time.sleep(0.3)  # past the imports
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def profile(workdir, name, pid, *extra, seconds=3):
    out = os.path.join(workdir, name)
    r = run_cprof("-p", pid, "-d", seconds, "-F", 199, "-o", out, *extra)
    return out, r.stderr.decode()


def py_only(fns, names):
    """The frames of fns that are in names, leaf first."""
    return [f for f in fns if f in names]


CHAIN = {"spin", "work_a", "work_b", "recurse", "slow_path", "main"}


@pytest.mark.parametrize("exe", params(PYTHONS, every_version=True))
def test_ratio_and_chain(workdir, pyproc, exe):
    p = pyproc(exe, "ratio")
    out, err = profile(workdir, "ratio.pb.gz", p.pid)
    traces = pprof_traces(out)
    hot = [(v, fns) for v, fns in traces if "spin" in fns]
    hot_share, total = trace_share(traces, lambda fns: "spin" in fns)
    assert hot_share >= 0.8, (hot_share, traces[:5], err)
    # The chain, Python frames only, root first: main slow_path recurse x4 work_X spin.
    want = lambda leaf: ["spin", leaf, "recurse", "recurse", "recurse", "recurse",
                         "slow_path", "main"]
    complete, _ = trace_share(hot, lambda fns: py_only(fns, CHAIN) in
                              (want("work_a"), want("work_b")))
    assert complete >= 0.95, (complete, hot[:5])
    a, _ = trace_share(hot, lambda fns: "work_a" in fns)
    # work_a spins 3x work_b's count: 75% of the hot time, within 10 points.
    assert abs(a - 0.75) <= 0.10, (a, hot[:5])
    # The C frames that run the interpreter stay below the Python ones.
    assert trace_share(hot, lambda fns: fns.index("main") < len(fns) - 1 and
                       any("Py_RunMain" in f or "Py_BytesMain" in f or "_start" in f
                           for f in fns[fns.index("main"):]))[0] >= 0.9, hot[:3]


def line_of(marker):
    with open(HOT) as f:
        for i, line in enumerate(f, 1):
            if marker in line:
                return i
    raise KeyError(marker)


def pprof_lines(path, sample_index=None):
    """(value, [(function, file, line) leaf first]) from `go tool pprof -traces -lines`."""
    out = []
    extra = ("-lines",) + ((f"-sample_index={sample_index}",) if sample_index else ())
    for v, fns in pprof_traces(path, extra=extra):
        frames = []
        for f in fns:
            m = re.match(r"(.*?) (\S+):(\d+)$", f)
            frames.append((m.group(1), m.group(2), int(m.group(3))) if m else (f, "", 0))
        out.append((v, frames))
    return out


@pytest.mark.parametrize("exe", params(FEATURE_PYTHONS))
def test_lines_and_files(workdir, pyproc, exe):
    p = pyproc(exe, "ratio")
    out, _ = profile(workdir, "lines.pb.gz", p.pid)
    traces = pprof_lines(out)
    seen = {}
    for v, frames in traces:
        for fn, file, line in frames:
            if fn in ("work_a", "work_b", "spin"):
                seen.setdefault((fn, line), 0)
                seen[(fn, line)] += v
                assert file.endswith("hot.py"), frames
    assert ("work_a", line_of("# HOT-A")) in seen, seen
    assert ("work_b", line_of("# HOT-B")) in seen, seen
    spin = {ln: v for (fn, ln), v in seen.items() if fn == "spin"}
    # The loop of spin: its body and its `for` line hold nearly all of its time.
    loop = {line_of("# HOT-SPIN"), line_of("# HOT-SPIN") - 1}
    assert sum(v for ln, v in spin.items() if ln in loop) >= 0.9 * sum(spin.values()), spin
    # The profile says what Python frames are: their own mapping.
    raw = go_pprof("-raw", out)
    assert "[python]" in raw, raw[-2000:]


MODES = {
    "method": ("Engine.crunch", "# HOT-METHOD"),
    "gen": ("gen", "# HOT-GEN"),
    "coro": ("coro", "# HOT-CORO"),
    "zlib": ("compress_loop", "# HOT-ZLIB"),
}


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("exe", params(FEATURE_PYTHONS))
def test_shapes(workdir, pyproc, exe, mode):
    fn, marker = MODES[mode]
    if fn == "Engine.crunch" and "3.10" in exe:
        fn = "crunch"  # 3.10 code objects have no qualified name
    p = pyproc(exe, mode)
    out, _ = profile(workdir, f"{mode}.pb.gz", p.pid)
    traces = pprof_lines(out)
    hits = [(v, frames) for v, frames in traces if any(f[0] == fn for f in frames)]
    share, _ = trace_share(traces, lambda frames: any(f[0] == fn for f in frames))
    assert share >= 0.8, (share, traces[:4])
    lines = {f[2] for _, frames in hits for f in frames if f[0] == fn}
    assert line_of(marker) in lines, lines
    if mode == "zlib":
        # zlib's C code runs under the Python line that called it.
        under, _ = trace_share(hits, lambda frames: any(
            "deflate" in f[0] or "compress" in f[0].lower() and f[0] != fn
            for f in frames[:[f[0] for f in frames].index(fn)]))
        assert under >= 0.5, hits[:3]
    if mode == "coro":
        assert any(f[0] == "run_forever" or "run_until_complete" in f[0] or f[0] == "_run_once"
                   for _, frames in hits for f in frames), hits[:2]


@pytest.mark.parametrize("exe", params(FEATURE_PYTHONS))
def test_threads_own_stacks(workdir, pyproc, exe):
    p = pyproc(exe, "threads")
    out, _ = profile(workdir, "threads.pb.gz", p.pid)
    traces = pprof_traces(out)
    one = [fns for _, fns in traces if "thread_one" in fns]
    two = [fns for _, fns in traces if "thread_two" in fns]
    assert one and two, traces[:5]
    # Each thread's samples carry its own stack, never the other's.
    assert not any("thread_two" in fns for fns in one)
    for fns in one + two:
        assert any(f.endswith(("run", "_bootstrap_inner")) for f in fns), fns
        assert "main" not in fns, fns


@pytest.mark.parametrize("exe", params(PYTHONS, every_version=True))
def test_threads_snapshot_python_frames(workdir, pyproc, exe):
    """A threads snapshot of a CPython process: every thread's Python frames, at their lines,
    in place of the interpreter's, read from the running process's memory by the task
    iterator; the native frames below stay."""
    p = pyproc(exe, "parked")
    out = os.path.join(workdir, "threads.pb.gz")
    r = run_cprof("-t", "threads", "-p", p.pid, "-o", out)
    traces = pprof_lines(out)
    want = {"parked_sleep": "# PARKED-SLEEP", "parked_lock": "# PARKED-LOCK",
            "parked_main": "# PARKED-MAIN"}
    for fn, marker in want.items():
        stacks = [frames for _, frames in traces if any(f[0] == fn for f in frames)]
        assert len(stacks) == 1, (fn, traces, r.stderr.decode())
        names = [f[0] for f in stacks[0]]
        # the function at its line, below the C function it waits in
        assert [f[2] for f in stacks[0] if f[0] == fn] == [line_of(marker)], stacks[0]
        assert names.index(fn) > 0, names
        if fn == "parked_main":
            assert "main" in names[names.index(fn):], names
        else:  # a thread of threading: its Python callers down to the thread's entry
            assert any(n.endswith("_bootstrap_inner") for n in names), names
    text = run_cprof("-t", "threads", "-p", p.pid, "-f", "text").stdout.decode()
    assert text.count("parked_") >= 3, text


@pytest.mark.parametrize("exe", params(FEATURE_PYTHONS))
def test_heap_python_line(workdir, pyproc, exe):
    p = pyproc(exe, "alloc")
    out, err = profile(workdir, "heap.pb.gz", p.pid, "-t", "heap")
    traces = pprof_lines(out, "alloc_space")
    hits, total = trace_share(traces, lambda frames: any(
        f[0] == "alloc_loop" and f[2] == line_of("# HOT-ALLOC") for f in frames))
    assert total > 0, err
    assert hits >= 0.5, traces[:4]


@pytest.mark.parametrize("exe", params(FEATURE_PYTHONS))
def test_offcpu_sleep(workdir, pyproc, exe):
    p = pyproc(exe, "sleep")
    out, err = profile(workdir, "offcpu.pb.gz", p.pid, "-t", "offcpu")
    traces = pprof_lines(out)
    hits, total = trace_share(traces, lambda frames: any(
        f[0] == "sleeper" and f[2] == line_of("# HOT-SLEEP") for f in frames))
    assert total > 0, err
    assert hits >= 0.8, traces[:4]


def test_exit_mid_profile(workdir, pyproc):
    exe = (FEATURE_PYTHONS or PYTHONS or [(None, None)])[-1][1]
    if not exe:
        pytest.skip("no CPython 3.10-3.13 here")
    p = pyproc(exe, "ratio", seconds=120)
    out = os.path.join(workdir, "exit.pb.gz")
    prof = start_cprof("-v", "-p", p.pid, "-d", 60, "-F", 199, "-o", out)
    seen = read_until(prof.stderr, "profiling")
    assert "profiling" in seen, seen
    time.sleep(2)
    p.kill()  # mid-profile: cprof-bpf ends with its target
    p.wait()
    _, err = prof.communicate(timeout=120)
    assert prof.returncode == 0, seen + err
    traces = pprof_traces(out)
    hot = [(v, fns) for v, fns in traces if "spin" in fns]
    assert hot, traces[:5]
    # The code objects were read while the process lived (announced by the walker the first
    # time each was seen): the frames still resolve once it is gone.
    complete, _ = trace_share(hot, lambda fns: "slow_path" in fns and "main" in fns)
    assert complete >= 0.9, hot[:3]
    unreadable = sum(1 for _, fns in traces for f in fns if "unreadable" in f)
    if unreadable:
        assert "Python frames unreadable" in go_pprof("-comments", out)


def test_other_mount_namespace(workdir, pyproc):
    if not os.path.exists(DEBIAN) or not shutil.which("unshare"):
        pytest.skip("needs Debian's python3.11 (one self-contained executable) and unshare")
    hidden = os.path.join(workdir, "nsonly")
    os.makedirs(hidden, exist_ok=True)
    # In a private mount namespace, a tmpfs over `hidden` holds a copy of the interpreter: from
    # our namespace the directory is empty, so the executable is reached through /proc/PID/root
    # alone (its symbols, its tables, its _PyRuntime).
    script = (f'mount -t tmpfs none "{hidden}" && cp {DEBIAN} "{hidden}/python3.11" && '
              f'exec "{hidden}/python3.11" "$@"')
    p = pyproc("sh", "ratio", prefix=("unshare", "-m", "--propagation", "private", "--",
                                      "sh", "-c", script))
    assert not os.path.exists(os.path.join(hidden, "python3.11"))
    assert os.readlink(f"/proc/{p.pid}/exe").startswith(hidden)
    out, err = profile(workdir, "mntns.pb.gz", p.pid)
    traces = pprof_traces(out)
    share, _ = trace_share(traces, lambda fns: "spin" in fns and "slow_path" in fns)
    assert share >= 0.8, (share, traces[:3], err)


def layout_table():
    src = open(os.path.join(ROOT, "user", "python", "probe.c")).read()
    out = {}
    for _, minor, body in re.findall(r"\[(\d)\] = /\* 3\.(\d+) \*/\s*\{(.*?)\n\t\}", src, re.S):
        out[int(minor)] = {k: 0xFFFF if v == "N" else int(v)
                           for k, v in re.findall(r"\.(\w+) = (\w+),", body)}
    return out


@pytest.mark.parametrize("exe", params([p for p in PYTHONS if "3.13" not in p[0]]))
def test_layout_table_matches_interpreter(exe):
    table = layout_table()
    minor = int(re.search(r"python3\.(\d+)$", exe).group(1))
    assert minor in table, sorted(table)
    r = subprocess.run([exe, LAYOUT_CHECK, json.dumps(table[minor])], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "layout ok" in r.stdout, r.stdout + r.stderr
