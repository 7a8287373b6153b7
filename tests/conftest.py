"""Shared fixtures of the end-to-end suite: paths, fixture programs built on demand, helpers to
run cprof-bpf and to read its profiles through the reference consumer, `go tool pprof`."""
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The suite runs against the ASan+UBSan build unless told otherwise; test_release.py checks the
# release build too.
CPROF = os.environ.get("CPROF_BIN", os.path.join(ROOT, "build", "san", "cprof-bpf"))
RELEASE = os.path.join(ROOT, "build", "cprof-bpf")
FIXTURES = os.path.join(ROOT, "tests", "fixtures")

# ASan: fail on any report; LeakSanitizer on. UBSan: abort on the first error.
SAN_ENV = {
    "ASAN_OPTIONS": "abort_on_error=1:detect_leaks=1:exitcode=99",
    "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1:exitcode=98",
}


def san_env(**extra):
    """The environment for cprof-bpf: ours, the sanitizers' options and extra."""
    return dict(os.environ, **SAN_ENV, **extra)


def assert_no_sanitizer(stderr):
    """A sanitizer report in cprof-bpf's stderr fails the test."""
    assert "Sanitizer" not in stderr and "runtime error" not in stderr, stderr


@pytest.fixture(scope="session")
def workdir():
    d = tempfile.mkdtemp(prefix="cprof-test-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


_built = {}


def build(workdir, src, out, flags=("-O2", "-g", "-fno-omit-frame-pointer"), extra=(), cc="cc"):
    """Builds tests/fixtures/SRC into workdir/OUT once per session (with cc: g++ for C++)."""
    key = (src, out, tuple(flags), tuple(extra), cc)
    if key in _built:
        return _built[key]
    path = os.path.join(workdir, out)
    cmd = [cc, *flags, "-o", path, os.path.join(FIXTURES, src), *extra]
    subprocess.run(cmd, check=True)
    _built[key] = path
    return path


def build_fp_variant(workdir, src, name, variant, extra=()):
    """Builds tests/fixtures/SRC as NAME-fp (with frame pointers) or NAME-nofp (without), for the
    fixtures parametrized over both ("fp", "nofp")."""
    fp = "-fno-omit-frame-pointer" if variant == "fp" else "-fomit-frame-pointer"
    return build(workdir, src, f"{name}-{variant}", flags=("-O2", "-g", fp), extra=extra)


@pytest.fixture(scope="session")
def workload(workdir):
    return build(workdir, "workload.c", "workload")


class Proc:
    """A fixture process started in the background, killed at the end of the test."""

    def __init__(self, argv, wait_ready=True):
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if wait_ready:
            line = self.p.stdout.readline()
            assert line.startswith("ready"), f"fixture did not start: {line!r}"
        self.pid = self.p.pid

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()


@pytest.fixture
def spawn():
    procs = []

    def start(*argv, **kw):
        pr = Proc([str(a) for a in argv], **kw)
        procs.append(pr)
        return pr

    yield start
    for pr in procs:
        pr.stop()


def run_cprof(*args, binary=None, timeout=120, check=True, input=None):
    """Runs cprof-bpf; returns the CompletedProcess. Sanitizer reports fail the test."""
    r = subprocess.run([binary or CPROF, *[str(a) for a in args]], capture_output=True,
                       timeout=timeout, env=san_env(), input=input)
    stderr = r.stderr.decode(errors="replace")
    assert_no_sanitizer(stderr)
    if check:
        assert r.returncode == 0, f"cprof-bpf {args} failed ({r.returncode}): {stderr}"
    return r


def start_cprof(*args, stdout=None, stderr=subprocess.PIPE, **kw):
    """Starts cprof-bpf in the background under the sanitizers' options, pipes in text mode."""
    return subprocess.Popen([CPROF, *[str(a) for a in args]], stdout=stdout, stderr=stderr,
                            text=True, env=san_env(), **kw)


def read_until(stream, marker, timeout=60):
    """Reads a child's pipe until marker appears, the pipe ends or timeout seconds pass; returns
    what it read (the caller asserts that marker is in it). It reads the descriptor, not the
    buffered file: lines read ahead into the file's buffer would sit there unseen by select()."""
    fd, seen, want = stream.fileno(), b"", marker.encode()
    end = time.monotonic() + timeout
    while want not in seen and time.monotonic() < end:
        if select.select([fd], [], [], 0.5)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            seen += chunk
    return seen.decode(errors="replace")


def profile_gated(argv, *args, timeout=60, stdin_gate=False, env=None):
    """Profiles a fixture whose work waits for the profiler: it prints `ready`, then waits for
    SIGUSR1 (or, with stdin_gate, for a byte on its stdin). Attaches `cprof-bpf -v -p PID ARGS`,
    releases the fixture once cprof-bpf says it is profiling, and waits for both to end
    (cprof-bpf stops with its target). Returns (the fixture's stdout after `ready`, cprof-bpf's
    stderr)."""
    w = subprocess.Popen([str(a) for a in argv], stdout=subprocess.PIPE, text=True, env=env,
                         stdin=subprocess.PIPE if stdin_gate else None)
    p = None
    try:
        assert w.stdout.readline().startswith("ready")
        p = start_cprof(*args, "-v", "-p", w.pid)
        err = read_until(p.stderr, "profiling", timeout)
        assert "profiling" in err, err
        if stdin_gate:
            w.stdin.write("g")
            w.stdin.flush()
        else:
            w.send_signal(signal.SIGUSR1)
        out = w.communicate(timeout=timeout)[0]
        err += p.communicate(timeout=timeout)[1]
        assert p.returncode == 0, err
        assert_no_sanitizer(err)
        return out, err
    finally:
        for proc in (w, p):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


def go_pprof_run(*args):
    """Runs `go tool pprof ARGS`; returns the CompletedProcess (text)."""
    home = tempfile.gettempdir()
    env = dict(os.environ, HOME=os.environ.get("HOME", home),
               GOCACHE=os.path.join(home, "cprof-gocache"), GOFLAGS="-mod=mod")
    return subprocess.run(["go", "tool", "pprof", *[str(a) for a in args]], capture_output=True,
                          text=True, env=env, timeout=120)


def go_pprof(*args, check=True):
    """Runs `go tool pprof ARGS` and returns its stdout."""
    r = go_pprof_run(*args)
    if check:
        assert r.returncode == 0, f"go tool pprof {args} failed: {r.stderr}"
    return r.stdout


_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "mins": 60.0, "hrs": 3600.0,
          "B": 1, "kB": 1024, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3, "TB": 1024 ** 4}


def _num(tok):
    m = re.fullmatch(r"([0-9.]+)([a-zA-Zµ]*)", tok)
    if not m:
        raise ValueError(tok)
    return float(m.group(1)) * _UNITS.get(m.group(2), 1)


def pprof_top(path, sample_index=None, extra=()):
    """Parses `go tool pprof -top`: {function: (flat, cum)} and the total."""
    args = ["-top", "-nodefraction=0", "-nodecount=100000", *extra]
    if sample_index:
        args.append(f"-sample_index={sample_index}")
    out = go_pprof(*args, path)
    rows, total = {}, None
    for line in out.splitlines():
        m = re.match(r"Showing nodes accounting for .*? of (\S+) total", line)
        if m:
            total = _num(m.group(1))
            continue
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[1].endswith("%") and parts[4].endswith("%"):
            rows[parts[5].strip()] = (_num(parts[0]), _num(parts[3]))
    return rows, total


def pprof_traces(path, extra=()):
    """Parses `go tool pprof -traces`: a list of (value, [leaf..root function names])."""
    out = go_pprof("-traces", *extra, path)
    traces, cur = [], None
    for line in out.splitlines():
        if line.startswith("-----------+"):
            if cur:
                traces.append(cur)
            cur = None
            continue
        if "|" in line[:12] or not line.strip() or cur is None and not line[:11].strip():
            continue
        head, fn = line[:11].strip(), line[11:].strip()
        if head and cur is None:
            try:
                cur = (_num(head), [fn])
            except ValueError:
                cur = None
        elif cur is not None and fn:
            cur[1].append(fn)
    if cur:
        traces.append(cur)
    return traces


def trace_share(traces, pred):
    """(share of the value of traces whose functions satisfy pred, total value); 0.0 of none."""
    total = sum(v for v, _ in traces)
    return sum(v for v, fns in traces if pred(fns)) / total if total else 0.0, total


def wait_for(pred, timeout=10.0, step=0.05):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(step)
    return False
