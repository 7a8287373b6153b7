"""cprof-bpf -t heap, end to end: malloc-family uprobes on real processes with a known allocation
pattern (tests/fixtures/heapload.c, heapload_cxx.cpp), read back through go tool pprof."""
import os
import signal
import subprocess
import time

import pytest

from conftest import (assert_no_sanitizer, build, go_pprof, go_pprof_run, pprof_top,
                      pprof_traces, profile_gated, read_until, run_cprof, san_env,
                      start_cprof, CPROF)

FLAGS = ("-O2", "-g", "-fno-omit-frame-pointer", "-pthread")

# tests/fixtures/heapload.c, `exact` mode: site -> (objects, bytes allocated, bytes kept).
EXACT = {
    "leak_site": (1000, 1000 * 4096, 1000 * 4096),
    "churn_site": (5000, 5000 * 200, 0),
    "calloc_site": (300, 300 * 640, 300 * 640),
    # realloc(NULL, 128) then realloc(p, 1024): two allocations, the first given back.
    "realloc_site": (400, 200 * (128 + 1024), 200 * 1024),
    "memalign_site": (100, 100 * 256, 100 * 256),
    "thread_site": (500, 500 * 512, 500 * 512),
}


@pytest.fixture(scope="session")
def heapload(workdir):
    return build(workdir, "heapload.c", "heapload", flags=FLAGS)


@pytest.fixture(scope="session")
def heapload_je(workdir):
    return build(workdir, "heapload.c", "heapload-je", flags=FLAGS, extra=("-ljemalloc",))


def build_cxx(workdir, out, extra=()):
    return build(workdir, "heapload_cxx.cpp", out, extra=extra, cc="g++")


def profile_pattern(exe, out, *args, mode=None, timeout=60):
    """Starts exe (which waits for SIGUSR1), attaches cprof-bpf -t heap, then lets exe run its
    pattern and exit; cprof-bpf stops with it. Returns cprof-bpf's stderr."""
    done, err = profile_gated([exe] + ([mode] if mode else []), "-t", "heap", "-d", 60, "-o", out,
                              *args, timeout=timeout)
    assert done.startswith("done")
    return err


def profile_system(exe, out, mode, timeout=120):
    """profile_pattern with cprof-bpf -a, stopped by SIGINT once exe is done. exe lingers until
    cprof-bpf has ended: its mappings are read once its first sample is announced, which can come
    late while the unwinder reads the tables of every other process."""
    w = subprocess.Popen([exe, mode, "linger"], stdout=subprocess.PIPE, stdin=subprocess.PIPE,
                         text=True)
    p = None
    try:
        assert w.stdout.readline().startswith("ready")
        p = start_cprof("-t", "heap", "-a", "-d", 60, "-v", "-o", out)
        err = read_until(p.stderr, "profiling", timeout)
        assert "profiling" in err, err
        w.send_signal(signal.SIGUSR1)
        assert w.stdout.readline().startswith("done")
        p.send_signal(signal.SIGINT)
        err += p.communicate(timeout=timeout)[1]
        assert p.returncode == 0, err
        assert_no_sanitizer(err)
        return err
    finally:
        for proc in (w, p):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


def values(path, index, extra=()):
    # -unit=B: exact byte counts, not pprof's rounded kB/MB.
    rows, total = pprof_top(path, index, extra=["-unit=B", *extra])
    return {fn.split(".constprop")[0].split(".isra")[0]: flat for fn, (flat, _) in rows.items()}, \
        total


def check_exact(path):
    objs, _ = values(path, "alloc_objects")
    space, _ = values(path, "alloc_space")
    inuse, _ = values(path, "inuse_space")
    for site, (n, nbytes, kept) in EXACT.items():
        assert objs.get(site) == n, (site, objs)
        assert space.get(site) == nbytes, (site, space)
        assert inuse.get(site, 0) == kept, (site, inuse)


def test_every_allocation_exact_per_site(heapload, workdir):
    out = os.path.join(workdir, "heap-exact.pb.gz")
    profile_pattern(heapload, out, "--heap-sample-bytes", 1, mode="exact")
    check_exact(out)
    # The thread's allocations carry the thread's stack, not main's.
    traces = pprof_traces(out, extra=["-sample_index=alloc_objects"])
    th = [fns for _, fns in traces if fns[0].startswith("thread_site")]
    assert th and all("thread_main" in fns and "main" not in fns for fns in th), th
    comments = go_pprof("-comments", out)
    assert "every allocation" in comments and "libc.so.6" in comments, comments
    assert "dropped: nothing" in comments, comments


def test_profile_is_go_heap_shaped(heapload, workdir):
    out = os.path.join(workdir, "heap-shape.pb.gz")
    profile_pattern(heapload, out, "--heap-sample-bytes", 1, mode="exact")
    raw = go_pprof("-raw", out)
    assert "PeriodType: space bytes" in raw, raw[:600]
    assert ("alloc_objects/count alloc_space/bytes inuse_objects/count "
            "inuse_space/bytes[dflt]") in raw, raw[:600]
    assert "bytes:[4096]" in raw and "bytes:[200]" in raw, raw
    # The default sample type and an explicit -sample_index=inuse_space agree.
    rows, total = pprof_top(out, "inuse_space", extra=["-unit=B"])
    dflt, total2 = pprof_top(out, extra=["-unit=B"])
    assert total == total2 and rows["leak_site"][0] == 1000 * 4096, rows
    # -tagfocus on the bytes label selects the churn site's 200-byte blocks.
    focus, _ = pprof_top(out, "alloc_objects", extra=["-tagfocus=bytes=200B"])
    assert set(focus) >= {"churn_site"} and "leak_site" not in focus, focus


def test_default_sampling_totals_within_15_percent(heapload, workdir):
    out = os.path.join(workdir, "heap-bulk.pb.gz")
    profile_pattern(heapload, out, mode="bulk")
    space, total = values(out, "alloc_space")
    inuse, _ = values(out, "inuse_space")
    leak, churn = 4000 * 65536, 100000 * 4096
    # About 1300 samples: a 15% error is more than 4 standard deviations.
    assert abs(space["leak_site"] - leak) <= 0.15 * leak, space
    assert abs(space["churn_site"] - churn) <= 0.15 * churn, space
    assert abs(inuse["leak_site"] - leak) <= 0.15 * leak, inuse
    assert inuse.get("churn_site", 0) <= 0.01 * churn, inuse
    comments = go_pprof("-comments", out)
    assert "1/(1-exp(-s/524288))" in comments, comments
    assert "Period: 524288" in go_pprof("-raw", out)


def test_jemalloc_linked(heapload_je, workdir):
    out = os.path.join(workdir, "heap-je.pb.gz")
    profile_pattern(heapload_je, out, "--heap-sample-bytes", 1, mode="exact")
    check_exact(out)
    comments = go_pprof("-comments", out)
    assert "libjemalloc.so" in comments, comments


def test_system_wide_finds_running_allocators(workdir):
    # -a: the system's libc and libstdc++, and jemalloc because a running process (the
    # fixture) has it mapped. Default sampling, so the rest of the machine pays little. The
    # fixture has a name of its own: other copies of heapload may run at the same time.
    exe = build(workdir, "heapload.c", "heapload-sysje", flags=FLAGS, extra=("-ljemalloc",))
    out = os.path.join(workdir, "heap-all-je.pb.gz")
    profile_system(exe, out, "bulk")
    comments = go_pprof("-comments", out)
    assert "target: whole system" in comments, comments
    assert "libjemalloc.so" in comments and "libc.so.6" in comments, comments
    space, _ = values(out, "alloc_space", extra=["-tagfocus=comm=^heapload-sysje$"])
    leak, churn = 4000 * 65536, 100000 * 4096
    assert abs(space.get("leak_site", 0) - leak) <= 0.15 * leak, space
    assert abs(space.get("churn_site", 0) - churn) <= 0.15 * churn, space


@pytest.mark.parametrize("allocator", ["glibc", "jemalloc"])
def test_cxx_new_blames_its_caller(allocator, workdir):
    exe = build_cxx(workdir, f"heapload-cxx-{allocator}",
                    extra=("-ljemalloc",) if allocator == "jemalloc" else ())
    out = os.path.join(workdir, f"heap-cxx-{allocator}.pb.gz")
    profile_pattern(exe, out, "--heap-sample-bytes", 1)
    objs, _ = values(out, "alloc_objects")
    inuse, _ = values(out, "inuse_objects")
    # Counted once (new's own malloc is not counted again), and in the function calling new.
    assert objs.get("new_site") == 700 and objs.get("array_site") == 400, objs
    assert inuse.get("new_site") == 700 and inuse.get("array_site") == 300, inuse
    assert not any("operator new" in fn or fn in ("malloc", "_Znwm") for fn in objs), objs
    assert "frees of untracked" not in go_pprof("-comments", out)


def test_target_that_exits_mid_profile(heapload, workdir):
    # The fixture exits right after its pattern, long before -d 60: a valid profile still.
    out = os.path.join(workdir, "heap-exit.pb.gz")
    t0 = time.time()
    err = profile_pattern(heapload, out, "--heap-sample-bytes", 1, mode="exact")
    assert time.time() - t0 < 40 and "target exited" in err, err
    rows, _ = values(out, "inuse_space")
    assert rows["leak_site"] == 1000 * 4096


def test_format_top(heapload, workdir):
    out = os.path.join(workdir, "heap-top.txt")
    profile_pattern(heapload, out, "--heap-sample-bytes", 1, "--format", "top", mode="exact")
    text = open(out).read()
    assert "inuse_space" in text or "flat" in text, text
    lines = [l for l in text.splitlines() if "leak_site" in l]
    assert lines, text


def test_no_malloc_to_probe(workdir):
    src = os.path.join(workdir, "nomalloc.c")
    with open(src, "w") as f:
        f.write("void _start(void) { for (;;) __asm__ volatile(\"syscall\" :: \"a\"(34) "
                ": \"rcx\", \"r11\", \"memory\"); }\n")
    exe = os.path.join(workdir, "nomalloc")
    subprocess.run(["cc", "-O2", "-nostdlib", "-static", "-o", exe, src], check=True)
    w = subprocess.Popen([exe])
    try:
        time.sleep(0.2)
        r = run_cprof("-t", "heap", "-p", w.pid, "-d", 1, "-o", os.path.join(workdir, "x.pb.gz"),
                      check=False)
        err = r.stderr.decode().strip()
        assert r.returncode == 1, err
        assert "no malloc found" in err and exe in err and len(err.splitlines()) == 1, err
    finally:
        w.kill()
        w.wait()


def test_bad_heap_options():
    for args in (["--heap-sample-bytes", "0"], ["--heap-sample-bytes", "x"],
                 ["--heap-max-live", "1"]):
        r = run_cprof("-t", "heap", "-p", "1", *args, check=False)
        err = r.stderr.decode().strip()
        assert r.returncode == 2 and len(err.splitlines()) == 1, err


def test_full_live_map_is_counted(heapload, workdir):
    out = os.path.join(workdir, "heap-full.pb.gz")
    err = profile_pattern(heapload, out, "--heap-sample-bytes", 1, "--heap-max-live", 64,
                          mode="exact")
    assert "live map full" in err, err
    comments = go_pprof("-comments", out)
    assert "live map full (--heap-max-live)" in comments, comments
    # Allocations are all counted; what could not be tracked is not claimed to be in use.
    objs, _ = values(out, "alloc_objects")
    inuse, _ = values(out, "inuse_space")
    assert objs["leak_site"] == 1000 and inuse.get("leak_site", 0) < 1000 * 4096, (objs, inuse)


def test_command(workdir):
    # `-- CMD`: the probes go in before CMD runs (its executable and the system's C and C++
    # runtimes), so even its first allocations are seen.
    exe = build_cxx(workdir, "heapload-cxx-glibc")
    out = os.path.join(workdir, "heap-cmd.pb.gz")
    run_cprof("-t", "heap", "--heap-sample-bytes", 1, "-o", out, "--", exe, "now")
    objs, _ = values(out, "alloc_objects")
    assert objs.get("new_site") == 700 and objs.get("array_site") == 400, objs


def test_command_found_in_path(workdir):
    # `-- CMD` by a bare name: the executable execvp runs, found in PATH, is probed before it
    # runs too (its own allocations are in the profile, every one).
    exe = build_cxx(workdir, "heapload-cxx-glibc")
    out = os.path.join(workdir, "heap-cmd-path.pb.gz")
    env = san_env(PATH=os.path.dirname(exe) + ":" + os.environ.get("PATH", "/usr/bin:/bin"))
    r = subprocess.run([CPROF, "-t", "heap", "--heap-sample-bytes", "1", "-o", out, "--",
                        os.path.basename(exe), "now"], capture_output=True, timeout=120, env=env)
    err = r.stderr.decode(errors="replace")
    assert_no_sanitizer(err)
    assert r.returncode == 0, err
    objs, _ = values(out, "alloc_objects")
    assert objs.get("new_site") == 700 and objs.get("array_site") == 400, objs


def uprobe_links(pid):
    """The uprobe links process pid holds (uprobe_multi, sessions, perf_event uprobes), from
    /proc/PID/fdinfo: what the kernel says is attached, independently of our comments."""
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            info = open(f"/proc/{pid}/fdinfo/{fd}").read()
        except OSError:
            continue
        for t in ("uprobe_multi", "uretprobe_multi", "perf_event"):
            if f"link_type:\t{t}\n" in info:
                n += 1
    return n


def profile_counting_links(exe, out, *args, mode=None, timeout=60):
    """profile_pattern, also counting cprof-bpf's uprobe links once it is profiling."""
    w = subprocess.Popen([exe] + ([mode] if mode else []), stdout=subprocess.PIPE, text=True)
    p = None
    try:
        assert w.stdout.readline().startswith("ready")
        p = start_cprof("-t", "heap", "-d", 60, "-o", out, *args, "-v", "-p", w.pid)
        err = read_until(p.stderr, "profiling", timeout)
        assert "profiling" in err, err
        links = uprobe_links(p.pid)
        w.send_signal(signal.SIGUSR1)
        assert w.communicate(timeout=timeout)[0].startswith("done")
        err += p.communicate(timeout=timeout)[1]
        assert p.returncode == 0, err
        assert_no_sanitizer(err)
        return links
    finally:
        for proc in (w, p):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


def released_funcs(path):
    line = [l for l in go_pprof("-comments", path).splitlines()
            if l.startswith("heap: release functions probed: ")]
    assert len(line) == 1, line
    names = line[0].split(": ", 2)[2]
    return [] if names == "none" else names.split(", ")


@pytest.mark.parametrize("fixture", ["c-glibc", "cxx-jemalloc"])
def test_alloc_only_exact_and_no_free_probes(fixture, heapload, workdir):
    if fixture == "c-glibc":
        exe, mode = heapload, "exact"
    else:
        exe, mode = build_cxx(workdir, "heapload-cxx-jemalloc", extra=("-ljemalloc",)), None
    full = os.path.join(workdir, f"heap-ao-full-{fixture}.pb.gz")
    ao = os.path.join(workdir, f"heap-ao-{fixture}.pb.gz")
    nfull = profile_counting_links(exe, full, "--heap-sample-bytes", 1, mode=mode)
    nao = profile_counting_links(exe, ao, "--heap-sample-bytes", 1, "--heap-alloc-only",
                                 mode=mode)
    # The full profile probes free (and, with jemalloc, its operator delete and sdallocx);
    # alloc-only probes none of them, and exactly those links are missing.
    rel = released_funcs(full)
    assert "free" in rel and (fixture == "c-glibc" or "sdallocx" in rel), rel
    assert released_funcs(ao) == [] and nao == nfull - len(rel) and nao > 0, (nfull, nao, rel)
    objs, _ = values(ao, "alloc_objects")
    space, _ = values(ao, "alloc_space")
    if fixture == "c-glibc":
        # Same alloc counts as the full profile: realloc counts its new size, as it does there.
        for site, (n, nbytes, _) in EXACT.items():
            assert objs.get(site) == n, (site, objs)
            assert space.get(site) == nbytes, (site, space)
    else:
        assert objs.get("new_site") == 700 and objs.get("array_site") == 400, objs
    full_objs, _ = values(full, "alloc_objects")
    assert objs == full_objs, (objs, full_objs)
    # Only the two alloc types; in-use is absent, not zero.
    raw = go_pprof("-raw", ao)
    assert "\nalloc_objects/count alloc_space/bytes[dflt]\n" in raw, raw[:800]
    assert "inuse_" not in raw, raw[:800]
    r = go_pprof_run("-top", "-sample_index=inuse_space", ao)
    assert r.returncode != 0 and "must be one of: [alloc_objects alloc_space]" in r.stderr, \
        r.stderr
    comments = go_pprof("-comments", ao)
    assert "in-use was not tracked" in comments and "frees of untracked" not in comments, \
        comments


def test_alloc_only_top_and_folded_show_alloc_space(heapload, workdir):
    top = os.path.join(workdir, "heap-ao-top.txt")
    profile_pattern(heapload, top, "--heap-sample-bytes", 1, "--heap-alloc-only", "--format",
                    "top", "--top", 0, mode="exact")
    text = open(top).read()
    # The churn site frees all it allocates: a row of its 1000000 allocated bytes (976.56kB) is
    # alloc_space; inuse_space would have nothing there.
    churn = [l.split() for l in text.splitlines() if l.endswith(" churn_site")]
    assert churn and churn[0][0] == "976.56kB", text
    folded = os.path.join(workdir, "heap-ao.folded")
    profile_pattern(heapload, folded, "--heap-sample-bytes", 1, "--heap-alloc-only", "--format",
                    "folded", mode="exact")
    sums = {}
    for line in open(folded).read().splitlines():
        stack, n = line.rsplit(" ", 1)
        leaf = stack.split(";")[-1].split(".constprop")[0].split(".isra")[0]
        sums[leaf] = sums.get(leaf, 0) + int(n)
    # Bytes allocated (the churn site frees all it allocates: 0 in use, 1000000 allocated).
    for site, (_, nbytes, _) in EXACT.items():
        assert sums.get(site) == nbytes, (site, sums)


def test_alloc_only_bad_combinations():
    for args in (["-t", "cpu", "--heap-alloc-only"],
                 ["-t", "heap", "--heap-alloc-only", "--heap-max-live", "1000"]):
        r = run_cprof(*args, "-p", "1", "-d", 1, check=False)
        err = r.stderr.decode().strip()
        assert r.returncode == 2 and len(err.splitlines()) == 1 and "--heap-alloc-only" in err, \
            err
