"""cprof-bpf agent and watch, end to end: continuous windows of the whole system, the local
store, pushes to a Pyroscope-compatible receiver written here, triggers, SIGTERM."""
import glob
import http.server
import os
import re
import signal
import socketserver
import subprocess
import threading
import time
import urllib.parse

import pytest

from conftest import (assert_no_sanitizer, build, go_pprof, pprof_top, run_cprof, start_cprof,
                      wait_for)


@pytest.fixture(scope="session")
def load(workdir):
    return build(workdir, "agent_load.c", "agent_load", extra=("-pthread",))


def start_agent(*args, sub="agent"):
    # These tests are about windows, labels, store, push and triggers: frame pointers keep the
    # sanitizer build's memory (tables of every sampled executable) out of their way. The
    # default (--unwind auto) is tested in test_agent_unwind.py.
    if sub == "agent" and "--unwind" not in args:
        args = (*args, "--unwind", "fp")
    return start_cprof(sub, *args, stdout=subprocess.PIPE)


def finish(p, timeout=60):
    out, err = p.communicate(timeout=timeout)
    assert_no_sanitizer(err)
    assert p.returncode == 0, f"agent failed ({p.returncode}): {err}"
    return err


def cpu_seconds_of_child(p):
    """Waits for a child started with Popen; returns its CPU time (user + system)."""
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return ru.ru_utime + ru.ru_stime


def windows(d):
    return sorted(glob.glob(os.path.join(d, "cpu-*.pb.gz")))


def raw_samples(path):
    """(count, {label: value}) per sample of `go tool pprof -raw`."""
    out = go_pprof("-raw", path)
    samples, cur = [], None
    for line in out.splitlines():
        m = re.match(r"\s+(\d+)\s+\d+: [\d ]+$", line)
        if m:
            cur = (int(m.group(1)), {})
            samples.append(cur)
            continue
        if cur is not None and ":[" in line:
            for k, v in re.findall(r"(\w+):\[([^\]]*)\]", line):
                cur[1][k] = v
        elif not line.startswith(" "):
            cur = None
    return samples


def samples_of(path, pid):
    return sum(c for c, l in raw_samples(path) if l.get("pid") == str(pid))


def test_windows_labels_and_short_lived(load, workdir, tmp_path):
    out = tmp_path / "store"
    a = start_agent("-o", out, "-i", 1, "-d", 6, "-F", 199, "--host", "testhost", "-l", "env=ci",
                    "-l", "team=prof", "-v")
    time.sleep(1.2)
    busy = subprocess.Popen([load, "busy", "2.5"], stdout=subprocess.PIPE)
    shorts = []
    for _ in range(3):  # processes that live 200 ms
        s = subprocess.Popen([load, "short", "200"])
        s.wait()
        shorts.append(s.pid)
        time.sleep(0.2)
    busy_cpu = cpu_seconds_of_child(busy)
    err = finish(a)
    files = windows(out)
    assert len(files) >= 5, (files, err)
    # Windows are consecutive: each starts where the previous one ended.
    total = 0
    for f in files:
        total += samples_of(f, busy.pid)
    # Every sample of the busy process is in some window, none lost between windows:
    # samples x period is its CPU time (199 Hz: 1 sample per 5 ms).
    measured = total / 199.0
    assert 0.8 * busy_cpu <= measured <= 1.2 * busy_cpu, (total, busy_cpu)
    # Labels of the busy process: pid, comm, executable, cgroup, host and the user labels.
    labels = [l for f in files for c, l in raw_samples(f) if l.get("pid") == str(busy.pid)]
    assert labels
    l = labels[0]
    assert l["comm"] == "agent_load" and l["exe"] == load, l
    assert l["host"] == "testhost" and l["env"] == "ci" and l["team"] == "prof", l
    assert l["cgroup"].startswith("/"), l
    # The short-lived processes are symbolized though they exited long before their window
    # was written. (A window may hold only a process's first samples, in ld.so's start-up:
    # its hot function is looked for in all of its windows together.)
    found = set()
    for pid in shorts:
        names = {}
        for f in files:
            rows, _ = pprof_top(f, "samples", extra=[f"-tagfocus=pid={pid}"])
            names.update(rows)
        if names:
            assert "short_lived_hot" in names, (pid, names)
            found.add(pid)
    assert found == set(shorts), (found, shorts)
    # Every window is a valid profile with the agent's comments.
    comments = go_pprof("-comments", files[0])
    assert "whole system" in comments and "dropped: " in comments, comments


def functions_of(files, pid):
    names = set()
    for f in files:
        rows, _ = pprof_top(f, "samples", extra=[f"-tagfocus=pid={pid}"])
        names |= set(rows)
    return names


def test_exec_and_pid_reuse(load, workdir, tmp_path):
    out = tmp_path / "store"
    a = start_agent("-o", out, "-i", 0.5, "-d", 7, "-F", 199)
    time.sleep(1)
    # exec: the same pid runs another program image (new mappings, new addresses).
    e = subprocess.Popen([load, "exec", "1200", "1.2"], stdout=subprocess.PIPE)
    e.wait()
    # pid reuse: a new process under the number of one that exited. ns_last_pid makes the
    # kernel hand out that number next; other processes may take it first, so try again.
    other = os.path.join(workdir, "agent_load_copy")
    if not os.path.exists(other):
        subprocess.run(["cp", load, other], check=True)
    reused = None
    for _ in range(20):
        first = subprocess.Popen([load, "short", "700"])
        first.wait()
        time.sleep(0.6)  # its window is written before the number comes back
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(first.pid - 1))
        second = subprocess.Popen([other, "spike", "0", "0.7"], stdout=subprocess.PIPE)
        second.wait()
        if second.pid == first.pid:
            reused = first.pid
            break
    finish(a)
    files = windows(out)
    names = functions_of(files, e.pid)
    assert {"short_lived_hot", "busy_hot"} <= names, names
    assert reused, "could not get a pid reused"
    before = [f for f in files if "short_lived_hot" in functions_of([f], reused)]
    after = [f for f in files if "spike_hot" in functions_of([f], reused)]
    assert before and after, (before, after)
    exes = {l["exe"] for f in after for _, l in raw_samples(f) if l.get("pid") == str(reused)}
    assert other in exes, exes


def test_sigterm_flushes_the_window(load, tmp_path):
    out = tmp_path / "store"
    a = start_agent("-o", out, "-i", 600, "-F", 99)
    time.sleep(1)
    busy = subprocess.Popen([load, "busy", "1.5"], stdout=subprocess.PIPE)
    busy_cpu = cpu_seconds_of_child(busy)
    t0 = time.time()
    a.send_signal(signal.SIGTERM)
    finish(a, timeout=30)
    assert time.time() - t0 < 10
    files = windows(out)
    assert len(files) == 1, files
    # All of it: 99 Hz, one sample per 10.1 ms of its CPU time.
    n = samples_of(files[0], busy.pid)
    assert 0.8 * busy_cpu * 99 <= n <= 1.2 * busy_cpu * 99 + 2, (n, busy_cpu)
    assert not [f for f in os.listdir(out) if f.startswith(".")], os.listdir(out)


def stack_map_entries(pid):
    """max_entries of the STACK_TRACE maps (map_type 7) the process holds, from its fds."""
    found = []
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                info = dict(l.split(":", 1) for l in f.read().splitlines() if ":" in l)
        except OSError:
            continue
        if info.get("map_type", "").strip() == "7":
            found.append(int(info["max_entries"]))
    return found


def test_stack_map_sized_by_the_sample_rate(tmp_path):
    """The kernel preallocates every entry of the stack map at start: the agent asks for 32 per
    sample a window can take (CPUs x Hz x seconds, user stacks too with --unwind fp), between
    4096 and 32768."""
    ncpu = possible_cpus()
    for args, fp in ((("-i", 5), True), (("-i", 5, "--unwind", "auto"), False),
                     (("-i", 600, "-F", 99), True)):
        a = start_agent("-o", tmp_path / "s", *args)
        deadline = time.time() + 30
        while not stack_map_entries(a.pid) and time.time() < deadline:
            time.sleep(0.2)
        got = stack_map_entries(a.pid)
        a.send_signal(signal.SIGTERM)
        finish(a)
        hz = 99 if "-F" in args else 19
        want = ncpu * hz * args[1] * 32 * (2 if fp else 1)
        n = 4096
        while n < want and n < 32768:
            n *= 2
        assert got == [n], (args, got, n)


def possible_cpus():
    with open("/sys/devices/system/cpu/possible") as f:
        n = 0
        for part in f.read().strip().split(","):
            lo, _, hi = part.partition("-")
            n = max(n, int(hi or lo) + 1)
        return n


def test_retention_by_size_and_age(load, tmp_path):
    out = tmp_path / "store"
    out.mkdir()
    old = out / "cpu-19700101T000000.000Z.pb.gz"
    old.write_bytes(b"x" * 100)
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    other = out / "notes.txt"
    other.write_text("not a profile")
    busy = subprocess.Popen([load, "busy", "6"], stdout=subprocess.PIPE)
    try:
        err = finish(start_agent("-o", out, "-i", 0.3, "-d", 4, "--max-size", "6k",
                                 "--max-age", "1h", "-v"))
    finally:
        busy.kill()
        busy.wait()
    written = len(re.findall(r"window \d+:", err))
    files = windows(out)
    assert not old.exists(), "a window older than --max-age is deleted"
    assert other.exists(), "files that are not profiles are left alone"
    assert written >= 8 and len(files) < written, (written, files)
    assert sum(os.path.getsize(f) for f in files) <= 6 * 1024
    # Age: with --max-age 1 only the windows of the last second or so stay.
    out2 = tmp_path / "age"
    finish(start_agent("-o", out2, "-i", 0.3, "-d", 3, "--max-age", 1))
    now = time.time()
    ages = [now - os.path.getmtime(f) for f in windows(out2)]
    assert ages and max(ages) < 2.5, ages


def test_disk_guard_drops_windows_rather_than_fill_the_disk(tmp_path):
    out = tmp_path / "store"
    err = finish(start_agent("-o", out, "-i", 0.5, "-d", 1.2, "--min-free", "100000T"))
    assert windows(out) == []
    assert "not written" in err and "--min-free" in err, err


class Receiver:
    """A Pyroscope ingest endpoint on a free loopback port. It answers 503 or drops the
    connection while `down` is set (an outage), else 200, and records every request."""

    def __init__(self):
        self.requests = []
        self.down = None  # None, "503" or "drop"
        self.lock = threading.Lock()
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(n)
                with outer.lock:
                    mode = outer.down
                    outer.requests.append({"path": self.path, "headers": dict(self.headers),
                                           "body": body, "answer": mode or "200"})
                if mode == "drop":
                    self.close_connection = True
                    return
                code = 503 if mode == "503" else 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        self.port = self.srv.server_address[1]
        self.t = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.t.start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def listen_url(p):
    """Reads the agent's stderr until it says where /metrics is."""
    for _ in range(50):
        line = p.stderr.readline()
        m = re.search(r"/metrics and /healthz on (http://\S+)", line)
        if m:
            return m.group(1)
    raise AssertionError("no --listen address in the log")


def fetch(url):
    import urllib.request
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            body = r.read().decode()
            return (r.status, body) if url.endswith("/healthz") else body
    except urllib.error.HTTPError as e:
        return (e.code, e.read().decode())


def metrics(text):
    vals = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            vals[k] = float(v)
    return vals


def test_push_to_pyroscope_with_outage_and_recovery(load, tmp_path):
    rx = Receiver()
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    out = tmp_path / "store"
    try:
        busy = subprocess.Popen([load, "busy", "8"], stdout=subprocess.PIPE)
        rx.down = "drop"
        a = start_agent("-o", out, "-i", 1, "-d", 8, "-F", 99, "--host", "h1", "-l", "env=ci",
                        "--push", f"http://127.0.0.1:{rx.port}", "--tenant", "team-a",
                        "--bearer-token-file", token, "--retry-max", 0.5,
                        "--listen", "127.0.0.1:0", "-v")
        url = listen_url(a)
        # The outage: connections dropped, then 503s, each until the agent has met it.
        answered = lambda mode: lambda: any(r["answer"] == mode for r in list(rx.requests))
        assert wait_for(answered("drop"), timeout=20), "no push during the outage"
        rx.down = "503"
        assert wait_for(answered("503"), timeout=20), "no retry during the outage"
        during = fetch(url + "/metrics")
        rx.down = None
        time.sleep(1.5)
        after = fetch(url + "/metrics")
        health = fetch(url + "/healthz")
        err = finish(a)
        busy.kill()
        busy.wait()
    finally:
        rx.close()
    reqs = rx.requests
    assert any(r["answer"] == "drop" for r in reqs) and any(r["answer"] == "503" for r in reqs)
    ok = [r for r in reqs if r["answer"] == "200"]
    assert ok, err
    for r in reqs:
        u = urllib.parse.urlsplit(r["path"])
        assert u.path == "/ingest", r["path"]
        q = urllib.parse.parse_qs(u.query, strict_parsing=True)
        assert set(q) >= {"name", "from", "until", "format"}, q
        assert q["format"] == ["pprof"]
        assert int(q["from"][0]) <= int(q["until"][0]) <= time.time() + 1
        assert q["sampleRate"] == ["99"]
        m = re.fullmatch(r"([^{}]+)\{(.*)\}", q["name"][0])
        assert m, q["name"]
        labels = dict(kv.split("=", 1) for kv in m.group(2).split(","))
        assert labels["host"] == "h1" and labels["env"] == "ci", labels
        assert r["headers"]["X-Scope-OrgID"] == "team-a"
        assert r["headers"]["Authorization"] == "Bearer s3cret"
        assert r["headers"]["Content-Type"] == "application/octet-stream"
        assert r["body"][:2] == b"\x1f\x8b", "a gzipped pprof body"
    # Each accepted body is a valid profile; the busy process's service holds all its samples.
    pushed = 0
    apps = set()
    for i, r in enumerate(ok):
        f = tmp_path / f"push{i}.pb.gz"
        f.write_bytes(r["body"])
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(r["path"]).query)
        app = q["name"][0].split("{")[0]
        apps.add(app)
        n = samples_of(f, busy.pid)
        if n:
            assert app == "agent_load", app
        pushed += n
    stored = sum(samples_of(f, busy.pid) for f in windows(out))
    # Nothing lost: every window stored locally was also accepted by the server, once.
    assert stored > 100 and pushed == stored, (pushed, stored, len(ok))
    froms = sorted(int(urllib.parse.parse_qs(urllib.parse.urlsplit(r["path"]).query)["from"][0])
                   for r in ok if "agent_load" in r["path"])
    assert len(froms) == len(set(froms)), "no window pushed twice"
    assert os.listdir(out / "queue") == [], "the queue is empty after recovery"
    # /metrics shows the outage and the recovery; /healthz is fine.
    m1, m2 = metrics(during), metrics(after)
    assert m1["cprof_agent_push_failed_total"] > 0 and m1["cprof_agent_queue_files"] > 0, m1
    assert m2["cprof_agent_push_sent_total"] > m1["cprof_agent_push_sent_total"], (m1, m2)
    assert m2["cprof_agent_windows_total"] >= 2 and m2["cprof_agent_rss_bytes"] > 0, m2
    assert m2["cprof_agent_push_dropped_total"] == 0, m2
    assert 0 < m2["cprof_agent_cpu_seconds_total"] < 30, m2
    assert health == (200, "ok\n")


def test_push_queue_cap_drops_oldest_and_counts(load, tmp_path):
    out = tmp_path / "store"
    busy = subprocess.Popen([load, "busy", "4"], stdout=subprocess.PIPE)
    # Nothing listens on port 9 of loopback (discard is not running): every push fails.
    err = finish(start_agent("-o", out, "-i", 0.5, "-d", 3, "--no-store", "--push",
                             "http://127.0.0.1:9", "--queue-max-size", 4096, "--push-timeout",
                             0.5, "-v"))
    busy.kill()
    busy.wait()
    assert "dropped the" in err and "oldest pushes" in err, err
    q = os.listdir(out / "queue")
    assert q and sum(os.path.getsize(out / "queue" / f) for f in q) <= 4096


def watch(load, tmp_path, workload_args, *rules, secs=8, extra=()):
    w = subprocess.Popen([load, *map(str, workload_args)], stdout=subprocess.PIPE, text=True)
    assert w.stdout.readline().startswith("ready")
    out = tmp_path / "trig"
    args = ["-p", w.pid, "-o", out, "-d", secs, "--trigger-check", 0.25, "--trigger-warmup", 4,
            "--trigger-duration", 1, *extra]
    for r in rules:
        args += ["--trigger", r]
    try:
        err = finish(start_agent(*args, sub="watch"))
    finally:
        w.kill()
        w.wait()
    return w.pid, sorted(glob.glob(os.path.join(out, "trigger-*.pb.gz"))), err


def test_trigger_cpu_spike_fires_once_with_cooldown(load, tmp_path):
    pid, files, err = watch(load, tmp_path, ["spike", 2, 5], "cpu>3x", secs=6)
    assert len(files) == 1, (files, err)  # the cooldown (300 s) keeps it from firing again
    f = files[0]
    assert f"pid{pid}-cpu_spike_3x" in f
    rows, _ = pprof_top(f, "samples")
    assert "spike_hot" in rows, rows
    c = go_pprof("-comments", f)
    assert "trigger cpu>3x" in c and f"pid {pid}" in c, c
    # A full-rate capture: 99 Hz for 1 s of a busy process.
    assert sum(v for v, _ in rows.values()) > 0


def test_trigger_spike_respects_warmup(load, tmp_path):
    # Busy from the start: the moving average starts high, so no spike ever fires.
    _, files, err = watch(load, tmp_path, ["spike", 0, 8], "cpu>3x", secs=4)
    assert files == [], err


def test_trigger_absolute_cpu_with_short_cooldown_fires_again(load, tmp_path):
    # (A low threshold: on a loaded machine a busy process gets a small share of a core.)
    _, files, err = watch(load, tmp_path, ["busy", 10], "cpu>5", secs=6,
                          extra=["--trigger-cooldown", 0.5])
    assert len(files) >= 2, (files, err)
    assert all("cpu_gt_5" in f for f in files)


def test_trigger_rss_and_threads(load, tmp_path):
    _, files, err = watch(load, tmp_path, ["rss", 2, 200, 4], "rss>2x", secs=5)
    assert len(files) == 1 and "rss_spike_2x" in files[0], (files, err)
    (tmp_path / "trig").rename(tmp_path / "trig-rss")
    pid, files, err = watch(load, tmp_path, ["threads", 1, 16, 4], "threads>10", secs=4)
    assert len(files) == 1 and "threads_gt_10" in files[0], (files, err)
    # a thread-count trigger also stores the snapshot of every thread (Go's goroutine profile)
    snaps = glob.glob(os.path.join(tmp_path, "trig", f"goroutine-*-pid{pid}-threads_gt_10.pb.gz"))
    assert len(snaps) == 1, (os.listdir(tmp_path / "trig"), err)
    top = go_pprof("-top", snaps[0])
    assert "Type: goroutine" in top, top
    total = int(re.search(r"of (\d+) total", top).group(1))
    assert total > 10, top


def test_bad_options_are_usage_errors(tmp_path):
    for args in (["--interval", "0"], ["--freq", "x"], ["--label", "novalue"],
                 ["--trigger", "cpu>"], ["--trigger", "mem>3"], ["--push", "ftp://x"],
                 ["--max-size", "12Q"], ["--tenant", "a"], ["extra"]):
        r = run_cprof("agent", "-o", tmp_path, *args, check=False)
        assert r.returncode == 2, (args, r.stderr)
        assert len(r.stderr.decode().strip().splitlines()) == 1, r.stderr
    r = run_cprof("watch", "--trigger", "cpu>50", check=False)
    assert r.returncode == 2
    r = run_cprof("watch", "-p", 4194303, "--trigger", "cpu>50", check=False)
    assert r.returncode == 2 and r.stderr.decode().strip() == "cprof-bpf: no such process: 4194303"


def test_push_basic_auth_and_service_name(load, tmp_path):
    rx = Receiver()
    cred = tmp_path / "cred"
    cred.write_text("agent:pa55\n")
    try:
        busy = subprocess.Popen([load, "busy", "3"], stdout=subprocess.PIPE)
        err = finish(start_agent("--no-store", "-o", tmp_path / "q", "-i", 1, "-d", 2.5, "-F",
                                 99, "--push", f"http://127.0.0.1:{rx.port}/",
                                 "--basic-auth-file", cred, "-l", "service_name=shop", "-l",
                                 "region=eu-1", "-v"))
        busy.kill()
        busy.wait()
    finally:
        rx.close()
    assert rx.requests, err
    for r in rx.requests:
        assert r["headers"]["Authorization"] == "Basic YWdlbnQ6cGE1NQ=="  # agent:pa55
        assert "X-Scope-OrgID" not in r["headers"]
        u = urllib.parse.urlsplit(r["path"])
        assert u.path == "/ingest", r["path"]  # no double slash from the URL's trailing one
        name = urllib.parse.parse_qs(u.query)["name"][0]
        # service_name names the service (whole window, not split) and is no series label.
        assert name.startswith("shop{") and "region=eu-1" in name and "service_name" not in name


def test_disk_guard_keeps_history_and_reports_unhealthy(tmp_path):
    """A full file system whose stored profiles could not free enough: they are kept, nothing is
    stored, /healthz answers 503 with the reason and /metrics store_full is 1; once space
    returns, windows are stored again and /healthz is 200. The small tmpfs is mounted in a
    private mount namespace (unshare -m) on a directory of this test, so it goes with it."""
    from conftest import CPROF, san_env
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = f"""
set -e
mount -t tmpfs -o size=4m cprof-test {mnt}
mkdir {mnt}/store
for i in 1 2 3; do head -c 20000 /dev/urandom > {mnt}/store/cpu-old$i.pb.gz; done
dd if=/dev/zero of={mnt}/fill bs=4k 2>/dev/null || true
"{CPROF}" agent -o {mnt}/store --min-free 1M -i 0.5 -d 8 --listen 127.0.0.1:0 -v
"""
    p = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=san_env())
    try:
        url = listen_url(p)
        # The namespace's view, through the shell that lives in it.
        root = f"/proc/{p.pid}/root{mnt}"
        store = root + "/store"
        time.sleep(1.5)
        status, body = fetch(url + "/healthz")
        assert status == 503 and "store full" in body and body.count("\n") == 1, (status, body)
        assert metrics(fetch(url + "/metrics"))["cprof_agent_store_full"] == 1
        kept = sorted(os.listdir(store))
        assert kept == ["cpu-old1.pb.gz", "cpu-old2.pb.gz", "cpu-old3.pb.gz"], kept
        os.unlink(root + "/fill")  # space returns
        assert wait_for(lambda: fetch(url + "/healthz")[0] == 200, timeout=8)
        assert metrics(fetch(url + "/metrics"))["cprof_agent_store_full"] == 0
        files = os.listdir(store)
        assert {"cpu-old1.pb.gz", "cpu-old2.pb.gz", "cpu-old3.pb.gz"} <= set(files), files
        assert len(files) > 3, files
        err = p.communicate(timeout=60)[1]
        assert_no_sanitizer(err)
        assert p.returncode == 0, err
        assert "not written" in err, err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_interrupted_writes_recovered_or_removed_at_start(tmp_path):
    """A complete temp file (a gzip profile whose rename a kill -9 interrupted) is renamed into
    place at start; a truncated one is removed."""
    prof = tmp_path / "one.pb.gz"
    run_cprof("-o", prof, "--", "true")
    data = prof.read_bytes()
    store = tmp_path / "store"
    store.mkdir()
    (store / ".cpu-20260101T000000Z.pb.gz.tmp").write_bytes(data)
    (store / ".cpu-20260101T000001Z.pb.gz.tmp").write_bytes(data[: len(data) // 2])
    err = finish(start_agent("-o", store, "-i", 0.5, "-d", 1, "--max-age", 0))
    names = sorted(os.listdir(store))
    assert not [n for n in names if n.endswith(".tmp")], names
    assert "cpu-20260101T000000Z.pb.gz" in names, names
    assert "cpu-20260101T000001Z.pb.gz" not in names, names
    assert (store / "cpu-20260101T000000Z.pb.gz").read_bytes() == data
    go_pprof("-raw", store / "cpu-20260101T000000Z.pb.gz")
    assert "recovered" in err and "removed" in err, err
