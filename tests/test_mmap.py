"""Libraries mapped after a process's first snapshot: a tracked process that maps executable
memory (ld.so loading its libraries, dlopen) is announced by BPF (CPROF_PROC_MMAP) and its
mappings are read again at once, so a process that exits soon after still has its libraries
symbolized."""
import os
import re
import shutil
import subprocess
import time

import pytest

from conftest import build, go_pprof, pprof_top, read_until, run_cprof, start_cprof


def raw_profile(path):
    """`go tool pprof -raw`: ({mapping id: (start, limit, file)}, [(address, mapping id or None,
    text)])."""
    out = go_pprof("-raw", path)
    maps, locs, section = {}, [], None
    for line in out.splitlines():
        if line in ("Locations", "Mappings"):
            section = line
            continue
        if section == "Mappings":
            m = re.match(r"\s*(\d+): 0x([0-9a-f]+)/0x([0-9a-f]+)/0x[0-9a-f]+ (\S+)", line)
            if m:
                maps[int(m.group(1))] = (int(m.group(2), 16), int(m.group(3), 16), m.group(4))
        elif section == "Locations":
            m = re.match(r"\s*\d+: 0x([0-9a-f]+) (M=(\d+))?\s*(.*)", line)
            if m:
                locs.append((int(m.group(1), 16), int(m.group(3)) if m.group(3) else None,
                             m.group(4)))
    return maps, locs


def llvm_library(clang):
    """The libLLVM that clang is linked against, or None."""
    r = subprocess.run(["ldd", clang], capture_output=True, text=True)
    m = re.search(r"(libLLVM[^ ]*) => (\S+)", r.stdout)
    return m.group(1) if m else None


def test_clang_libllvm_symbolized(workdir):
    """`-- clang -c big.c`: clang's libraries are mapped by ld.so after the exec notice, and the
    compiler (1-3 s) may end before a later read: every libLLVM frame has its mapping and most
    are named."""
    clang = shutil.which("clang")
    if not clang:
        pytest.skip("clang not installed")
    lib = llvm_library(os.path.realpath(clang))
    if not lib:
        pytest.skip("clang not linked against a shared libLLVM")
    src = os.path.join(workdir, "mmap_big.c")
    with open(src, "w") as f:
        f.write("int f0(int x) { return x; }\n")
        for i in range(1, 3000):
            f.write(f"int f{i}(int x) {{ int s = 0; for (int j = 0; j < x; j++) "
                    f"s += j * {i} ^ (s >> 3); if (x > {i % 7}) s += f{i - 1}(x - 1); "
                    f"return s; }}\n")
    out = os.path.join(workdir, "mmap-clang.pb.gz")
    run_cprof("-F", 999, "-o", out, "--", clang, "-O0", "-c", src, "-o",
              os.path.join(workdir, "mmap_big.o"))
    maps, locs = raw_profile(out)
    llvm = {mid: m for mid, m in maps.items() if lib in os.path.basename(m[2])}
    assert llvm, f"no mapping of {lib}: {maps}"
    in_llvm = [loc for loc in locs if loc[1] in llvm]
    named = [loc for loc in in_llvm if "llvm::" in loc[2]]
    assert len(named) >= 20, (len(in_llvm), in_llvm[:10])
    # No frame inside libLLVM's address range without a mapping (before: every libLLVM frame).
    unmapped = [loc for loc in locs if loc[1] is None
                and any(lo <= loc[0] < hi for lo, hi, _ in llvm.values())]
    assert not unmapped, unmapped[:10]
    # A wrong return address read off the stack (one in a few hundred stacks of clang) ends
    # the walk, counted: it is no frame, and no Python frame in a process without Python.
    assert not [loc for loc in locs if "python" in loc[2].lower()], locs


def test_whole_system_short_lived_dlopen(workdir):
    """-a: a process sampled for 1 s before it dlopen()s a library, which it burns CPU in for
    0.5 s before exiting: the library's function is named."""
    exe = build(workdir, "mmap_dlopen.c", "mmap-dlopen", extra=("-ldl",))
    lib = build(workdir, "mmap_lib.c", "libmmaplib.so",
                flags=("-O2", "-g", "-fno-omit-frame-pointer", "-shared", "-fPIC"))
    out = os.path.join(workdir, "mmap-all.pb.gz")
    p = start_cprof("-a", "-v", "-d", 7, "-F", 199, "-o", out)
    try:
        err = read_until(p.stderr, "profiling", 60)
        assert "profiling" in err, err
        # Under -a the notices are handled by the thread that builds the unwind tables of every
        # process sampled at start: let that settle, so that this test measures the re-read at
        # the dlopen, not a backlog at start.
        time.sleep(3)
        w = subprocess.run([exe, lib, "0.5"], capture_output=True, text=True, timeout=30)
        assert w.returncode == 0, w.stderr
        err += p.communicate(timeout=60)[1]
        assert p.returncode == 0, err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    rows, _ = pprof_top(out, extra=("-sample_index=samples",))
    burn = rows.get("mmap_lib_burn", (0, 0))[0]
    before = rows.get("before_dlopen", (0, 0))[0]
    assert before > 0, "the fixture was not sampled before its dlopen"
    # 0.5 s at 199 Hz is ~100 samples on an idle machine; a loaded one gives fewer.
    assert burn >= 10, {k: v for k, v in rows.items() if "mmap" in k or "0x" in k}
