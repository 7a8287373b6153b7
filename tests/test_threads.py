"""threads (Go's goroutine profile for any process), end to end: a fixture parks threads at known
places (tests/fixtures/threadpark.c); `cprof-bpf -t threads` snapshots them from BPF without
stopping the process, and every thread must appear with its function chain, state and wait,
the mutex waiter naming the holder, a deadlock named as one. Frames are cross-checked against
gdb's `thread apply all bt` after the snapshot. Every subprocess has a timeout: a hang fails."""
import os
import re
import signal
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from conftest import assert_no_sanitizer, build_fp_variant, go_pprof, pprof_traces, run_cprof
from test_serve import get, server  # noqa: F401 (the fixture)

SNAP_TIMEOUT = 60  # seconds: a snapshot returns at once; this only turns a hang into a failure

# name -> (the fixture's functions on its stack, innermost first; wait label; state)
PARKED = {
    "holder": (["hold_and_sleep", "hold_and_sleep_main"], "clock_nanosleep", "sleeping"),
    "waiter": (["wait_for_mutex", "wait_for_mutex_main"], "mutex", "sleeping"),
    "rwreader": (["wait_for_rwlock", "wait_for_rwlock_main"], "rwlock", "sleeping"),
    "reader": (["block_in_read", "block_in_read_main"], "read", "sleeping"),
    "sleeper": (["sleep_in_nanosleep", "sleep_in_nanosleep_main"], "clock_nanosleep",
                "sleeping"),
    "condwait": (["wait_on_cond", "wait_on_cond_main"], "condvar", "sleeping"),
    "epoller": (["wait_in_epoll", "wait_in_epoll_main"], "epoll_wait", "sleeping"),
    "semwait": (["wait_on_sem", "wait_on_sem_main"], "semaphore", "sleeping"),
    "main": (["park", "main"], "join", "sleeping"),
}
# The glibc function each wait goes through (on the user stack above the fixture's).
LIBC = {"waiter": "pthread_mutex_lock", "condwait": "pthread_cond_wait",
        "reader": "read", "epoller": "epoll_wait"}
FIXTURE_FNS = {f for fns, _, _ in PARKED.values() for f in fns} | {"spin_forever",
                                                                  "spin_forever_main",
                                                                  "lock_in_order", "dl_a_main",
                                                                  "dl_b_main", "deadlock"}


@pytest.fixture(scope="session", params=["fp", "nofp"])
def threadpark(workdir, request):
    return build_fp_variant(workdir, "threadpark.c", "threadpark", request.param, extra=("-pthread",))


class Park:
    """A threadpark process: its pid, its named threads' tids, killed at the end."""

    def __init__(self, binary, *args):
        self.p = subprocess.Popen([binary, *[str(a) for a in args]], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        self.pid = self.p.pid
        self.tids, self.locks, self.child = {}, {}, None
        end = time.monotonic() + 60
        line = self.p.stdout.readline()
        assert line.startswith("ready"), f"fixture did not start: {line!r}"
        # The named threads follow `ready` at once (line-buffered); wait for them.
        want = {"park": lambda: len(self.tids) >= 10,
                "deadlock": lambda: len(self.tids) >= 3 and len(self.locks) == 2,
                "zombie": lambda: self.child is not None}.get(args[0], lambda: True)
        while time.monotonic() < end:
            self._read_lines()
            if want():
                break
            time.sleep(0.05)

    def _read_lines(self):
        os.set_blocking(self.p.stdout.fileno(), False)
        for line in self.p.stdout:
            w = line.split()
            if len(w) == 3 and w[0] == "tid":
                self.tids[w[1]] = int(w[2])
            elif len(w) == 3 and w[0] == "lock":
                self.locks[w[1]] = int(w[2], 16)
            elif len(w) == 2 and w[0] == "child":
                self.child = int(w[1])

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait(timeout=30)


@pytest.fixture
def park():
    procs = []

    def start(*a):
        pr = Park(*a)
        procs.append(pr)
        return pr

    yield start
    for pr in procs:
        pr.stop()


def snapshot_text(*targets, fmt="text"):
    r = run_cprof("-t", "threads", *targets, "-f", fmt, "-o", "-", timeout=SNAP_TIMEOUT)
    return r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


HEADER = re.compile(r'^thread (\d+) "(.*)" \[(.*)\]:$')


def parse_dump(text):
    """Go's goroutine dump layout: {tid: {name, header fields, notes, functions}}."""
    threads, cur = {}, None
    for line in text.splitlines():
        m = HEADER.match(line)
        if m:
            cur = {"name": m.group(2), "fields": [f.strip() for f in m.group(3).split(",")],
                   "notes": [], "fns": [], "files": []}
            threads[int(m.group(1))] = cur
        elif cur is None or not line:
            continue
        elif line.startswith("#"):
            cur["notes"].append(line)
        elif line.startswith("\t"):
            cur["files"].append(line.strip())
        elif line.endswith("(...)"):
            cur["fns"].append(line[:-5])
    return threads


def gdb_backtraces(pid):
    """{tid: [function, ...]} from gdb's `thread apply all bt` (innermost first)."""
    r = subprocess.run(["gdb", "-p", str(pid), "-batch", "-nx", "-ex", "thread apply all bt"],
                       capture_output=True, text=True, timeout=120)
    out, bts, cur = r.stdout, {}, None
    for line in out.splitlines():
        m = re.match(r"^Thread \d+ \(.*LWP (\d+)\)", line)
        if m:
            cur = bts.setdefault(int(m.group(1)), [])
            continue
        m = re.match(r"^#\d+\s+(?:0x[0-9a-f]+ in )?(\S+) \(", line)
        if m and cur is not None:
            cur.append(m.group(1))
    return bts


def tracer_pid(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("TracerPid:"):
                return int(line.split()[1])
    return -1


def in_order(fns, want):
    """want's functions appear in fns in that order (others may sit between)."""
    idx = [fns.index(f) if f in fns else -1 for f in want]
    return all(i >= 0 for i in idx) and idx == sorted(idx)


def test_parked_threads_state_wait_holder_and_gdb(threadpark, park):
    tp = park(threadpark, "park")
    text, err = snapshot_text("-p", tp.pid)
    threads = parse_dump(text)
    assert f"process {tp.pid}" in text, text
    assert len(threads) == 10, text
    for name, (chain, wait, state) in PARKED.items():
        tid = tp.tids[name]
        t = threads.get(tid)
        assert t, (name, text)
        assert t["name"] == name, t
        assert t["fields"][0] == wait and t["fields"][1] == state, (name, t["fields"])
        # time in state: a duration; the threads have been parked for at least 0.3 s
        assert re.match(r"^[\d.]+(us|ms|s|m\d+s|h\d+m)$", t["fields"][2]), t["fields"]
        assert in_order(t["fns"], chain), (name, t["fns"])
        # the user stack goes down to the thread's entry
        assert t["fns"][-1] in ("clone3", "clone", "_start"), (name, t["fns"])
        if name in LIBC:
            assert any(LIBC[name] in f for f in t["fns"]), (name, t["fns"])
        # a thread in a syscall has its kernel stack (kernel frames carry no file:line)
        assert any(f.startswith("entry_SYSCALL") for f in t["fns"]), (name, t["fns"])
    waiter = threads[tp.tids["waiter"]]
    assert any(f"held by thread {tp.tids['holder']} (holder)" in n for n in waiter["notes"]), \
        waiter["notes"]
    assert any(re.search(r"futex\(0x[0-9a-f]+, FUTEX_WAIT", n) for n in waiter["notes"])
    reader = threads[tp.tids["reader"]]
    assert any(re.search(r"read\(fd \d+: pipe:", n) for n in reader["notes"]), reader["notes"]
    epoller = threads[tp.tids["epoller"]]
    assert any("epoll_wait(fd" in n for n in epoller["notes"]), epoller["notes"]
    assert any(f"thread {tp.tids['holder']} (holder) to exit" in n
               for n in threads[tp.tids["main"]]["notes"])
    # the spinner is on a CPU or queued for one: said so, never a made-up wait
    spin = threads[tp.tids["spinner"]]
    assert spin["fields"][0] in ("running", "runnable"), spin["fields"]
    if spin["fields"][0] == "running":
        assert any("running on CPU" in n and "no kernel stack" in n for n in spin["notes"])
    assert "spin_forever" in spin["fns"], spin["fns"]
    assert "DEADLOCK" not in text and "deadlock" not in err, text
    # no ptrace: nobody traces the target after the snapshot
    assert tracer_pid(tp.pid) == 0
    # gdb, after the snapshot, sees the same fixture functions in the same order
    bts = gdb_backtraces(tp.pid)
    assert len(bts) == 10, bts
    for name in PARKED:
        tid = tp.tids[name]
        ours = [f for f in threads[tid]["fns"] if f in FIXTURE_FNS]
        theirs = [f for f in bts[tid] if f in FIXTURE_FNS]
        assert ours == theirs, (name, threads[tid]["fns"], bts[tid])


def test_pprof_goroutine_shape(threadpark, park, workdir):
    tp = park(threadpark, "park")
    path = f"{workdir}/threads-{os.path.basename(threadpark)}.pb.gz"
    run_cprof("-t", "threads", "-p", tp.pid, "-o", path, timeout=SNAP_TIMEOUT)
    top = go_pprof("-top", path)
    assert "Type: goroutine" in top, top
    raw = go_pprof("-raw", path)
    assert "goroutine/count" in raw, raw
    traces = pprof_traces(path)
    assert sum(v for v, _ in traces) == 10, traces
    # one sample per distinct stack, labelled with state and wait
    assert re.search(r"state:\[sleeping\]", raw) and re.search(r"wait:\[mutex\]", raw), raw
    comments = go_pprof("-comments", path)
    assert "deadlocks: none" in comments, comments
    assert any(in_order(fns, ["wait_for_mutex", "wait_for_mutex_main"]) for _, fns in traces)
    folded, _ = snapshot_text("-p", tp.pid, fmt="folded")
    assert "wait_for_mutex_main;wait_for_mutex;" in folded, folded
    top_text, _ = snapshot_text("-p", tp.pid, fmt="top")
    # ten threads, five of them in a futex wait (mutex, rwlock, condvar, semaphore, join)
    assert "of 10 total" in top_text, top_text
    assert re.search(r"^\s+5 .*futex_do_wait$", top_text, re.M), top_text


def test_deadlock_reported_with_both_tids_and_locks(threadpark, park, workdir):
    tp = park(threadpark, "deadlock")
    a, b = tp.tids["dl-a"], tp.tids["dl-b"]
    la, lb = tp.locks["lock_a"], tp.locks["lock_b"]
    text, err = snapshot_text("-p", tp.pid)
    cyc = [line for line in text.splitlines() if line.startswith("DEADLOCK")]
    assert len(cyc) == 1, text
    for s in (f"thread {a} (dl-a)", f"thread {b} (dl-b)", f"lock {la:#x}", f"lock {lb:#x}"):
        assert s in cyc[0], (s, cyc[0])
    assert "deadlock" in err, err
    threads = parse_dump(text)
    assert any(f"held by thread {b} (dl-b)" in n for n in threads[a]["notes"])
    assert any(f"held by thread {a} (dl-a)" in n for n in threads[b]["notes"])
    path = f"{workdir}/deadlock-{os.path.basename(threadpark)}.pb.gz"
    run_cprof("-t", "threads", "-p", tp.pid, "-o", path, timeout=SNAP_TIMEOUT)
    comments = go_pprof("-comments", path)
    assert re.search(rf"deadlock \(cycle 1\): thread {a} .*thread {b}", comments), comments
    raw = go_pprof("-raw", path)
    assert raw.count("deadlock:[cycle 1]") == 2, raw


def test_target_keeps_running_and_is_not_traced(threadpark, park, workdir):
    shm = f"{workdir}/spin-{os.path.basename(threadpark)}"
    tp = park(threadpark, "park", shm)
    fd = os.open(shm, os.O_RDWR)
    try:
        def read():
            return struct.unpack("<3Q", os.pread(fd, 24, 0))

        time.sleep(0.2)
        os.pwrite(fd, struct.pack("<Q", 0), 16)  # reset the longest gap
        before = read()[0]
        tracers, stop = [], threading.Event()

        def watch():
            while not stop.is_set():
                tracers.append(tracer_pid(tp.pid))
                time.sleep(0.005)

        w = threading.Thread(target=watch)
        w.start()
        t0 = time.monotonic()
        snapshot_text("-p", tp.pid)
        took = time.monotonic() - t0
        stop.set()
        w.join(10)
        after, _, gap = read()
        assert after > before, (before, after)
        assert tracers and set(tracers) == {0}, tracers
        # The largest gap between two spinner iterations during the snapshot (the machine is
        # shared, so the scheduler's own delays show here too): far below the snapshot's time
        # would be a pause of the whole walk, as ptrace-based tools have.
        print(f"snapshot {took * 1e3:.0f} ms, largest spinner gap {gap / 1e6:.2f} ms")
        assert gap < 500e6, gap
    finally:
        os.close(fd)


def test_thousand_threads(threadpark, park, workdir):
    tp = park(threadpark, "many", 1000)
    path = f"{workdir}/many-{os.path.basename(threadpark)}.pb.gz"
    r = run_cprof("-t", "threads", "-p", tp.pid, "-o", path, timeout=SNAP_TIMEOUT)
    traces = pprof_traces(path)
    assert sum(v for v, _ in traces) == 1001, traces
    sleeping = sum(v for v, fns in traces if in_order(fns, ["sleep_in_nanosleep", "many_main"]))
    assert sleeping == 1000, (sleeping, traces[:3], r.stderr.decode()[-2000:])


def test_churn_zombie_stopped(threadpark, park, workdir):
    # threads that start and exit while they are read: a valid snapshot, no error
    ch = park(threadpark, "churn")
    path = f"{workdir}/churn-{os.path.basename(threadpark)}.pb.gz"
    run_cprof("-t", "threads", "-p", ch.pid, "-o", path, timeout=SNAP_TIMEOUT)
    assert "Type: goroutine" in go_pprof("-top", path)
    # a zombie: shown as one
    z = park(threadpark, "zombie")
    text, _ = snapshot_text("-p", f"{z.pid},{z.child}")
    threads = parse_dump(text)
    assert threads[z.child]["fields"][0] == "zombie", text
    assert threads[z.pid]["fields"][0] == "pause", text
    # a stopped process: every thread stopped, stacks still there, and it stays stopped
    tp = park(threadpark, "park")
    os.kill(tp.pid, signal.SIGSTOP)
    try:
        time.sleep(0.2)
        text, _ = snapshot_text("-p", tp.pid)
        threads = parse_dump(text)
        assert len(threads) == 10, text
        assert all("stopped" in t["fields"] for t in threads.values()), text
        assert "wait_for_mutex" in threads[tp.tids["waiter"]]["fns"], text
        with open(f"/proc/{tp.pid}/stat") as f:
            assert f.read().rsplit(")", 1)[1].split()[0] == "T"
    finally:
        os.kill(tp.pid, signal.SIGCONT)


def free_pid():
    """A pid no process has (within pid_max)."""
    pid = 4194000
    while os.path.exists(f"/proc/{pid}"):
        pid -= 1
    return pid


def test_missing_pid():
    # A usage error (exit 2) in one line, before anything is loaded; serve's is a 404
    # (test_serve_goroutine).
    pid = free_pid()
    t0 = time.monotonic()
    r = run_cprof("-t", "threads", "-p", pid, check=False, timeout=SNAP_TIMEOUT)
    err = r.stderr.decode().strip()
    assert r.returncode == 2, (r.returncode, err)
    assert err.splitlines() == [f"cprof-bpf: no such process: {pid}"], err
    assert time.monotonic() - t0 < 10
    r = run_cprof("-t", "goroutine", "-p", f"1,{pid}", "-f", "text", check=False,
                  timeout=SNAP_TIMEOUT)
    assert r.returncode == 2 and r.stdout == b"", (r.returncode, r.stderr)
    assert f"no such process: {pid}" in r.stderr.decode(), r.stderr
    r = run_cprof("-t", "threads", "-p", "1", "-d", "1", check=False, timeout=SNAP_TIMEOUT)
    assert r.returncode != 0 and "snapshot" in r.stderr.decode(), r.stderr


def test_whole_system(park, threadpark):
    tp = park(threadpark, "park")
    text, _ = snapshot_text("-a", fmt="grouped")
    assert text.startswith("threads profile: total "), text[:200]
    # other processes are there too; ours with its waits
    assert re.search(r"^\d+ @ 0x", text, re.M), text[:500]
    assert f'"pid":"{tp.pid}"' in text and '"wait":"mutex"' in text, text[:2000]


def test_serve_goroutine(threadpark, park, server, workdir):  # noqa: F811
    sv = server()
    tp = park(threadpark, "park")
    url = f"{sv.url}/debug/pprof/goroutine?pid={tp.pid}"
    code, _, body = get(url, timeout=SNAP_TIMEOUT)
    assert code == 200, body
    path = f"{workdir}/serve-goroutine.pb.gz"
    with open(path, "wb") as f:
        f.write(body)
    assert sum(v for v, _ in pprof_traces(path)) == 10
    # go tool pprof reads it straight from the server
    assert "Type: goroutine" in go_pprof("-top", url)
    code, hdrs, body = get(url + "&debug=1", timeout=SNAP_TIMEOUT)
    text = body.decode()
    assert code == 200 and hdrs["Content-Type"].startswith("text/plain"), (code, text)
    assert text.startswith("threads profile: total 10\n"), text[:200]
    groups = re.findall(r"^(\d+) @( 0x[0-9a-f]+)+$", text, re.M)
    assert sum(int(g[0]) for g in groups) == 10, text
    assert re.search(r"^#\t0x[0-9a-f]+\twait_for_mutex\t", text, re.M), text
    code, _, body = get(url + "&debug=2", timeout=SNAP_TIMEOUT)
    threads = parse_dump(body.decode())
    assert code == 200 and len(threads) == 10, body[:500]
    assert any(f"held by thread {tp.tids['holder']}" in n
               for n in threads[tp.tids["waiter"]]["notes"])
    assert get(f"{sv.url}/debug/pprof/goroutine?pid={free_pid()}", timeout=30)[0] == 404
    assert get(url + "&debug=7", timeout=30)[0] == 400
    assert get(url + "&hz=1", timeout=30)[0] == 400
    with urllib.request.urlopen(f"{sv.url}/debug/pprof/", timeout=30) as r:
        assert "/debug/pprof/goroutine" in r.read().decode()
    code, _, _ = get(f"{sv.url}/debug/pprof/flamegraph?type=goroutine&pid={tp.pid}",
                     timeout=SNAP_TIMEOUT)
    assert code == 200
    assert_no_sanitizer(sv.stderr())
