"""Table (.eh_frame) unwinding, end to end: programs built without frame pointers, Debian's libc
(no frame pointers), mixed binaries; and the table compiler against readelf."""
import os
import re
import subprocess

import pytest

from conftest import CPROF, build, pprof_traces, profile_gated, run_cprof, trace_share

NOFP = ("-O2", "-g", "-fomit-frame-pointer")
FP = ("-O2", "-g", "-fno-omit-frame-pointer")
LIBC = "/lib/x86_64-linux-gnu/libc.so.6"


def hot_traces(path, leaves):
    return [(v, fns) for v, fns in pprof_traces(path) if fns and fns[0] in leaves]


def share(traces, pred):
    s, total = trace_share(traces, pred)
    assert total > 0, traces
    return s


def profile(workdir, name, pid, *extra):
    out = os.path.join(workdir, name)
    r = run_cprof("-p", pid, "-d", 2, "-F", 199, "-o", out, *extra)
    return out, r.stderr.decode()


def test_no_frame_pointers_fp_broken_auto_complete(workdir, spawn):
    exe = build(workdir, "workload.c", "workload-nofp", flags=NOFP)
    w = spawn(exe, "cpu", 30)
    ok = lambda fns: fns[1:3] == ["run_cpu", "main"]
    fp, _ = profile(workdir, "nofp-fp.pb.gz", w.pid, "--unwind=fp")
    auto, _ = profile(workdir, "nofp-auto.pb.gz", w.pid)
    fp_share = share(hot_traces(fp, ("hot_a", "hot_b")), ok)
    auto_traces = hot_traces(auto, ("hot_a", "hot_b"))
    auto_share = share(auto_traces, ok)
    assert fp_share < 0.5, f"frame pointers should not reach main here: {fp_share:.2f}"
    assert auto_share >= 0.95, (auto_share, auto_traces[:5])
    # The outermost frames are libc's start code, ended by its undefined return address.
    assert share(auto_traces, lambda fns: fns[-1] == "_start") >= 0.95, auto_traces[:5]
    # Both callees of run_cpu are there, each under its right caller.
    for leaf in ("hot_a", "hot_b"):
        assert any(fns[0] == leaf and ok(fns) for _, fns in auto_traces), leaf


def test_dwarf_mode_complete_too(workdir, spawn):
    exe = build(workdir, "workload.c", "workload-nofp", flags=NOFP)
    w = spawn(exe, "cpu", 30)
    out, _ = profile(workdir, "nofp-dwarf.pb.gz", w.pid, "--unwind=dwarf")
    traces = hot_traces(out, ("hot_a", "hot_b"))
    assert share(traces, lambda fns: fns[1:3] == ["run_cpu", "main"]) >= 0.95, traces[:5]


def through_libc(fns):
    """cmp <- one or more libc frames (qsort internals) <- ... <- sort_once <- main."""
    if fns[0] != "cmp" or "sort_once" not in fns:
        return False
    i = fns.index("sort_once")
    inner = fns[1:i]
    return (fns[i + 1:i + 2] == ["main"] and len(inner) >= 2 and
            all(f.startswith(("libc.so.6", "qsort", "msort")) for f in inner) and
            any(f.startswith("qsort") for f in inner))


def test_hot_path_through_libc_qsort(workdir, spawn):
    exe = build(workdir, "unwind_qsort.c", "unwind-qsort", flags=NOFP)
    w = spawn(exe, 30)
    auto, stderr = profile(workdir, "qsort-auto.pb.gz", w.pid)
    fp, _ = profile(workdir, "qsort-fp.pb.gz", w.pid, "--unwind=fp")
    traces = hot_traces(auto, ("cmp",))
    assert share(traces, through_libc) >= 0.95, traces[:5]
    assert share(hot_traces(fp, ("cmp",)), lambda fns: "main" in fns) < 0.5
    assert "dropped: nothing" in subprocess.run(
        ["go", "tool", "pprof", "-comments", auto], capture_output=True, text=True).stdout


@pytest.mark.parametrize("exe_flags,lib_flags", [(FP, NOFP), (NOFP, FP)],
                         ids=["fp-exe-nofp-lib", "nofp-exe-fp-lib"])
def test_mixed_binaries(workdir, spawn, exe_flags, lib_flags):
    tag = "-".join("fp" if f == FP else "nofp" for f in (exe_flags, lib_flags))
    libdir = os.path.join(workdir, "mixed-" + tag)
    os.makedirs(libdir, exist_ok=True)
    lib = os.path.join(libdir, "libunwind_lib.so")
    subprocess.run(["cc", *lib_flags, "-fPIC", "-shared", "-o", lib,
                    os.path.join(os.path.dirname(__file__), "fixtures", "unwind_lib.c")],
                   check=True)
    exe = build(workdir, "unwind_mixed.c", "unwind-mixed-" + tag, flags=exe_flags,
                extra=("-L" + libdir, "-lunwind_lib", "-Wl,-rpath," + libdir))
    w = spawn(exe, 30)
    out, _ = profile(workdir, f"mixed-{tag}.pb.gz", w.pid)
    traces = hot_traces(out, ("lib_inner",))
    want = ["lib_inner", "lib_outer", "exe_caller", "main"]
    assert share(traces, lambda fns: fns[:4] == want) >= 0.95, traces[:5]


def readelf_rows(path):
    """{pc: (cfa, rbp, ra)} from readelf --debug-dump=frames-interp, and the FDE ranges. An FDE
    that adds no rows to its CIE's initial ones is listed without rows: it gets the CIE's."""
    r = subprocess.run(["readelf", "--debug-dump=frames-interp", path], capture_output=True,
                       text=True)
    assert r.stdout, r.stderr  # readelf exits 1 over a missing .debug_frame: not our concern
    rows, ranges, cies = {}, [], {}
    cols = cie = fde = None
    fde_has_rows = True

    def close_fde():
        if fde and not fde_has_rows and fde[2] in cies:
            rows[fde[0]] = cies[fde[2]]

    for line in r.stdout.splitlines():
        m = re.match(r"([0-9a-f]{8}) [0-9a-f]+ [0-9a-f]+ (CIE|FDE)", line)
        if m:
            close_fde()
            cols, cie, fde = None, None, None
            if m.group(2) == "CIE":
                cie = m.group(1)
                continue
            f = re.search(r"cie=([0-9a-f]+) pc=([0-9a-f]+)\.\.([0-9a-f]+)", line)
            fde = (int(f.group(2), 16), int(f.group(3), 16), f.group(1))
            ranges.append(fde[:2])
            fde_has_rows = False
            continue
        if line.strip().startswith("LOC"):
            cols = line.split()
            continue
        parts = line.split()
        if cols and len(parts) == len(cols) and re.fullmatch(r"[0-9a-f]{16}", parts[0]):
            d = dict(zip(cols, parts))
            row = (d["CFA"], d.get("rbp", "u"), d.get("ra", "u"))
            if cie and cie not in cies:
                cies[cie] = row
            elif fde:
                rows[int(parts[0], 16)] = row
                fde_has_rows = True
    close_fde()
    return rows, ranges


def our_rows(path):
    out = subprocess.run([CPROF, "unwind-table", path], capture_output=True, text=True,
                         check=True).stdout
    rows = []
    for line in out.splitlines():
        pc, kind, cfa, rbp, arg = line.split()
        rows.append((int(pc, 16), kind, int(cfa), int(rbp), int(arg)))
    return rows


def expect(cfa, rbp, ra):
    """What our row must say for one readelf row."""
    if cfa == "exp":
        return ("expr",)  # PLT, signal, or an expression we do not follow
    if ra == "u":
        return ("stop",)
    if ra != "c-8":
        return ("invalid",)
    m = re.fullmatch(r"(rsp|rbp)\+(\d+)", cfa)
    if not m:
        return ("expr",)  # PLT, signal, or an expression we do not follow
    rbp_off = int(rbp[1:]) if rbp.startswith("c") else 0
    if not (rbp.startswith("c") or rbp in ("u", "s")):
        return ("invalid",)
    return ("cfa_" + m.group(1), int(m.group(2)), rbp_off)


@pytest.mark.parametrize("which", ["fixture", "libc"])
def test_table_matches_readelf(workdir, which):
    path = build(workdir, "unwind_qsort.c", "unwind-qsort", flags=NOFP) \
        if which == "fixture" else LIBC
    theirs, ranges = readelf_rows(path)
    ours = our_rows(path)
    assert len(theirs) > 10 and ours
    pcs = [r[0] for r in ours]
    assert pcs == sorted(set(pcs)), "rows must be sorted with unique pcs"
    import bisect

    def find(pc):
        i = bisect.bisect_right(pcs, pc) - 1
        return ours[i] if i >= 0 else None

    mismatches, checked = [], 0
    for pc, (cfa, rbp, ra) in theirs.items():
        row, want = find(pc), expect(cfa, rbp, ra)
        assert row is not None, hex(pc)
        _, kind, cfa_off, rbp_off, arg = row
        checked += 1
        if want[0] == "expr":
            ok = kind in ("plt", "signal", "invalid")
        elif want[0] in ("stop", "invalid"):
            ok = kind == want[0]
        else:
            ok = (kind, cfa_off, rbp_off) == want
        if not ok:
            mismatches.append((hex(pc), cfa, rbp, ra, row))
    assert not mismatches, mismatches[:10]
    # Past the end of an FDE that no other FDE follows, the stack must end (INVALID).
    starts = {lo for lo, _ in ranges}
    for lo, hi in ranges:
        if hi not in starts and not any(a <= hi < b for a, b in ranges):
            assert find(hi)[1] == "invalid", hex(hi)
    assert checked == len(theirs)
    if which == "libc":
        kinds = {r[1] for r in ours}
        assert {"plt", "signal", "stop"} <= kinds, kinds


def test_budget_too_small_is_counted_and_exe_still_unwinds(workdir, spawn):
    """The executable's table fits in 64 KiB, libc's does not: libc's frames fall back to frame
    pointers, the loss is reported, and the hot stacks (all in the executable) stay complete."""
    exe = build(workdir, "workload.c", "workload-nofp", flags=NOFP)
    w = spawn(exe, "cpu", 30)
    out, stderr = profile(workdir, "budget.pb.gz", w.pid, "--unwind-mem", "64K")
    assert "executables without unwind table" in stderr, stderr
    comments = subprocess.run(["go", "tool", "pprof", "-comments", out], capture_output=True,
                              text=True).stdout
    assert "executables without unwind table" in comments, comments
    traces = hot_traces(out, ("hot_a", "hot_b"))
    assert share(traces, lambda fns: fns[1:3] == ["run_cpu", "main"]) >= 0.95, traces[:5]


@pytest.mark.parametrize("args,msg", [
    (["--unwind=sideways"], "invalid --unwind"),
    (["--unwind-mem", "12Q"], "invalid --unwind-mem"),
    (["--unwind-mem", "1K"], "invalid --unwind-mem"),
])
def test_bad_unwind_flags(args, msg):
    r = run_cprof("-p", "1", "-d", "1", *args, check=False)
    assert r.returncode == 2
    assert msg in r.stderr.decode()


def test_check_verifies_the_unwinder_within_bounds():
    """The walk is a bpf_loop step, verified once: the count must not grow with the depth."""
    r = run_cprof("check")
    insns = [int(m) for m in re.findall(r"on_sample\s+ok\s+(\d+) verified insns",
                                        r.stdout.decode())]
    assert insns and all(n > 1000 for n in insns), r.stdout  # the unwinder is in it
    assert max(insns) < 200000, insns


def test_unwind_table_of_non_elf_fails_cleanly(workdir):
    path = os.path.join(workdir, "not-elf")
    with open(path, "w") as f:
        f.write("hello\n")
    r = subprocess.run([CPROF, "unwind-table", path], capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr


def test_through_signal_trampoline(workdir, spawn):
    """handler_work <- on_prof <- libc's __restore_rt (SIGNAL row: registers from the
    ucontext) <- main_loop, the interrupted function <- main."""
    exe = build(workdir, "unwind_signal.c", "unwind-signal", flags=NOFP)
    w = spawn(exe, 30)
    out, _ = profile(workdir, "signal.pb.gz", w.pid)
    traces = hot_traces(out, ("handler_work",))

    def crosses(fns):
        if fns[1:2] != ["on_prof"] or "main_loop" not in fns:
            return False
        i = fns.index("main_loop")
        return fns[i + 1:i + 2] == ["main"] and i >= 3  # at least the trampoline between
    assert share(traces, crosses) >= 0.9, traces[:5]


def test_through_the_vdso(workdir, spawn):
    """Samples inside the vDSO (clock_gettime) reach main through the vDSO's own table."""
    exe = build(workdir, "unwind_vdso.c", "unwind-vdso", flags=NOFP)
    w = spawn(exe, 30)
    out, _ = profile(workdir, "vdso.pb.gz", w.pid)
    traces = [(v, fns) for v, fns in pprof_traces(out) if "now" in fns]
    in_vdso = [(v, fns) for v, fns in traces if fns.index("now") > 0]
    assert in_vdso, traces[:5]
    assert share(in_vdso, lambda fns: fns[fns.index("now"):][:3] == ["now", "spin", "main"]) \
        >= 0.95, in_vdso[:5]


def test_whole_system_and_command(workdir, spawn):
    """-a: tables are built as processes are first sampled (large executables later, so they do
    not hold up small ones); -- CMD: as the command starts. Most samples must still reach main;
    the first samples of a process, before its tables, are walked with frame pointers."""
    exe = build(workdir, "workload.c", "workload-nofp", flags=NOFP)
    w = spawn(exe, "cpu", 30)
    out = os.path.join(workdir, "all-nofp.pb.gz")
    run_cprof("-a", "-d", 6, "-F", 199, "-o", out)
    traces = [(v, fns) for v, fns in hot_traces(out, ("hot_a", "hot_b"))]
    # Frame pointers give 0 here; the margin is for a loaded machine, where the notice of the
    # workload may wait behind other processes' tables.
    assert share(traces, lambda fns: fns[1:3] == ["run_cpu", "main"]) >= 0.7, traces[:5]
    w.stop()
    out = os.path.join(workdir, "cmd-nofp.pb.gz")
    run_cprof("-F", 199, "-o", out, "--", exe, "cpu", 3)
    traces = hot_traces(out, ("hot_a", "hot_b"))
    assert share(traces, lambda fns: fns[1:3] == ["run_cpu", "main"]) >= 0.9, traces[:5]


def test_heap_bytes_under_no_fp_callers(workdir):
    """Heap samples (uprobes on malloc) go through the same key_stacks: the bytes land under
    alloc_leaf <- alloc_mid <- alloc_outer <- main in a binary without frame pointers."""
    exe = build(workdir, "unwind_heap.c", "unwind-heap", flags=NOFP)
    out = os.path.join(workdir, "heap-nofp.pb.gz")
    profile_gated([exe], "-t", "heap", "-d", 60, "-o", out)
    traces = pprof_traces(out, extra=("-sample_index=alloc_space",))
    want = ["alloc_leaf", "alloc_mid", "alloc_outer", "main"]

    def chain(fns):
        return "alloc_leaf" in fns and fns[fns.index("alloc_leaf"):][:4] == want
    mine = [(v, fns) for v, fns in traces if "alloc_leaf" in fns or "alloc_outer" in fns]
    assert mine, traces[:5]
    assert share(mine, chain) >= 0.95, mine[:5]
