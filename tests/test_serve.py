"""cprof-bpf serve, end to end: a real server on a free loopback port, real captures of real
processes, read by go tool pprof over HTTP(S), the flame graph page in headless Chromium."""
import base64
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

import pytest

from conftest import (ROOT, assert_no_sanitizer, build, go_pprof, go_pprof_run, pprof_top,
                      run_cprof, start_cprof, wait_for)

SKIP_TYPES = {}


def registered_types():
    """The profile types this build has, from `cprof-bpf check` (one line per program)."""
    if "types" not in SKIP_TYPES:
        r = run_cprof("check", check=False)
        SKIP_TYPES["types"] = {line.split()[0] for line in r.stdout.decode().splitlines()
                               if line.strip()}
    return SKIP_TYPES["types"]


class Server:
    """A `cprof-bpf serve` on 127.0.0.1, port chosen by the kernel, stopped with SIGINT."""

    def __init__(self, workdir, *args, listen="127.0.0.1:0"):
        self.log = tempfile.NamedTemporaryFile(dir=workdir, prefix="serve-", suffix=".log",
                                               delete=False)
        self.p = start_cprof("serve", "--listen", listen, "-v", *args, stdout=subprocess.PIPE,
                             stderr=self.log)
        line = self.p.stdout.readline()
        m = re.search(r"serving (https?://\S+?)/debug/pprof/", line)
        assert m, f"server did not start: {line!r} {self.stderr()}"
        self.url = m.group(1)
        self.port = int(self.url.rsplit(":", 1)[1])

    def stderr(self):
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
            try:
                self.p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
                pytest.fail("serve did not stop on SIGINT")
        err = self.stderr()
        assert_no_sanitizer(err)
        assert self.p.returncode == 0, (self.p.returncode, err[-2000:])


@pytest.fixture
def server(workdir):
    servers = []

    def start(*args, **kw):
        s = Server(workdir, *args, **kw)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One server for the tests that need no special options."""
    s = Server(str(tmp_path_factory.mktemp("serve")))
    yield s
    s.stop()


def get(url, headers=None, data=None, timeout=60, context=None):
    """(status, headers, body) of a request; HTTP errors are results, not exceptions."""
    req = urllib.request.Request(url, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def raw_request(port, data, timeout=10):
    """Sends bytes as they are and returns what the server answers (until it closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        try:
            while True:
                c = s.recv(65536)
                if not c:
                    break
                chunks.append(c)
        except (ConnectionResetError, socket.timeout):
            pass
    return b"".join(chunks)


def metric(server, name):
    _, _, body = get(server.url + "/metrics")
    for line in body.decode().splitlines():
        if line.split(" ")[0] == name:
            return float(line.split()[-1])
    raise KeyError(name)


@pytest.fixture(scope="module")
def serveload(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("serveload"))
    return build(d, "serveload.c", "serveload", extra=("-lpthread",))


# --- profiles through go tool pprof ---

def test_cpu_profile_with_go_pprof(shared, workload, spawn):
    w = spawn(workload, "cpu", 60)
    raw = go_pprof("-raw", f"{shared.url}/debug/pprof/profile?pid={w.pid}&seconds=2")
    assert "hot_a" in raw and "run_cpu" in raw, raw[:2000]
    assert "samples/count cpu/nanoseconds" in raw
    # Cumulative, not flat: with DWARF inline frames the leaf may be burn(), inlined into both.
    top = go_pprof("-top", "-nodecount=100", "-unit=ms",
                   f"{shared.url}/debug/pprof/profile?pid={w.pid}&seconds=2")
    cum = {}
    for line in top.splitlines():
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[1].endswith("%") and parts[4].endswith("%"):
            cum[parts[5]] = float(parts[3].rstrip("ms"))
    assert cum.get("hot_a", 0) > cum.get("hot_b", 0) > 0, top


def test_response_headers_as_net_http_pprof(shared, workload, spawn):
    w = spawn(workload, "cpu", 60)
    status, h, body = get(f"{shared.url}/debug/pprof/profile?pid={w.pid}&seconds=1")
    assert status == 200
    assert h["Content-Type"] == "application/octet-stream"
    assert h["Content-Disposition"] == 'attachment; filename="profile"'
    assert body[:2] == b"\x1f\x8b"  # gzip


def test_whole_system_without_pid(shared, workload, spawn):
    w = spawn(workload, "cpu", 60)
    raw = go_pprof("-raw", "-tagfocus", f"pid={w.pid}",
                   f"{shared.url}/debug/pprof/profile?seconds=1.5")
    assert "hot_a" in raw


@pytest.mark.parametrize("route,type_,mode,site", [
    ("heap", "heap", "alloc", "alloc_site"),
    ("allocs", "heap", "alloc", "alloc_site"),
    ("mutex", "mutex", "mutex", "lock_site"),
    ("block", "offcpu", "block", "block_site"),
])
def test_other_profile_types(shared, serveload, spawn, route, type_, mode, site):
    assert type_ in registered_types()
    w = spawn(serveload, mode, 60)
    raw = go_pprof("-raw", f"{shared.url}/debug/pprof/{route}?pid={w.pid}&seconds=3")
    assert site in raw, raw[:3000]


# --- errors: each a status and one line, with X-Go-Pprof so go tool pprof prints it ---

@pytest.mark.parametrize("path,status,words", [
    ("/debug/pprof/profile?pid=abc", 400, "invalid pid 'abc'"),
    ("/debug/pprof/profile?pid=-5", 400, "invalid pid"),
    ("/debug/pprof/profile?pid=", 400, "invalid pid"),
    ("/debug/pprof/profile?pid=99999999999999999999", 400, "invalid pid"),
    ("/debug/pprof/profile?pid=4194303", 404, "no such process: 4194303"),
    ("/debug/pprof/profile?seconds=abc", 400, "invalid seconds 'abc'"),
    ("/debug/pprof/profile?seconds=0", 400, "invalid seconds"),
    ("/debug/pprof/profile?seconds=-3", 400, "invalid seconds"),
    ("/debug/pprof/profile?seconds=nan", 400, "invalid seconds"),
    ("/debug/pprof/profile?seconds=1e400", 400, "invalid seconds"),
    ("/debug/pprof/profile?seconds=86400", 400, "cap of 3600 s"),
    ("/debug/pprof/profile?hz=0", 400, "invalid hz"),
    ("/debug/pprof/profile?hz=100000", 400, "invalid hz"),
    ("/debug/pprof/profile?bogus=1", 400, "unknown parameter 'bogus'"),
    ("/debug/pprof/flamegraph?type=nosuch", 400, "unknown type 'nosuch'"),
    ("/debug/pprof/nosuch", 404, "unknown profile 'nosuch'"),
    ("/debug/pprof/goroutine?pid=4194303", 404, "no such process: 4194303"),
    ("/debug/pprof/goroutine?debug=3", 400, "debug=3"),
    ("/nothing/here", 404, "unknown path /nothing/here"),
    ("/debug/pprof/symbol?pid=1&zzz+0x10", 400, "invalid address 'zzz'"),
    ("/debug/pprof/cmdline?pid=4194303", 404, "no such process"),
    ("/debug/pprof/profile?pid=1%00abc", 400, "NUL byte in parameter 'pid'"),
    ("/debug/pprof/profile?pid=1&pid=2", 400, "parameter 'pid' given more than once"),
    ("/debug/pprof/heap?seconds=1&seconds=2", 400, "given more than once"),
    ("/debug/pprof/heap?pid=", 400, "invalid pid"),
    ("/debug/pprof/heap?pid=2&seconds=1", 400, "pid 2 is a kernel thread"),
    ("/debug/pprof/mutex?pid=2&seconds=1", 400, "pid 2 is a kernel thread"),
    ("/debug/pprof/heap?pid=4194303&seconds=1", 404, "no such process: 4194303"),
])
def test_error_statuses(shared, path, status, words):
    got, h, body = get(shared.url + path)
    text = body.decode()
    assert got == status, (path, got, text)
    assert h["X-Go-Pprof"] == "1" and h["Content-Type"].startswith("text/plain")
    assert words in text, text
    assert text.endswith("\n") and text.count("\n") == 1, repr(text)


def one_line_error(answer, status, words):
    """A raw HTTP answer is status with a one-line text/plain body holding words."""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0].startswith(f"HTTP/1.1 {status} "), answer[:300]
    headers = {k.lower(): v for k, v in (l.split(": ", 1) for l in lines[1:])}
    assert headers["content-type"].startswith("text/plain") and headers["x-go-pprof"] == "1"
    text = body.decode()
    assert words in text and text.endswith("\n") and text.count("\n") == 1, repr(text)
    return headers


@pytest.mark.parametrize("request_,status,words", [
    (b"GARBAGE\r\n\r\n", 400, "malformed request line"),
    (b"GET /healthz HTTP/1.1\r\n\r\n", 400, "without a Host header"),
    (b"GET /healthz HTTP/3.0\r\nHost: 127.0.0.1\r\n\r\n", 400, "malformed request line"),
    (b"GET /healthz HTTP/1.1\r\nHost 127.0.0.1\r\n\r\n", 400, "malformed header line"),
    (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n", 431,
     "too large"),
    (b"POST /debug/pprof/symbol HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 99999999\r\n"
     b"\r\n", 413, "too large"),
], ids=["garbage", "no-host", "http3", "bad-header", "huge-header", "huge-body"])
def test_rejected_heads_in_our_format(shared, request_, status, words):
    """What libmicrohttpd would answer with its own HTML page is answered by the server's front
    door, in the one-line format of every other error."""
    one_line_error(raw_request(shared.port, request_), status, words)


def test_go_pprof_prints_our_message(shared):
    r = go_pprof_run("-raw", f"{shared.url}/debug/pprof/profile?pid=4194303&seconds=1")
    assert r.returncode != 0
    assert "404 Not Found - no such process: 4194303" in r.stderr, r.stderr


def test_method_not_allowed(shared):
    status, h, body = get(shared.url + "/debug/pprof/profile", data=b"x")
    assert status == 405 and "GET" in h["Allow"], body


def test_malformed_burst_then_still_serving(shared):
    port = shared.port
    answers = [
        raw_request(port, b"GARBAGE\r\n\r\n"),
        raw_request(port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 20000 +
                    b"\r\n\r\n"),
        raw_request(port, b"GET /debug/pprof/" + b"a" * 70000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
        raw_request(port, b"POST /debug/pprof/symbol?pid=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Length: 99999999\r\n\r\n0x1+"),
        raw_request(port, b"GET /debug/pprof/profile?pid=%zz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
        raw_request(port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -1\r\n\r\n"),
        raw_request(port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(200)),
        raw_request(port, b"GET /healthz HTTP/1.1\r\n"),  # never finished: the server's idle
    ]
    codes = [int(a.split()[1]) if a.startswith(b"HTTP/1.") else None for a in answers]
    assert codes[0] in (400, None), answers[0][:200]
    assert codes[1] == 431, answers[1][:200]
    assert codes[2] in (414, 431), answers[2][:200]
    assert codes[3] == 413, answers[3][:200]
    assert codes[4] in (400, 404), answers[4][:200]
    assert codes[5] in (400, 413), answers[5][:200]
    for _ in range(20):
        raw_request(port, os.urandom(64))
    status, _, body = get(shared.url + "/healthz")
    assert status == 200 and body == b"ok\n"


# --- routes beside the profiles ---

def test_index_lists_processes_with_links(shared, workload, spawn):
    w = spawn(workload, "cpu", 60, "<script>alert(1)</script>")
    status, h, body = get(shared.url + "/debug/pprof/")
    page = body.decode()
    assert status == 200 and h["Content-Type"].startswith("text/html")
    assert f'href="cmdline?pid={w.pid}"' in page, page[:3000]
    assert f"flamegraph?pid={w.pid}&amp;type=profile" in page
    assert f"profile?pid={w.pid}&amp;seconds=30" in page
    assert workload in page
    # Command lines are text, not markup.
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    idle = spawn(workload, "idle", 60)

    def cpu_of(pid):
        page = get(shared.url + "/debug/pprof/")[2].decode()
        row = re.search(rf">{pid}</a></td><td class=n>([0-9.]+)</td><td class=n>([0-9.]+) MiB",
                        page)
        return float(row.group(1)) if row else None

    # CPU% is measured between two readings, the table refreshed at most once a second: a
    # busy loop shows clearly above zero once a window covers it (the machine may be loaded).
    assert wait_for(lambda: (cpu_of(w.pid) or 0) > 10, timeout=15, step=1.2)
    assert wait_for(lambda: cpu_of(idle.pid) is not None, timeout=5, step=0.5)
    assert cpu_of(idle.pid) < 5
    assert get(shared.url + "/debug/pprof")[0] == 200  # redirected to the index


def test_cmdline_and_symbol(shared, workload, spawn):
    w = spawn(workload, "cpu", 60)
    status, _, body = get(f"{shared.url}/debug/pprof/cmdline?pid={w.pid}")
    assert status == 200 and body.split(b"\0") == [workload.encode(), b"cpu", b"60"]
    status, _, body = get(f"{shared.url}/debug/pprof/symbol?pid={w.pid}")
    assert body == b"num_symbols: 1\n"
    assert get(f"{shared.url}/debug/pprof/symbol")[2] == b"num_symbols: 0\n"
    nm = subprocess.run(["nm", workload], capture_output=True, text=True).stdout
    off = int(next(l.split()[0] for l in nm.splitlines() if l.endswith(" hot_a")), 16)
    with open(f"/proc/{w.pid}/maps") as f:
        base = int(next(l for l in f if workload in l).split("-")[0], 16)
    addr = base + off + 4
    status, _, body = get(f"{shared.url}/debug/pprof/symbol?pid={w.pid}",
                          data=f"{addr:#x}+0x1".encode())
    assert status == 200
    assert body.decode().splitlines() == ["num_symbols: 1", f"{addr:#x} hot_a"], body
    status, _, body = get(f"{shared.url}/debug/pprof/symbol?pid={w.pid}&{addr:#x}")
    assert f"{addr:#x} hot_a" in body.decode()


def test_metrics_and_healthz(shared, workload, spawn):
    w = spawn(workload, "cpu", 60)
    assert get(f"{shared.url}/debug/pprof/profile?pid={w.pid}&seconds=1")[0] == 200
    status, h, body = get(shared.url + "/metrics")
    text = body.decode()
    assert status == 200 and h["Content-Type"].startswith("text/plain; version=0.0.4")
    for line in text.splitlines():
        assert re.fullmatch(r"# (HELP|TYPE) \w+ .+|\w+(\{\w+=\"[^\"]*\"(,\w+=\"[^\"]*\")*\})? "
                            r"-?[0-9.e+]+", line), line
    ok = re.search(r'cprof_captures_total\{type="cpu",result="ok"\} (\d+)', text)
    assert ok and int(ok.group(1)) >= 1
    assert int(re.search(r'cprof_samples_total\{type="cpu"\} (\d+)', text).group(1)) > 20
    assert re.search(r'cprof_dropped_total\{type="cpu",reason="keys_full"\} 0', text)
    # Every drop reason of the table in bpf/cprof.h, for every type.
    with open(os.path.join(ROOT, "bpf", "cprof.h")) as f:
        reasons = re.findall(r'X\(\w+, (?:BPF|USER)_DROP, "(\w+)"', f.read())
    assert len(reasons) >= 20
    for reason in reasons:
        for t in set(re.findall(r'cprof_captures_total\{type="(\w+)"', text)):
            assert re.search(rf'cprof_dropped_total\{{type="{t}",reason="{reason}"\}} \d+', text), \
                (t, reason)
    assert re.search(r'cprof_bpf_map_entries\{type="cpu",map="keys"\} [1-9]', text)
    assert re.search(r'cprof_http_requests_total\{code="200"\} [1-9]', text)
    assert get(shared.url + "/healthz")[2] == b"ok\n"


# --- captures: cancel, cap, timeouts ---

def test_client_disconnect_ends_capture(server, workload, spawn):
    s = server()
    w = spawn(workload, "cpu", 60)
    sock = socket.create_connection(("127.0.0.1", s.port))
    sock.sendall(f"GET /debug/pprof/profile?pid={w.pid}&seconds=60 HTTP/1.1\r\n"
                 f"Host: 127.0.0.1\r\n\r\n".encode())
    assert wait_for(lambda: metric(s, "cprof_captures_active") == 1, timeout=20)
    t0 = time.time()
    sock.close()
    assert wait_for(lambda: metric(s, "cprof_captures_active") == 0, timeout=10)
    assert time.time() - t0 < 5, "the capture should end within a poll or two"
    _, _, body = get(s.url + "/metrics")
    assert 'cprof_captures_total{type="cpu",result="cancelled"} 1' in body.decode()
    # The server goes on: a new capture works.
    assert get(f"{s.url}/debug/pprof/profile?pid={w.pid}&seconds=0.5")[0] == 200


def test_capture_cap_gives_503_and_concurrent_captures(server, workload, spawn):
    s = server("--max-captures", "2")
    w = spawn(workload, "cpu", 60)
    results = []

    def one():
        results.append(get(f"{s.url}/debug/pprof/profile?pid={w.pid}&seconds=4"))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    assert wait_for(lambda: metric(s, "cprof_captures_active") == 2, timeout=20)
    status, h, body = get(f"{s.url}/debug/pprof/profile?pid={w.pid}&seconds=1")
    assert status == 503 and h["Retry-After"] and h["X-Go-Pprof"] == "1", body
    assert b"too many captures at once" in body
    for t in threads:
        t.join(60)
    assert [r[0] for r in results] == [200, 200]
    # Both concurrent captures saw the workload.
    for _, _, prof in results:
        path = os.path.join(tempfile.mkdtemp(), "p.pb.gz")
        with open(path, "wb") as f:
            f.write(prof)
        assert "hot_a" in go_pprof("-raw", path)


def save(workdir, name, body):
    path = os.path.join(workdir, name)
    with open(path, "wb") as f:
        f.write(body)
    return path


def pids_in(raw):
    return {int(p) for p in re.findall(r"pid:\[(\d+)\]", raw)}


def overlapping(s, route, query, long_s, offset, short_s, type_, during=None):
    """Capture A for long_s seconds, B from offset seconds into A for short_s; both bodies.
    during() runs once B has started."""
    res = {}

    def cap(name, secs):
        res[name] = get(f"{s.url}/debug/pprof/{route}?{query}seconds={secs}")

    a = threading.Thread(target=cap, args=("a", long_s))
    a.start()
    assert wait_for(lambda: metric(s, f'cprof_collector_captures{{type="{type_}"}}') == 1,
                    timeout=30)
    time.sleep(offset)
    b = threading.Thread(target=cap, args=("b", short_s))
    b.start()
    if during:
        during()
    b.join(60)
    a.join(60)
    assert res["a"][0] == 200 and res["b"][0] == 200, (res["a"][2][:200], res["b"][2][:200])
    assert metric(s, f'cprof_captures_shared_total{{type="{type_}"}}') == 1
    assert metric(s, f'cprof_collectors_loaded{{type="{type_}"}}') == 0
    return res["a"][2], res["b"][2]


def test_overlapping_captures_share_one_collector(server, workload, spawn, workdir):
    """A runs 8 s; B starts 2 s into A and runs 2 s: one collector serves both, B gets only
    its own window, A keeps its pid in the filter after B (which shares the pid) has ended."""
    s = server()
    w = spawn(workload, "cpu", 60)

    def both_open():
        assert wait_for(lambda: metric(s, 'cprof_collector_captures{type="cpu"}') == 2,
                        timeout=20)
        assert metric(s, 'cprof_collectors_loaded{type="cpu"}') == 1
    res = dict(zip("ab", overlapping(s, "profile", f"pid={w.pid}&", 8, 2, 2, "cpu", both_open)))
    totals = {}
    for name in ("a", "b"):
        path = save(workdir, f"{name}.pb.gz", res[name])
        assert "hot_a" in go_pprof("-raw", path)
        totals[name] = pprof_top(path, "samples")[1]
        assert "shared: the BPF programs served 2 captures" in go_pprof("-comments", path)
    # B's window is a quarter of A's. Had B's end taken the pid out of the filter, A would have
    # stopped at 4 s (ratio 0.5); had B got the samples since A began, 0.5 too.
    ratio = totals["b"] / totals["a"]
    assert 0.1 < ratio < 0.4, totals
    # One collector was loaded, B shared it, and it is gone with the last capture.
    assert metric(s, 'cprof_collectors_opened_total{type="cpu"}') == 1
    assert metric(s, 'cprof_captures_shared_total{type="cpu"}') == 1
    assert metric(s, 'cprof_collector_captures_max{type="cpu"}') == 2
    assert metric(s, 'cprof_collectors_loaded{type="cpu"}') == 0
    assert metric(s, 'cprof_collector_captures{type="cpu"}') == 0


def test_concurrent_captures_of_different_pids(server, workload, spawn, workdir):
    s = server()
    w1, w2 = spawn(workload, "cpu", 60), spawn(workload, "cpu", 60)
    res = {}

    def cap(pid):
        res[pid] = get(f"{s.url}/debug/pprof/profile?pid={pid}&seconds=5")

    threads = [threading.Thread(target=cap, args=(w.pid,)) for w in (w1, w2)]
    for t in threads:
        t.start()
    assert wait_for(lambda: metric(s, 'cprof_collector_captures{type="cpu"}') == 2, timeout=20)
    assert metric(s, 'cprof_collectors_loaded{type="cpu"}') == 1
    for t in threads:
        t.join(60)
    for w in (w1, w2):
        assert res[w.pid][0] == 200
        raw = go_pprof("-raw", save(workdir, f"{w.pid}.pb.gz", res[w.pid][2]))
        assert "hot_a" in raw
        assert pids_in(raw) == {w.pid}, (w.pid, pids_in(raw))
    assert metric(s, 'cprof_collectors_opened_total{type="cpu"}') == 1
    assert metric(s, 'cprof_collectors_loaded{type="cpu"}') == 0
    # The collector is gone: a new capture loads a new one and sees its pid.
    raw = go_pprof("-raw", f"{s.url}/debug/pprof/profile?pid={w2.pid}&seconds=1")
    assert pids_in(raw) == {w2.pid}
    assert metric(s, 'cprof_collectors_opened_total{type="cpu"}') == 2


def test_different_options_do_not_share(server, workload, spawn):
    s = server()
    w = spawn(workload, "cpu", 60)
    res = []
    threads = [threading.Thread(target=lambda hz=hz: res.append(
        get(f"{s.url}/debug/pprof/profile?pid={w.pid}&seconds=5&hz={hz}"))) for hz in (99, 49)]
    for t in threads:
        t.start()
    assert wait_for(lambda: metric(s, 'cprof_collector_captures{type="cpu"}') == 2, timeout=20)
    assert metric(s, 'cprof_collectors_loaded{type="cpu"}') == 2
    for t in threads:
        t.join(60)
    assert [r[0] for r in res] == [200, 200]
    assert metric(s, 'cprof_captures_shared_total{type="cpu"}') == 0


def test_overlapping_block_captures(server, serveload, spawn, workdir):
    """Off-CPU waits are split by window too: B (2 s from 2 s into a 5 s A) has about 2/5 of
    A's 50 ms naps (4/5 had it been given everything since A began)."""
    s = server()
    w = spawn(serveload, "block", 60)
    a, b = overlapping(s, "block", f"pid={w.pid}&", 5, 2, 2, "offcpu")
    counts = {}
    for name, body in (("a", a), ("b", b)):
        path = save(workdir, f"block-{name}.pb.gz", body)
        rows, total = pprof_top(path, "contentions")
        assert any(f.startswith("block_site") for f in rows), rows
        counts[name] = total
    assert 0.2 < counts["b"] / counts["a"] < 0.6, counts


def test_overlapping_whole_system_captures(server, workload, spawn, workdir):
    s = server()
    w = spawn(workload, "cpu", 60)
    # A second busy process: a quiet machine may have nothing else on the CPU for 1.5 s.
    other = spawn(workload, "syscall", 60)
    a, b = overlapping(s, "profile", "", 4, 1.5, 1.5, "cpu")
    for name, body in (("a", a), ("b", b)):
        path = save(workdir, f"all-{name}.pb.gz", body)
        raw = go_pprof("-raw", "-tagfocus", f"pid={w.pid}", path)
        assert "hot_a" in raw, raw[:2000]
        pids = pids_in(go_pprof("-raw", path))  # the whole system, not one pid
        assert {w.pid, other.pid} <= pids, (name, pids)


HEAP_FLAGS = ("-O2", "-g", "-fno-omit-frame-pointer", "-pthread")


def test_concurrent_heap_captures_exact(server, workdir):
    """--heap-sample-bytes 1 reaches the captures; two heap captures of one process share one
    collector (its uprobes) and each gets every allocation of the pattern, exactly."""
    from test_heap import check_exact

    s = server("--heap-sample-bytes", "1")
    exe = build(workdir, "heapload.c", "heapload", flags=HEAP_FLAGS)
    w = subprocess.Popen([exe, "exact"], stdout=subprocess.PIPE, text=True)
    res = {}
    try:
        assert w.stdout.readline().startswith("ready")

        def cap(route):
            res[route] = get(f"{s.url}/debug/pprof/{route}?pid={w.pid}&seconds=60")

        threads = [threading.Thread(target=cap, args=(r,)) for r in ("heap", "allocs")]
        for t in threads:
            t.start()
        assert wait_for(lambda: metric(s, 'cprof_collector_captures{type="heap"}') == 2,
                        timeout=30)
        assert metric(s, 'cprof_collectors_loaded{type="heap"}') == 1
        w.send_signal(signal.SIGUSR1)
        assert w.stdout.readline().startswith("done")
        w.wait(30)
        for t in threads:
            t.join(60)  # the captures end with their target
    finally:
        if w.poll() is None:
            w.kill()
        w.wait()
    for route in ("heap", "allocs"):
        assert res[route][0] == 200, res[route][2][:300]
        path = save(workdir, f"{route}.pb.gz", res[route][2])
        check_exact(path)
        comments = go_pprof("-comments", path)
        assert "every allocation" in comments and "dropped: nothing" in comments, comments
    assert metric(s, 'cprof_collectors_opened_total{type="heap"}') == 1
    assert metric(s, 'cprof_captures_shared_total{type="heap"}') == 1
    assert metric(s, 'cprof_collectors_loaded{type="heap"}') == 0


def test_heap_window_counts_only_its_own_allocations(server, serveload, spawn, workdir):
    """A heap capture that joins a running one reports what was allocated in its own window:
    alloc_space about in proportion to the windows' lengths (1/3 here; 5/6 if it got what was
    allocated since the collector attached)."""
    s = server()
    w = spawn(serveload, "alloc", 60)
    res = dict(zip("ab", overlapping(s, "allocs", f"pid={w.pid}&", 6, 3, 2, "heap")))
    space = {}
    for name in ("a", "b"):
        path = save(workdir, f"allocs-{name}.pb.gz", res[name])
        rows, total = pprof_top(path, "alloc_space")
        assert "alloc_site" in rows, rows
        space[name] = total
    assert 0.1 < space["b"] / space["a"] < 0.6, space


def test_min_wait_and_min_block_reach_captures(server, serveload, spawn):
    s = server("--min-block", "100000", "--min-wait", "1000000")
    wb = spawn(serveload, "block", 60)
    raw = go_pprof("-raw", f"{s.url}/debug/pprof/block?pid={wb.pid}&seconds=2")
    # 50 ms naps are under 100 ms: not counted, and the comments say how many were skipped.
    assert "block_site" not in raw
    assert "min-block: 100000 us" in raw
    m = re.search(r"off-CPU intervals under min-block, not counted: (\d+)", raw)
    assert m and int(m.group(1)) >= 10, raw[:2000]
    wm = spawn(serveload, "mutex", 60)
    raw = go_pprof("-raw", f"{s.url}/debug/pprof/mutex?pid={wm.pid}&seconds=2")
    assert "lock_site" not in raw and "min-wait: 1000000 us" in raw
    m = re.search(r"lock waits under min-wait, not counted: (\d+)", raw)
    assert m and int(m.group(1)) > 0, raw[:2000]


def test_bad_per_type_options():
    for args, words in ((["--heap-sample-bytes", "0"], b"invalid --heap-sample-bytes"),
                        (["--min-block", "-1"], b"invalid --min-block"),
                        (["--min-wait", "x"], b"invalid --min-wait"),
                        (["--debug-dir", "rel/dir"], b"expected an absolute path"),
                        (["--unwind", "magic"], b"invalid --unwind"),
                        (["--unwind-mem", "1K"], b"invalid --unwind-mem"),
                        (["--mutex-fraction", "0"], b"out of range, expected 1 to"),
                        (["--block-rate", "x"], b"not an integer, expected 1 to"),
                        (["--request-timeout", "3601"], b"out of range, expected 1 to 3600"),
                        (["--max-connections", "many"], b"not an integer, expected 1 to 4096"),
                        (["--max-per-client", "0"], b"out of range, expected 1 to 4096")):
        r = run_cprof("serve", *args, check=False)
        assert r.returncode == 2 and words in r.stderr, (args, r.stderr)
        assert r.stderr.count(b"\n") == 1, r.stderr


def test_debug_dir_and_unwind_flags(server, workload, spawn, workdir):
    # An empty debug root and frame pointers only: still a valid profile with the hot function
    # (the fixture has symbols and frame pointers of its own).
    d = os.path.join(workdir, "no-debug")
    os.makedirs(d, exist_ok=True)
    s = server("--debug-dir", d, "--unwind", "fp")
    w = spawn(workload, "cpu", 60)
    raw = go_pprof("-raw", f"{s.url}/debug/pprof/profile?pid={w.pid}&seconds=1.5")
    assert "hot_a" in raw
    # --unwind fp loads no unwind tables: the comments have no "unwind:" line.
    assert "unwind:" not in raw.split("Samples:")[0]


def test_long_capture_outlives_idle_timeout(server, workload, spawn):
    s = server("--idle-timeout", "1")
    w = spawn(workload, "cpu", 60)
    t0 = time.time()
    status, _, body = get(f"{s.url}/debug/pprof/profile?pid={w.pid}&seconds=3.5")
    assert status == 200 and body[:2] == b"\x1f\x8b"
    assert time.time() - t0 >= 3.4
    # An idle connection is closed after the timeout.
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
        t0 = time.time()
        assert sock.recv(100) == b""
        assert time.time() - t0 < 8


def test_sigint_ends_running_capture_with_a_profile(server, workload, spawn):
    s = server()
    w = spawn(workload, "cpu", 60)
    result = []
    t = threading.Thread(target=lambda: result.append(
        get(f"{s.url}/debug/pprof/profile?pid={w.pid}&seconds=60")))
    t.start()
    assert wait_for(lambda: metric(s, "cprof_captures_active") == 1, timeout=20)
    time.sleep(1)
    t0 = time.time()
    s.stop()
    t.join(20)
    assert time.time() - t0 < 10
    status, _, prof = result[0]
    assert status == 200 and prof[:2] == b"\x1f\x8b"


# --- security ---

def test_token_bearer_and_basic_auth(server, workload, spawn, workdir):
    tok = os.path.join(workdir, "token")
    with open(tok, "w") as f:
        f.write("s3cret-T0ken\n")
    os.chmod(tok, 0o600)
    s = server("--token-file", tok)
    w = spawn(workload, "cpu", 60)
    status, h, body = get(s.url + "/healthz")
    assert status == 401 and h["X-Go-Pprof"] == "1" and "Basic" in h["WWW-Authenticate"]
    assert b"missing or wrong token" in body
    assert get(s.url + "/healthz", {"Authorization": "Bearer wrong"})[0] == 401
    assert get(s.url + "/healthz", {"Authorization": "Bearer s3cret-T0ken"})[0] == 200
    basic = base64.b64encode(b"anyone:s3cret-T0ken").decode()
    assert get(s.url + "/metrics", {"Authorization": "Basic " + basic})[0] == 200
    bad = base64.b64encode(b"anyone:s3cret-T0kem").decode()
    assert get(s.url + "/metrics", {"Authorization": "Basic " + bad})[0] == 401
    # go tool pprof with the token as the URL's password.
    host = s.url.split("//")[1]
    raw = go_pprof("-raw", f"http://x:s3cret-T0ken@{host}/debug/pprof/profile?pid={w.pid}&seconds=1")
    assert "hot_a" in raw
    r = go_pprof_run("-raw", f"http://x:nope@{host}/debug/pprof/profile?pid={w.pid}&seconds=1")
    assert r.returncode != 0 and "401 Unauthorized - missing or wrong token" in r.stderr
    # curl, both ways.
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-u",
                          "x:s3cret-T0ken", s.url + "/healthz"], capture_output=True, text=True)
    assert out.stdout == "200"
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                          "Authorization: Bearer s3cret-T0ken", s.url + "/healthz"],
                         capture_output=True, text=True)
    assert out.stdout == "200"


def test_bad_server_options(workdir):
    r = run_cprof("serve", "--listen", "127.0.0.1:99999", check=False)
    assert r.returncode == 1 and b"invalid listen address" in r.stderr
    r = run_cprof("serve", "--listen", "127.0.0.1:0", "--token-file",
                  os.path.join(workdir, "no-such-token"), check=False)
    assert r.returncode == 1 and b"cannot read the token file" in r.stderr
    r = run_cprof("serve", "--tls-cert", "x.pem", check=False)
    assert r.returncode == 2 and b"--tls-cert and --tls-key go together" in r.stderr
    r = run_cprof("serve", "--max-captures", "0", check=False)
    assert r.returncode == 2
    assert run_cprof("serve", "--help").stdout.startswith(b"Usage: cprof-bpf serve")


def test_non_loopback_without_token_warns(server):
    s = server(listen="0.0.0.0:0")
    assert wait_for(lambda: "without --token-file" in s.stderr(), timeout=5), s.stderr()


def test_tls_key_not_matching_its_certificate(workdir):
    cert, key = os.path.join(workdir, "mm-cert.pem"), os.path.join(workdir, "mm-key.pem")
    other = os.path.join(workdir, "mm-other.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1"], check=True,
                   capture_output=True)
    subprocess.run(["openssl", "genrsa", "-out", other, "2048"], check=True, capture_output=True)
    r = run_cprof("serve", "--listen", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", other,
                  check=False, timeout=30)
    err = r.stderr.decode()
    assert r.returncode == 1, err
    assert f"the TLS key {other} does not match the certificate {cert}" in err, err
    assert err.count("\n") == 1, err


def test_tls(server, workload, spawn, workdir):
    cert, key = os.path.join(workdir, "cert.pem"), os.path.join(workdir, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1"], check=True,
                   capture_output=True)
    s = server("--tls-cert", cert, "--tls-key", key)
    assert s.url.startswith("https://")
    w = spawn(workload, "cpu", 60)
    ctx = ssl.create_default_context(cafile=cert)
    ctx.check_hostname = False
    assert get(s.url + "/healthz", context=ctx)[2] == b"ok\n"
    out = subprocess.run(["curl", "-sk", s.url + "/healthz"], capture_output=True, text=True)
    assert out.stdout == "ok\n"
    host = s.url.split("//")[1]
    raw = go_pprof("-raw", f"https+insecure://{host}/debug/pprof/profile?pid={w.pid}&seconds=1")
    assert "hot_a" in raw
    # Plain HTTP to the TLS port gets no answer in HTTP.
    assert not raw_request(s.port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").startswith(b"HTTP/1.1 200")
    assert get(s.url + "/healthz", context=ctx)[0] == 200


# --- who may do what ---

def test_foreign_host_header_refused_unless_token(server, workdir):
    s = server()
    status, h, body = get(s.url + "/healthz", {"Host": f"evil.example:{s.port}"})
    assert status == 421 and h["X-Go-Pprof"] == "1", (status, body)
    assert b"does not name this server" in body and body.count(b"\n") == 1
    assert get(s.url + "/debug/pprof/", {"Host": "evil.example"})[0] == 421
    assert get(s.url + "/healthz", {"Host": f"localhost:{s.port}"})[0] == 200
    assert get(s.url + "/healthz", {"Host": f"127.0.0.1:{s.port + 1}"})[0] == 421
    tok = os.path.join(workdir, "host-token")
    with open(tok, "w") as f:
        f.write("t0ken\n")
    t = server("--token-file", tok)
    auth = {"Authorization": "Bearer t0ken", "Host": "evil.example"}
    assert get(t.url + "/healthz", auth)[0] == 200
    assert get(t.url + "/metrics", auth)[0] == 200


@pytest.fixture
def local_user(workdir):
    """A temporary unprivileged user, removed afterwards; and a directory it can read."""
    name = f"cprof{os.getpid() % 100000}{int(time.time() * 1000) % 1000}"
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                    name], check=True, capture_output=True)
    d = tempfile.mkdtemp(prefix="cprof-user-")
    os.chmod(d, 0o755)
    try:
        import pwd
        pw = pwd.getpwnam(name)
        yield {"name": name, "uid": pw.pw_uid, "gid": pw.pw_gid, "dir": d}
    finally:
        # Requested before spawn in the tests, so its processes are gone by now.
        subprocess.run(["userdel", "--force", name], capture_output=True)
        shutil.rmtree(d, ignore_errors=True)


def as_user(user, *argv):
    """argv run as user, exec'd in place (the pid is the program's)."""
    return ["setpriv", f"--reuid={user['uid']}", f"--regid={user['gid']}", "--clear-groups",
            "--", *[str(a) for a in argv]]


def user_get(user, url, data=None):
    """(status, body) of a GET (or POST of data) sent by user, with curl."""
    argv = ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", url]
    if data is not None:
        argv[1:1] = ["--data-binary", data.decode()]
    out = subprocess.run(as_user(user, *argv), capture_output=True, timeout=60).stdout
    body, _, code = out.rpartition(b"\n")
    return int(code), body


def kernel_address():
    """A kernel text address from kallsyms (root sees them with kptr_restrict 0 or 1)."""
    with open("/proc/kallsyms") as f:
        for line in f:
            addr, kind, name = line.split()[:3]
            if kind in "tT" and int(addr, 16) and name == "schedule":
                return int(addr, 16) + 1
    pytest.skip("no kernel addresses in /proc/kallsyms")


def test_local_user_profiles_only_its_own_processes(local_user, server, workload, spawn,
                                                    workdir):
    with open("/proc/sys/kernel/perf_event_paranoid") as f:
        paranoid = int(f.read())
    with open("/proc/sys/kernel/kptr_restrict") as f:
        kptr = int(f.read())
    if paranoid > 2:
        pytest.skip("perf_event_paranoid > 2: no unprivileged profiling to test")
    s = server()
    wl = os.path.join(local_user["dir"], "workload")
    shutil.copy(workload, wl)
    os.chmod(wl, 0o755)
    mine = spawn(*as_user(local_user, wl, "syscall", 60))
    roots = spawn(workload, "syscall", 60)
    with open(f"/proc/{mine.pid}/status") as f:
        assert f"Uid:\t{local_user['uid']}" in f.read()
    # Root's process, another user's: 403 with the reason; the whole system likewise (at the
    # machine's paranoid level above 0).
    status, body = user_get(local_user, f"{s.url}/debug/pprof/profile?pid={roots.pid}&seconds=1")
    assert status == 403 and b"belongs to uid 0" in body and body.count(b"\n") == 1, body
    status, body = user_get(local_user, f"{s.url}/debug/pprof/symbol?pid={roots.pid}",
                            data=b"0x1000")
    assert status == 403, body
    if paranoid > 0:
        status, body = user_get(local_user, f"{s.url}/debug/pprof/profile?seconds=1")
        assert status == 403 and b"whole system needs root" in body, body
    # Its own: 200, with kernel frames only where the kernel would show them to it.
    status, body = user_get(local_user, f"{s.url}/debug/pprof/profile?pid={mine.pid}&seconds=2")
    assert status == 200, body
    path = os.path.join(workdir, "user-profile.pb.gz")
    with open(path, "wb") as f:
        f.write(body)
    raw = go_pprof("-raw", path)
    assert "run_syscall" in raw or "main" in raw, raw[:2000]
    kernel_visible = paranoid <= 1 and kptr == 0
    if not kernel_visible:
        assert "kernel.kallsyms" not in raw and "0xffff" not in raw, raw[:3000]
    # Root's capture of the same process has them (so the check above can fail).
    raw_root = go_pprof("-raw", f"{s.url}/debug/pprof/profile?pid={mine.pid}&seconds=2")
    assert "kernel.kallsyms" in raw_root
    # /symbol: a kernel address resolves for root, not for the user.
    k = kernel_address()
    status, body = user_get(local_user, f"{s.url}/debug/pprof/symbol?pid={mine.pid}",
                            data=f"{k:#x}".encode())
    assert status == 200 and body.startswith(b"num_symbols: 1\n"), body
    if not kernel_visible:
        assert f"{k:#x}" not in body.decode(), body
    _, _, body = get(f"{s.url}/debug/pprof/symbol?pid={mine.pid}", data=f"{k:#x}".encode())
    assert f"{k:#x} schedule" in body.decode(), body


# --- connection limits ---

def test_idle_connections_do_not_block_the_server(server):
    s = server()
    socks = []
    try:
        for _ in range(200):
            socks.append(socket.create_connection(("127.0.0.1", s.port), timeout=5))
        time.sleep(0.3)
        for path, body in (("/healthz", b"ok\n"), ("/debug/pprof/", b"<html")):
            t0 = time.monotonic()
            status, _, got = get(s.url + path, timeout=5)
            took = time.monotonic() - t0
            assert status == 200 and body in got[:200], (path, status, got[:200])
            assert took < 1.0, f"{path} took {took:.2f} s with 200 idle connections open"
        # The server kept at most --max-per-client (64) of them: it closed the oldest idle
        # ones to make room for new connections.
        closed = 0
        for c in socks:
            c.setblocking(False)
            try:
                closed += c.recv(1) == b""
            except BlockingIOError:
                pass
            except ConnectionResetError:
                closed += 1
        assert closed >= 200 - 64, closed
    finally:
        for c in socks:
            c.close()


def test_busy_connections_over_the_limit_get_503(server):
    s = server("--max-per-client", "4")
    busy = []
    try:
        # Requests whose bodies have not all arrived: running, not idle.
        for _ in range(4):
            c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
            c.sendall(b"POST /debug/pprof/symbol HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      b"Content-Length: 10\r\n\r\n0x")
            busy.append(c)
        time.sleep(0.5)
        t0 = time.monotonic()
        answer = raw_request(s.port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert time.monotonic() - t0 < 1.0
        h = one_line_error(answer, 503, "too many connections from your address")
        assert h["retry-after"]
    finally:
        for c in busy:
            c.close()
    assert wait_for(lambda: get(s.url + "/healthz")[0] == 200, timeout=5)


def test_slowly_sent_request_is_cut(server):
    s = server("--request-timeout", "2")
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
        t0 = time.monotonic()
        c.sendall(b"GET /healthz HTTP/1.1\r\n")
        answer = b""
        for _ in range(40):  # one header byte every 0.2 s: never a whole head in time
            try:
                c.sendall(b"X")
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.2)
            c.setblocking(False)
            try:
                chunk = c.recv(4096)
                answer += chunk
                if not chunk or answer.endswith(b"\n"):
                    break
            except BlockingIOError:
                pass
            finally:
                c.setblocking(True)
        took = time.monotonic() - t0
    assert 1.8 < took < 4, took
    one_line_error(answer, 408, "not received within 2 s")
    assert get(s.url + "/healthz")[0] == 200


def test_slowly_sent_body_is_cut(server):
    s = server("--request-timeout", "2")
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
        t0 = time.monotonic()
        c.sendall(b"POST /debug/pprof/symbol HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Content-Length: 40\r\n\r\n")
        closed = False
        for _ in range(40):  # one body byte every 0.25 s: 10 s for the whole body
            time.sleep(0.25)
            try:
                c.sendall(b"0")
                c.setblocking(False)
                closed = c.recv(4096) == b""
            except BlockingIOError:
                pass
            except (BrokenPipeError, ConnectionResetError):
                closed = True
            finally:
                c.setblocking(True)
            if closed:
                break
        took = time.monotonic() - t0
    assert closed and 1.8 < took < 4, (closed, took)


# --- the flame graph page in a real browser ---

class Chromium:
    """Headless Chromium driven over the DevTools protocol (python3-websocket)."""

    def __init__(self, workdir):
        import websocket  # Debian python3-websocket

        self.profile = tempfile.mkdtemp(dir=workdir, prefix="chromium-")
        self.p = subprocess.Popen(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
             "--window-size=1280,900", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        assert wait_for(lambda: os.path.exists(port_file) and
                        open(port_file).read().count("\n") >= 1, timeout=60), "no chromium"
        port = int(open(port_file).read().split()[0])
        targets = []
        assert wait_for(lambda: targets.extend(json.load(urllib.request.urlopen(
            f"http://127.0.0.1:{port}/json/list"))) or any(t["type"] == "page" for t in targets),
            timeout=30)
        page = next(t for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=120,
                                              suppress_origin=True)
        self.seq = 0

    def call(self, method, **params):
        self.seq += 1
        self.ws.send(json.dumps({"id": self.seq, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.seq:
                assert "error" not in msg, msg
                return msg["result"]

    def eval(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True)
        assert "exceptionDetails" not in r, r
        return r["result"].get("value")

    def close(self):
        try:
            self.ws.close()
        finally:
            self.p.kill()
            self.p.wait()


FRAME_RECT = """(() => {
  const el = [...document.querySelectorAll('#fg .f')].find(e => e.dataset.name === %s);
  if (!el) return null;
  const r = el.getBoundingClientRect(), fg = document.getElementById('fg').getBoundingClientRect();
  return {x: r.x + r.width / 2, y: r.y + r.height / 2, w: r.width, fgw: fg.width,
          text: el.textContent, anc: el.classList.contains('anc')};
})()"""


def test_flame_graph_in_chromium(shared, workload, spawn, workdir):
    w = spawn(workload, "cpu", 60)
    br = Chromium(workdir)
    try:
        br.call("Page.enable")
        br.call("Page.navigate", url=f"{shared.url}/debug/pprof/flamegraph?pid={w.pid}&seconds=2")
        assert wait_for(lambda: br.eval("document.body && document.body.dataset.ready") == "1",
                        timeout=60, step=0.2), br.eval("document.documentElement.outerHTML")[:2000]
        # Self-contained: nothing but the page itself was loaded.
        loaded = br.eval("performance.getEntriesByType('resource').map(e => e.name)")
        assert loaded == [], loaded
        hot = br.eval(FRAME_RECT % '"hot_a"')
        hot_b = br.eval(FRAME_RECT % '"hot_b"')
        assert hot and hot["text"] == "hot_a", hot
        # hot_a takes about 3/4 of the width, hot_b about 1/4.
        assert 0.55 < hot["w"] / hot["fgw"] < 0.92, hot
        assert hot_b and hot_b["w"] < hot["w"], hot_b
        # Hover shows the values.
        br.call("Input.dispatchMouseEvent", type="mouseMoved", x=hot["x"], y=hot["y"])
        tip = br.eval("document.getElementById('tip').innerText")
        assert "hot_a" in tip and "% of all" in tip, tip
        # Click zooms: hot_a fills the width, hot_b is gone, run_cpu stays as a faded ancestor.
        for t in ("mousePressed", "mouseReleased"):
            br.call("Input.dispatchMouseEvent", type=t, x=hot["x"], y=hot["y"], button="left",
                    clickCount=1)
        assert wait_for(lambda: br.eval("document.getElementById('fg').dataset.zoom") == "hot_a",
                        timeout=5)
        zoomed = br.eval(FRAME_RECT % '"hot_a"')
        assert zoomed["w"] > 0.98 * zoomed["fgw"], zoomed
        assert br.eval(FRAME_RECT % '"hot_b"') is None
        assert br.eval(FRAME_RECT % '"run_cpu"')["anc"] is True
        # Search highlights the matches and says how much they hold.
        br.call("Input.dispatchKeyEvent", type="keyDown", key="Escape", code="Escape",
                windowsVirtualKeyCode=27)
        assert br.eval("document.getElementById('fg').dataset.zoom") == ""
        br.eval("(() => { const s = document.getElementById('search'); s.value = 'hot_b';"
                " s.dispatchEvent(new Event('input')); })()")
        assert wait_for(lambda: br.eval(
            "[...document.querySelectorAll('#fg .f.match')].map(e => e.dataset.name).join()")
            == "hot_b", timeout=5)
        status = br.eval("document.getElementById('status').textContent")
        assert re.search(r"matched .* \((1\d|2\d|3\d)\.\d+% of all\)", status), status
        shot = br.call("Page.captureScreenshot", format="png")
        with open(os.path.join(workdir, "flamegraph.png"), "wb") as f:
            f.write(base64.b64decode(shot["data"]))
    finally:
        br.close()
