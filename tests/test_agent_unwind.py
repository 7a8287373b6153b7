"""The agent's default unwinding (--unwind auto), end to end: a service built without frame
pointers beside a stream of short-lived processes keeps its callers, the short-lived processes
are symbolized, and /metrics reports what the unwind tables cost."""
import os
import re
import signal
import subprocess
import threading
import time

import pytest

from conftest import build, go_pprof, pprof_top, pprof_traces, trace_share
from conftest import CPROF, assert_no_sanitizer, start_cprof, wait_for
from test_agent import fetch, finish, listen_url, metrics, windows


def start_agent(*args):
    # The on-disk table cache (--unwind-cache, default under /var/cache) would make the tables
    # built depend on earlier runs: off, but where a test is about it.
    if "--unwind-cache" not in args:
        args = (*args, "--unwind-cache", "off")
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
    # Each short-lived process read while it lived (at its first sample, or at the reader's
    # wake-up after its exec) found its executable's and libraries' tables built already.
    assert m["cprof_agent_unwind_exe_hits_total"] >= len(shorts), m
    # (the machine's other processes are sampled and get tables too, one per file: how many
    # depends on what else runs, so the sharing is checked through the hits above)
    assert m["cprof_agent_unwind_build_seconds_total"] > 0, m


def test_tables_only_for_sampled_processes(nofp_load, tmp_path):
    """Processes that exec and exit without a sample get no table (and cost no build); those
    that exit within 10 ms unsampled are not even read; one that lives on is read at its exec."""
    out = tmp_path / "store"
    a = start_agent("-o", out, "-i", 1, "-d", 8, "-F", 19, "--listen", "127.0.0.1:0", "-vv")
    url = listen_url(a)
    lines = []
    drain = threading.Thread(target=lambda: lines.extend(a.stderr), daemon=True)
    drain.start()
    time.sleep(1)
    before = metrics(fetch(url + "/metrics"))
    pids = set()
    for _ in range(40):  # /bin/true: a few ms each, almost never sampled at 19 Hz
        t = subprocess.Popen(["/bin/true"])
        t.wait()
        pids.add(t.pid)
    sleeper = subprocess.Popen(["sleep", "1.5"])  # never sampled, alive at 10 ms
    time.sleep(2.5)
    sleeper.wait()
    assert fetch(url + "/healthz")[0] == 200
    after = metrics(fetch(url + "/metrics"))
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
    # Many were not read at all (each reading, even of known executables only, is logged; one
    # that outlived 10 ms on a loaded machine is), and were counted so; the sleeper was read
    # at its exec, its known tables mapped. Before, all 40 were read.
    read = {int(x) for x in re.findall(r"unwind: pid (\d+): \d+ trie entries", err)}
    assert len(pids & read) <= 30, sorted(pids & read)
    unread = after["cprof_agent_execs_unread_total"] - before["cprof_agent_execs_unread_total"]
    assert unread >= 10, (unread, after["cprof_agent_execs_total"])
    assert sleeper.pid in read, sleeper.pid


def test_unwind_cpu_option(tmp_path):
    from conftest import run_cprof
    r = run_cprof("agent", "--unwind-cpu", "200", "-o", tmp_path, check=False)
    assert r.returncode == 2 and b"--unwind-cpu" in r.stderr


def pad_asm(tag, n, mod):
    """Assembly of n small functions with call-frame information: 4 table rows each (two CFA
    rules and the gap after each aligned function), so that a test program's unwind table
    has the size the test needs without compiling C for it."""
    out = ["\t.text"]
    for i in range(n):
        f = f"pad_{tag}_{i}"
        off = 8 * (i % mod + 1)
        out += ["\t.p2align 4", f"\t.globl {f}", f"\t.type {f}, @function", f"{f}:",
                "\t.cfi_startproc", f"\tsubq ${off}, %rsp", f"\t.cfi_def_cfa_offset {off + 8}",
                f"\taddq ${off}, %rsp", "\t.cfi_def_cfa_offset 8", "\tret", "\t.cfi_endproc",
                f"\t.size {f}, .-{f}"]
    out.append('\t.section .note.GNU-stack,"",@progbits')
    return "\n".join(out) + "\n"


def build_evict(workdir, tag, nfuncs, mod):
    """tests/fixtures/unwind_evict.c (no frame pointers) with nfuncs generated functions: a
    table of about 48 * nfuncs bytes. mod varies the code, so each tag has its own build-id
    (copies with the same code would share one table)."""
    from conftest import FIXTURES
    path = os.path.join(workdir, f"unwind_evict_{tag}")
    if not os.path.exists(path):
        asm = os.path.join(workdir, f"pad_{tag}.s")
        with open(asm, "w") as f:
            f.write(pad_asm(tag, nfuncs, mod))
        # The generated functions first: the program's own sit after them, at an address
        # that depends on how many there are.
        subprocess.run(["cc", "-O2", "-fomit-frame-pointer", "-o", path, asm,
                        os.path.join(FIXTURES, "unwind_evict.c")], check=True)
    return path


def table_bytes(path):
    r = subprocess.run([CPROF, "unwind-table", path], capture_output=True, check=True)
    for line in r.stderr.decode().splitlines():
        if line.startswith("rows "):
            return int(line.split()[3])
    raise AssertionError(r.stderr)


class MetricsPoller:
    """Reads /metrics every 0.3 s in a thread, keeping every reading."""

    def __init__(self, url):
        import threading
        self.url, self.seen, self.stop = url, [], threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop.is_set():
            try:
                self.seen.append((time.time(), metrics(fetch(self.url + "/metrics"))))
            except OSError:
                pass
            self.stop.wait(0.3)

    def last(self):
        return self.seen[-1][1] if self.seen else {}

    def close(self):
        self.stop.set()
        self.t.join()


def complete_share(files, pid):
    """Share of pid's samples in hot_leaf whose stack reaches main through level2, level1."""
    traces = []
    for f in files:
        traces += [(v, fns) for v, fns in pprof_traces(f, extra=(f"-tagfocus=pid={pid}",))
                   if fns and fns[0] == "hot_leaf"]
    return trace_share(traces, lambda fns: fns[1:4] == ["level2", "level1", "main"])


def test_eviction_under_tiny_unwind_mem(workdir, tmp_path):
    """--unwind-mem 7M and three no-fp programs whose tables are 3, 3 and 4.6 MB, busy by turns:
    the table of A (idle, still running) is evicted to make room, the memory never passes the
    budget, and when A is busy again its table is rebuilt and its stacks are complete again."""
    a = build_evict(workdir, "a", 64000, 13)
    b = build_evict(workdir, "b", 64000, 11)
    c = build_evict(workdir, "c", 96000, 7)
    sizes = [table_bytes(p) for p in (a, b, c)]
    budget = 7 << 20
    # A and B fit together, C needs both gone, and what else the machine runs has room
    # beside C (2.5 MB: tables used in the last 250 ms are not evicted).
    assert sizes[0] + sizes[1] < budget < sizes[0] + sizes[2] and sizes[2] < budget - 2.5e6, sizes
    out = tmp_path / "store"
    ag = start_agent("-o", out, "-i", 1, "-d", 150, "-F", 99, "--listen", "127.0.0.1:0", "-v",
                     "--unwind-mem", "7M", "--unwind-cpu", "50", "--max-rss", "4G")
    url = listen_url(ag)
    poll = MetricsPoller(url)
    try:
        # The first windows symbolize everything the machine runs (slow under the sanitizers):
        # the phases start once windows come on time.
        assert wait_for(lambda: len(windows(out)) >= 3, timeout=90, step=0.2)
        time.sleep(1)
        t0 = time.time()
        pa = subprocess.Popen([a, "h:7", "s:10", "h:6"])  # busy, idle (evicted), busy again
        time.sleep(7)
        pb = subprocess.Popen([b, "h:3", "s:14"])  # B's table joins A's
        time.sleep(5)
        pc = subprocess.Popen([c, "h:3"])  # C needs the room of both
        pc.wait()
        time.sleep(max(0, 17 - (time.time() - t0)))
        before = poll.last()
        t3 = time.time()  # A is busy again
        pa.wait()
        pb.wait()
        time.sleep(2.5)
        after = poll.last()
    finally:
        poll.close()
        ag.send_signal(signal.SIGTERM)  # writes the open window and exits 0
    err = finish(ag)
    assert poll.seen, "no /metrics reading"
    used = [m.get("cprof_agent_unwind_table_bytes", 0) for _, m in poll.seen]
    assert max(used) <= budget, max(used)
    assert after["cprof_agent_unwind_budget_bytes"] == budget, after
    assert after["cprof_agent_unwind_evictions_total"] >= 2, after
    ev = 'cprof_agent_dropped_total{reason="unwind_table_evictions"}'
    assert after[ev] == after["cprof_agent_unwind_evictions_total"], after
    # A's busy phase met its table gone: it asked for it and got it back.
    assert after["cprof_agent_unwind_misses_total"] > before["cprof_agent_unwind_misses_total"], \
        (before, after)
    assert after["cprof_agent_unwind_rebuilds_total"] > \
        before["cprof_agent_unwind_rebuilds_total"], (before, after)
    assert "unwind tables evicted to stay within --unwind-mem" in err, err
    files = windows(out)
    # (A's first samples, before its table is built, are walked with frame pointers)
    first = [f for f in files if t0 + 3 < os.path.getmtime(f) <= t0 + 8]
    last = [f for f in files if os.path.getmtime(f) > t3 + 2]
    assert first and last, (str([round(os.path.getmtime(f) - t0, 1) for f in files]), t3 - t0)
    # Before the eviction A had its table: a window of complete stacks at least (its table
    # waits while the tables of what the machine just ran fill the budget, up to a second
    # after their last use).
    share1 = max(complete_share([f], pa.pid) for f in first)
    share3, n3 = complete_share(last, pa.pid)
    assert share1[1] > 0 and n3 > 0, (share1, n3)
    assert share1[0] >= 0.9, share1
    # After it, rebuilt at its first samples: nearly all complete again.
    assert share3 >= 0.8, (share3, n3, after)
    comments = "".join(go_pprof("-comments", f) for f in files)
    assert "unwind tables evicted" in comments, comments


def test_replaced_executable_gets_a_new_table(workdir, tmp_path):
    """An executable rewritten in place (same path and inode, new contents and mtime) after its
    table was built gets a table of its own: the old one, still cached, would unwind it wrong."""
    import shutil
    v1 = build_evict(workdir, "r1", 2000, 5)
    v2 = build_evict(workdir, "r2", 9000, 3)  # its functions sit elsewhere
    svc = str(tmp_path / "svc")
    shutil.copyfile(v1, svc)
    os.chmod(svc, 0o755)
    out = tmp_path / "store"
    ag = start_agent("-o", out, "-i", 1, "-d", 150, "-F", 99, "--listen", "127.0.0.1:0", "-v",
                     "--unwind-cpu", "50", "--max-rss", "4G")
    listen_url(ag)
    try:
        assert wait_for(lambda: len(windows(out)) >= 3, timeout=90, step=0.2)
        p1 = subprocess.Popen([svc, "h:4"])
        p1.wait()
        ino = os.stat(svc).st_ino
        time.sleep(1.5)
        shutil.copyfile(v2, svc)  # truncates and rewrites the same inode
        assert os.stat(svc).st_ino == ino
        t2 = time.time()
        p2 = subprocess.Popen([svc, "h:6"])
        p2.wait()
        time.sleep(2.5)
    finally:
        ag.send_signal(signal.SIGTERM)
    finish(ag)
    files = windows(out)
    share1 = max(complete_share([f], p1.pid) for f in files)
    assert share1[0] >= 0.9, share1
    # (its first samples, before its own table is built, walk with frame pointers; with the
    # old table they would all be wrong)
    later = [f for f in files if os.path.getmtime(f) > t2 + 3]
    share2, n2 = complete_share(later, p2.pid)
    assert n2 > 0 and share2 >= 0.7, (share2, n2, [
        (round(os.path.getmtime(f) - t2, 1), complete_share([f], p2.pid)) for f in later])
    assert max(complete_share([f], p2.pid) for f in later)[0] >= 0.9


def test_200_executables_stay_within_budgets(workdir, tmp_path):
    """200 distinct no-fp executables (copies of one program, each with its own build-id and
    inode), run briefly while the agent runs under --unwind-mem 64K: the tables never pass the
    budget (the least recently sampled go), the symbol caches stay under their caps, the
    processes are symbolized, and the unwinder drops their state once they are gone."""
    import re
    build_evict(workdir, "many", 200, 5)  # writes pad_many.s
    prog = os.path.join(workdir, "unwind_evict_many_g")  # the same with DWARF
    subprocess.run(["cc", "-O2", "-g", "-fomit-frame-pointer", "-o", prog,
                    os.path.join(workdir, "pad_many.s"),
                    os.path.join(os.path.dirname(__file__), "fixtures", "unwind_evict.c")],
                   check=True)
    note = subprocess.run(["readelf", "-n", prog], capture_output=True, text=True).stdout
    bid = bytes.fromhex(re.search(r"Build ID: ([0-9a-f]+)", note).group(1))
    data = open(prog, "rb").read()
    assert data.count(bid) == 1
    d = tmp_path / "many"
    d.mkdir()
    copies = []
    for i in range(200):
        p = str(d / f"m{i:03d}")
        with open(p, "wb") as f:
            f.write(data.replace(bid, i.to_bytes(4, "big") + bid[4:]))
        os.chmod(p, 0o755)
        copies.append(p)
    out = tmp_path / "store"
    ag = start_agent("-o", out, "-i", 1, "-d", 200, "-F", 99, "--listen", "127.0.0.1:0", "-v",
                     "--unwind-mem", "64K", "--unwind-cpu", "50", "--max-rss", "4G")
    url = listen_url(ag)
    poll = MetricsPoller(url)
    pids = []
    try:
        assert wait_for(lambda: len(windows(out)) >= 3, timeout=90, step=0.2)
        time.sleep(1.5)
        before = poll.last()
        for i in range(0, 200, 8):  # 8 at a time, 0.25 s of work each
            batch = [subprocess.Popen([p, "h:0.25"]) for p in copies[i:i + 8]]
            for p in batch:
                p.wait()
            pids += [p.pid for p in batch]
        time.sleep(3.5)  # past the window after the last exit, and a sweep
        after = poll.last()
    finally:
        poll.close()
        ag.send_signal(signal.SIGTERM)
    finish(ag)
    budget = 64 << 10
    used = [m.get("cprof_agent_unwind_table_bytes", 0) for _, m in poll.seen]
    assert max(used) <= budget, max(used)
    built = after["cprof_agent_unwind_tables_built_total"] - \
        before["cprof_agent_unwind_tables_built_total"]
    assert built >= 50, (built, after)
    assert after["cprof_agent_unwind_evictions_total"] - \
        before["cprof_agent_unwind_evictions_total"] >= 40, after
    # The unwinder holds nothing of the processes once they are gone.
    assert after["cprof_agent_unwind_processes"] <= before["cprof_agent_unwind_processes"] + 20, \
        (before["cprof_agent_unwind_processes"], after["cprof_agent_unwind_processes"])
    for _, m in poll.seen:  # the symbol caches, at every reading
        assert m["cprof_agent_symbol_dwarf_open"] <= m["cprof_agent_symbol_dwarf_open_max"], m
        assert m["cprof_agent_symbol_addrs"] <= m["cprof_agent_symbol_addrs_max"], m
    # One read per file: more than 64 files, so DWARF readers were closed and reopened.
    delta = {k: after[k] - before[k] for k in ("cprof_agent_symbol_file_misses_total",
                                               "cprof_agent_procs_missed_total",
                                               "cprof_agent_procs_late_total",
                                               "cprof_agent_symbol_file_hits_total")}
    assert delta["cprof_agent_symbol_file_misses_total"] >= 150, delta
    assert after["cprof_agent_symbol_files"] >= 150 or \
        after["cprof_agent_symbol_cache_resets_total"], after
    # The copies are symbolized from their own files after they exited.
    seen = set()
    for f in windows(out):
        tags = go_pprof("-tags", f"-tagfocus=exe={d}/", f, check=False)
        seen |= {int(x) for x in re.findall(r"\b(\d+)\s*$", tags.split("pid:")[-1], re.M)
                 if int(x) in pids} if "pid:" in tags else set()
    assert len(seen) >= 100, len(seen)
    named = 0
    for f in windows(out):
        top, _ = pprof_top(f, extra=[f"-tagfocus=exe={d}/"])
        named += "hot_leaf" in top
    assert named >= 2, named


def fnv64(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def cache_file(cache, exe):
    """The file of --unwind-cache that holds exe's table (named by its build-id's key)."""
    r = subprocess.run(["readelf", "-n", exe], capture_output=True, text=True, check=True)
    bid = re.search(r"Build ID: ([0-9a-f]+)", r.stdout).group(1)
    return cache / f"{fnv64(b'b:' + bid.encode()):016x}.unw"


def test_restart_reuses_the_persisted_cache(nofp_work, spawn, tmp_path):
    """--unwind-cache: a first agent builds the no-fp service's table and keeps it; a restart
    loads it instead of building it, with complete stacks; a file that fails its checks is
    removed and rebuilt; the size bound holds, and a file that is not the cache's stays."""
    cache = tmp_path / "cache"
    st = os.stat(nofp_work)
    fkey = f"f:{os.major(st.st_dev)}:{os.minor(st.st_dev)}:{st.st_ino}:"
    w = spawn(nofp_work, "cpu", 60)

    def run(name, *extra):
        out = tmp_path / name
        a = start_agent("-o", out, "-i", 2, "-F", 99, "--listen", "127.0.0.1:0", "-vv",
                        "--max-rss", "4G", "--unwind-cpu", "50", "--unwind-cache", cache, *extra)
        url = listen_url(a)
        assert wait_for(lambda: len(windows(out)) >= 3, timeout=60, step=0.2)
        m = metrics(fetch(url + "/metrics"))
        a.send_signal(signal.SIGTERM)
        err = finish(a)
        lines = [ln for ln in err.splitlines() if fkey in ln and "rows for" in ln]
        traces = []
        for f in windows(out)[1:]:
            traces += [(v, fns) for v, fns in pprof_traces(f, extra=(f"-tagfocus=pid={w.pid}",))
                       if fns and fns[0] in ("hot_a", "hot_b")]
        share, n = trace_share(traces, lambda fns: fns[1:3] == ["run_cpu", "main"])
        assert n > 0 and share >= 0.9, (name, share, n)
        return m, lines

    m1, lines1 = run("first")
    assert lines1 and not any("from the cache" in ln for ln in lines1), lines1
    assert m1["cprof_agent_unwind_cache_stores_total"] >= 2, m1
    own = cache_file(cache, nofp_work)
    assert own.is_file() and (own.stat().st_mode & 0o777) == 0o600, list(cache.iterdir())
    assert (cache.stat().st_mode & 0o777) == 0o700

    m2, lines2 = run("second")
    assert lines2 and all("from the cache" in ln for ln in lines2), lines2
    assert m2["cprof_agent_unwind_cache_loads_total"] >= 2, m2
    assert m2["cprof_agent_unwind_cache_rejected_total"] == 0, m2

    # One byte of the service's rows changed: refused, removed, built again and kept again.
    data = bytearray(own.read_bytes())
    data[-5] ^= 0xFF
    own.write_bytes(bytes(data))
    foreign = cache / "notes.txt"
    foreign.write_text("not the cache's")
    m3, lines3 = run("third", "--unwind-cache-size", "1M")
    assert lines3 and not any("from the cache" in ln for ln in lines3), lines3
    assert m3["cprof_agent_unwind_cache_rejected_total"] >= 1, m3
    assert m3["cprof_agent_unwind_cache_bytes"] <= 1 << 20, m3
    total = sum(p.stat().st_size for p in cache.glob("*.unw"))
    assert total <= 1 << 20, total
    assert foreign.read_text() == "not the cache's"


def test_unwind_cache_refuses_an_unsafe_directory(tmp_path):
    """A cache directory others may write is never read (its files become BPF maps)."""
    cache = tmp_path / "open"
    cache.mkdir()
    os.chmod(cache, 0o777)
    out = tmp_path / "store"
    a = start_agent("-o", out, "-i", 1, "-d", 2, "--listen", "127.0.0.1:0",
                    "--unwind-cache", cache)
    err = finish(a)
    assert "writable by others: tables are not kept across restarts" in err, err
    assert not list(cache.iterdir())
