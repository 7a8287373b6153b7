"""Symbols as a debugger shows them, end to end: DWARF file:line, inlined frames, demangled C++ and
Rust names, separate debug files, JIT maps, Go binaries; checked through go tool pprof."""
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from conftest import FIXTURES, build, go_pprof, pprof_traces, run_cprof

SYM = os.path.join(FIXTURES, "sym")


def rustc():
    # rustup's place when rustc is not on PATH (CI runs as root with HOME set).
    for cand in (shutil.which("rustc"), os.path.expanduser("~/.cargo/bin/rustc")):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


def marks(src):
    """{mark: [line numbers]} of the `MARK name` comments in a fixture source."""
    out = {}
    with open(src) as f:
        for no, line in enumerate(f, 1):
            m = re.search(r"MARK (\S+)", line)
            if m:
                out.setdefault(m.group(1), []).append(no)
    return out


FRAME = re.compile(r"^(?P<fn>.+?) (?P<file>\S+):(?P<line>\d+)(?P<inl> \(inline\))?$")


def frame_names(path):
    """Every function name in the profile at path, as line_traces gives them."""
    return {fr[0] for _, frames in line_traces(path) for fr in frames}


def profile_names(pid, out):
    """Profiles pid for 1 s at 499 Hz into out: (the run, frame_names of the profile)."""
    r = run_cprof("-p", pid, "-d", 1, "-F", 499, "-o", out)
    return r, frame_names(out)


def line_traces(path):
    """`go tool pprof -traces -lines`: [(value, [(function, file, line, inlined)..leaf first])]."""
    out = []
    # -symbolize=none: pprof shows the names as written, without demangling them itself.
    for value, frames in pprof_traces(path, extra=("-lines", "-symbolize=none")):
        parsed = []
        for fr in frames:
            m = FRAME.match(fr)
            if m:
                parsed.append((m["fn"], m["file"], int(m["line"]), bool(m["inl"])))
            else:
                parsed.append((fr, None, 0, False))
        out.append((value, parsed))
    return out


def mapping_flags(path, name):
    """The [FN][FL][LN][IN] flags `pprof -raw` shows for the mapping of file `name`."""
    for line in go_pprof("-raw", path).split("Mappings", 1)[1].splitlines():
        if f"/{name} " in line or line.rstrip().endswith(f"/{name}"):
            return set(re.findall(r"\[(FN|FL|LN|IN)\]", line))
    raise AssertionError(f"no mapping for {name}")


def profile(spawn, workdir, binary, name, *extra, seconds=2):
    p = spawn(binary)
    out = os.path.join(workdir, f"{name}.pb.gz")
    run_cprof("-p", p.pid, "-d", seconds, "-F", 499, "-o", out, *extra)
    return out


def check_chain(path, src, chain):
    """chain: [(function, mark)] innermost first. Of the samples in the outermost function, most
    must carry exactly that inline chain in one location, each frame at a line of its mark, all
    but the last marked inline."""
    want = marks(src)
    traces = line_traces(path)
    outer = chain[-1][0]
    total = good = 0
    for value, frames in traces:
        if not any(fr[0] == outer for fr in frames):
            continue
        total += value
        # Kernel frames (an interrupt) and deeper inlined callees (std's wrapping_mul in Rust)
        # may come first.
        first = next((i for i, fr in enumerate(frames) if fr[0] == chain[0][0]), None)
        if first is None:
            continue
        top = frames[first:first + len(chain)]
        if len(top) < len(chain):
            continue
        ok = all(fn == wfn and file == src and line in want[mark] and inl == (i < len(chain) - 1)
                 for i, ((fn, file, line, inl), (wfn, mark)) in enumerate(zip(top, chain)))
        good += value if ok else 0
    assert total and good / total >= 0.8, (good, total, traces[:4])


@pytest.fixture(scope="module")
def c_inline(workdir):
    return build(workdir, "sym/inline.c", "sym_inline_c")


@pytest.fixture(scope="module")
def cxx_inline(workdir):
    return build(workdir, "sym/inline.cpp", "sym_inline_cxx", cc="g++")


def build_rust(workdir, mangling):
    rc = rustc()
    if not rc:
        pytest.skip("no rustc on this machine")
    out = os.path.join(workdir, f"sym_inline_rs_{mangling}")
    # Stable rustc mangles the legacy way unless told v0.
    flags = ["-C", "symbol-mangling-version=v0"] if mangling == "v0" else []
    subprocess.run([rc, "-g", "-C", "opt-level=2", "-C", "force-frame-pointers=yes", *flags,
                    "--crate-name", "sym_rs", "-o", out, os.path.join(SYM, "inline.rs")],
                   check=True,
                   env=dict(os.environ, PATH=os.path.dirname(rc) + ":" + os.environ["PATH"]))
    return out


def test_c_inlined_frames_with_lines(c_inline, spawn, workdir):
    out = profile(spawn, workdir, c_inline, "inline_c")
    check_chain(out, os.path.join(SYM, "inline.c"),
                [("step", "step-body"), ("mix", "mix-calls-step"), ("run", "run-calls-mix")])
    assert mapping_flags(out, "sym_inline_c") == {"FN", "FL", "LN", "IN"}
    # Functions carry their first line: `pprof -raw` prints it as s=N.
    decl = marks(os.path.join(SYM, "inline.c"))["step-decl"][0]
    raw = go_pprof("-raw", "-symbolize=none", out)
    assert re.search(rf" step \S+inline\.c:\d+ s={decl}\b", raw), raw


def test_cxx_demangled_inlined_frames(cxx_inline, spawn, workdir):
    out = profile(spawn, workdir, cxx_inline, "inline_cxx")
    check_chain(out, os.path.join(SYM, "inline.cpp"),
                [("cprof::step", "step-body"),
                 ("cprof::Mixer<int>::mix", "mix-calls-step"),
                 ("cprof::Mixer<int>::churn", "churn-calls-mix")])
    # The mangled name is the function's system_name (pprof -raw shows it in parentheses).
    raw = go_pprof("-raw", "-symbolize=none", out)
    assert "cprof::Mixer<int>::churn " in raw and "(_ZNK5cprof5MixerIiE5churnEv)" in raw


def test_demangle_none_keeps_mangled_names(cxx_inline, spawn, workdir):
    out = profile(spawn, workdir, cxx_inline, "inline_cxx_raw", "--demangle", "none")
    check_chain(out, os.path.join(SYM, "inline.cpp"),
                [("_ZN5cprof4stepEj", "step-body"), ("_ZNK5cprof5MixerIiE3mixEj", "mix-calls-step"),
                 ("_ZNK5cprof5MixerIiE5churnEv", "churn-calls-mix")])


@pytest.mark.parametrize("mangling", ["legacy", "v0"])
def test_rust_demangled_inlined_frames(mangling, spawn, workdir):
    binary = build_rust(workdir, mangling)
    out = profile(spawn, workdir, binary, f"inline_rs_{mangling}")
    check_chain(out, os.path.join(SYM, "inline.rs"),
                [("sym_rs::step", "step-body"), ("sym_rs::mix", "mix-calls-step"),
                 ("sym_rs::run", "run-calls-mix")])
    raw = go_pprof("-raw", "-symbolize=none", out)
    prefix = "(_ZN6sym_rs3run17h" if mangling == "legacy" else "(_RNvCs"
    assert re.search(r"sym_rs::run \S+ s=\d+" + re.escape(prefix), raw), raw


def build_id(path):
    out = subprocess.run(["readelf", "-n", path], capture_output=True, text=True,
                         check=True).stdout
    return re.search(r"Build ID: ([0-9a-f]+)", out).group(1)


C_CHAIN = [("step", "step-body"), ("mix", "mix-calls-step"), ("run", "run-calls-mix")]


def split_debug(c_inline, where, debuglink):
    """A stripped copy of the C fixture in where/ and its debug file; returns both paths."""
    os.makedirs(where, exist_ok=True)
    binary = os.path.join(where, "stripped")
    # Under another name than libdwfl's default guess (stripped.debug): only the debuglink
    # leads to it.
    debug = os.path.join(where, "stripped-syms.dbg" if debuglink else "stripped.debug")
    subprocess.run(["objcopy", "--only-keep-debug", c_inline, debug], check=True)
    subprocess.run(["strip", "--strip-all", "-o", binary, c_inline], check=True)
    if debuglink:
        # objcopy records the name and CRC of the debug file it is given.
        subprocess.run(["objcopy", f"--add-gnu-debuglink={debug}", binary], check=True)
    return binary, debug


def test_stripped_binary_without_debug_file_gets_stubs(c_inline, spawn, tmp_path):
    binary, debug = split_debug(c_inline, str(tmp_path / "bin"), False)
    # libdwfl would find it next to the binary by its default name, stripped.debug.
    os.unlink(debug)
    out = profile(spawn, str(tmp_path), binary, "nodebug", "--debug-dir", str(tmp_path / "dbg"))
    names = frame_names(out)
    assert not names & {"step", "mix", "run"}, names
    assert any(n.startswith("stripped+0x") for n in names), names
    assert mapping_flags(out, "stripped") == set()


def test_debug_file_found_by_build_id(c_inline, spawn, tmp_path):
    binary, debug = split_debug(c_inline, str(tmp_path / "bin"), False)
    # Not next to the binary, where its default name would find it without the build-id.
    bid = build_id(binary)
    root = tmp_path / "dbg"
    (root / ".build-id" / bid[:2]).mkdir(parents=True)
    os.rename(debug, root / ".build-id" / bid[:2] / f"{bid[2:]}.debug")
    out = profile(spawn, str(tmp_path), binary, "buildid", "--debug-dir", str(root))
    check_chain(out, os.path.join(SYM, "inline.c"), C_CHAIN)
    assert mapping_flags(out, "stripped") == {"FN", "FL", "LN", "IN"}


SECTION_FLAGS = re.compile(r"^\s*\[\s*\d+\]\s+(\S+)\s+\S+\s+[0-9a-f]+\s+[0-9a-f]+\s+[0-9a-f]+\s+"
                           r"[0-9a-f]+\s+(\S*?)\s*\d+\s+\d+\s+\d+$", re.M)


def section_flags(path):
    """{name: flags} of path's sections, as readelf -SW shows them."""
    out = subprocess.run(["readelf", "-SW", path], capture_output=True, text=True,
                         check=True).stdout
    return dict(SECTION_FLAGS.findall(out))


def compressed_debug(c_inline, tmp_path):
    """A stripped copy of c_inline and its zlib-compressed debug file under a build-id tree."""
    binary, debug = split_debug(c_inline, str(tmp_path / "bin"), False)
    bid = build_id(binary)
    root = tmp_path / "dbg"
    (root / ".build-id" / bid[:2]).mkdir(parents=True)
    packed = root / ".build-id" / bid[:2] / f"{bid[2:]}.debug"
    subprocess.run(["objcopy", "--compress-debug-sections=zlib", debug, str(packed)],
                   check=True)
    assert "C" in section_flags(str(packed))[".debug_info"]
    return binary, root, packed, bid


def test_compressed_debug_file_read_from_uncompressed_copy(c_inline, spawn, tmp_path,
                                                           monkeypatch):
    """A zlib-compressed debug file (as Debian ships them) is read from an uncompressed copy
    made in the cache directory (sym/debug_cache.h): the same frames, lines and inline chains as
    from the file itself, and a copy with the same sections, uncompressed."""
    from conftest import CPROF
    binary, root, packed, bid = compressed_debug(c_inline, tmp_path)
    cache = tmp_path / "cache"
    monkeypatch.setenv("CPROF_CACHE_DIR", str(cache))
    out = profile(spawn, str(tmp_path), binary, "compressed", "--debug-dir", str(root))
    check_chain(out, os.path.join(SYM, "inline.c"), C_CHAIN)
    assert mapping_flags(out, "stripped") == {"FN", "FL", "LN", "IN"}
    copy = cache / "debug" / f"{bid}.debug"
    assert copy.exists(), list(cache.rglob("*"))
    ours, theirs = section_flags(str(copy)), section_flags(str(packed))
    assert ours.keys() == theirs.keys()
    assert not any("C" in f for f in ours.values()), ours
    assert build_id(str(copy)) == bid
    # Symbolized through the copy and through libdw's own inflating (cache off): the same
    # answer at every byte of the hot function.
    syms = subprocess.run(["nm", "-S", c_inline], capture_output=True, text=True,
                          check=True).stdout
    m = re.search(r"^([0-9a-f]+) ([0-9a-f]+) [tT] run(\.\S+)?$", syms, re.M)
    addrs = [hex(a) for a in range(int(m.group(1), 16), int(m.group(1), 16) +
                                   int(m.group(2), 16))]
    args = [CPROF, "symbolize", "--debug-dir", str(root), "-e", binary, *addrs]
    cached = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    inflated = subprocess.run(args, capture_output=True, text=True, check=True,
                              env=dict(os.environ, CPROF_CACHE_DIR="")).stdout
    assert cached == inflated and "inline.c:" in cached, (cached, inflated)


def test_debug_cache_never_makes_a_missing_home(c_inline, tmp_path):
    """HOME of a user or service without one (nobody's /nonexistent): the cache is off and the
    home is not created, while symbolization through libdw's own inflating still works."""
    from conftest import CPROF
    binary, root, packed, bid = compressed_debug(c_inline, tmp_path)
    home = tmp_path / "no-such-home"
    env = {k: v for k, v in os.environ.items() if k not in ("CPROF_CACHE_DIR", "XDG_CACHE_HOME")}
    env["HOME"] = str(home)
    r = subprocess.run([CPROF, "symbolize", "--debug-dir", str(root), "-e", binary, "0x1000"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert not home.exists(), list(home.rglob("*"))
    env["HOME"] = str(tmp_path)
    subprocess.run([CPROF, "symbolize", "--debug-dir", str(root), "-e", binary, "0x1000"],
                   capture_output=True, text=True, env=env, check=True)
    assert (tmp_path / ".cache" / "cprof-bpf" / "debug" / f"{bid}.debug").exists()


@pytest.mark.parametrize("place", ["same-dir", "dot-debug", "debug-root"])
def test_debug_file_found_by_debuglink(place, c_inline, spawn, tmp_path):
    bindir = str(tmp_path / "bin")
    binary, debug = split_debug(c_inline, bindir, True)
    root = str(tmp_path / "dbg")
    os.makedirs(root)
    if place == "dot-debug":
        os.makedirs(os.path.join(bindir, ".debug"))
        os.rename(debug, os.path.join(bindir, ".debug", "stripped-syms.dbg"))
    elif place == "debug-root":
        # ROOT/<directory of the binary>/<debuglink name>, as /usr/lib/debug/usr/bin/ls.debug.
        target = root + bindir
        os.makedirs(target)
        os.rename(debug, os.path.join(target, "stripped-syms.dbg"))
    out = profile(spawn, str(tmp_path), binary, f"link-{place}", "--debug-dir", root)
    check_chain(out, os.path.join(SYM, "inline.c"), C_CHAIN)
    assert mapping_flags(out, "stripped") == {"FN", "FL", "LN", "IN"}


def node_jit(spawn, workdir, name, argv_prefix=()):
    if not shutil.which("node"):
        pytest.skip("no node")
    # From workdir: V8 may leave an isolate-*.log in its working directory. No inlining:
    # TurboFan may otherwise fold the hot function into the script's top level, which V8 then
    # names instead (a correct name, but not the one the test looks for).
    p = spawn(*argv_prefix, "sh", "-c",
              f"cd {workdir} && exec node --perf-basic-prof --no-turbo-inlining "
              f"{os.path.join(SYM, 'jit.js')}")
    out = os.path.join(workdir, f"{name}.pb.gz")
    try:
        run_cprof("-p", p.pid, "-d", 3, "-F", 499, "-o", out)
    finally:
        p.stop()
    return out, p.pid


def jit_share(out):
    from conftest import pprof_top
    rows, total = pprof_top(out, "samples", extra=["-symbolize=none"])
    hot = sum(flat for fn, (flat, _) in rows.items() if "cprofHotJsLoop" in fn)
    return hot / total, rows


def test_node_jit_names_from_perf_map(spawn, workdir):
    out, pid = node_jit(spawn, workdir, "node_jit")
    try:
        share, rows = jit_share(out)
        # The loop is almost all of node's CPU; V8 names it "JS:*cprofHotJsLoop file:line".
        assert share >= 0.5, rows
        assert "[anon]" in go_pprof("-raw", out)
    finally:
        if os.path.exists(f"/tmp/perf-{pid}.map"):
            os.unlink(f"/tmp/perf-{pid}.map")


def test_node_jit_in_other_mount_and_pid_namespace(spawn, workdir):
    """A container's view: its own /tmp (a tmpfs) and pid namespace, where node is pid 1 and
    writes /tmp/perf-1.map; only /proc/PID/root/tmp/perf-1.map reaches it."""
    if not shutil.which("unshare"):
        pytest.skip("no unshare")
    # The script is read before the tmpfs hides /tmp: the checkout may be under /tmp.
    script = ('js=$(cat "$1") && mount -t tmpfs tmpfs /tmp && cd /tmp && '
              'printf "%s\\n" "$js" > jit.js && '
              'exec node --perf-basic-prof --no-turbo-inlining /tmp/jit.js')
    p = spawn("unshare", "--mount", "--pid", "--fork", "--propagation", "private",
              "sh", "-c", script, "sh", os.path.join(SYM, "jit.js"))
    # The pid to profile is node's (unshare's child), as the host numbers it.
    kids = open(f"/proc/{p.pid}/task/{p.pid}/children").read().split()
    assert kids, "unshare started no child"
    node = int(kids[0])
    out = os.path.join(workdir, "node_ns.pb.gz")
    try:
        run_cprof("-p", node, "-d", 3, "-F", 499, "-o", out)
    finally:
        # A namespace's init ignores its parent-death signal: kill it from out here.
        os.kill(node, signal.SIGKILL)
    share, rows = jit_share(out)
    assert share >= 0.5, rows


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_debuginfod(srv, tmp):
    """A real debuginfod serving srv/ on a free loopback port; returns (process, url)."""
    import time
    import urllib.request
    if not shutil.which("debuginfod"):
        pytest.skip("no debuginfod")
    bid = None
    for f in os.listdir(srv):
        bid = build_id(os.path.join(srv, f))
    for attempt in range(5):
        port = free_port()
        log = open(os.path.join(tmp, f"debuginfod-{attempt}.log"), "w")
        p = subprocess.Popen(["debuginfod", "-F", "-p", str(port), "-t", "0", "-g", "0",
                              "-d", os.path.join(tmp, f"db-{attempt}.sqlite"), srv],
                             stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 30
        while time.time() < deadline and p.poll() is None:
            try:
                with urllib.request.urlopen(f"{url}/buildid/{bid}/debuginfo", timeout=5) as r:
                    if r.status == 200:
                        return p, url
            except OSError:
                pass
            time.sleep(0.2)
        p.kill()
        p.wait()
    raise AssertionError("debuginfod did not come up")


def test_debuginfod_round_trip(c_inline, spawn, tmp_path, monkeypatch):
    srv, bindir = tmp_path / "srv", str(tmp_path / "bin")
    srv.mkdir()
    binary, debug = split_debug(c_inline, bindir, False)
    os.rename(debug, srv / "inline.debug")
    empty = str(tmp_path / "no-debug-here")
    cache = tmp_path / "cache"
    # Off by default: without DEBUGINFOD_URLS nothing is fetched.
    monkeypatch.delenv("DEBUGINFOD_URLS", raising=False)
    monkeypatch.setenv("DEBUGINFOD_CACHE_PATH", str(cache))
    out = profile(spawn, str(tmp_path), binary, "no-urls", "--debug-dir", empty)
    assert mapping_flags(out, "stripped") == set()
    server, url = start_debuginfod(str(srv), str(tmp_path))
    try:
        monkeypatch.setenv("DEBUGINFOD_URLS", url)
        out = profile(spawn, str(tmp_path), binary, "debuginfod", "--debug-dir", empty)
    finally:
        server.kill()
        server.wait()
    check_chain(out, os.path.join(SYM, "inline.c"), C_CHAIN)
    assert os.path.exists(cache / build_id(binary) / "debuginfo")
    # The server is gone: the cached copy serves the next profile.
    out = profile(spawn, str(tmp_path), binary, "debuginfod-cached", "--debug-dir", empty)
    check_chain(out, os.path.join(SYM, "inline.c"), C_CHAIN)


def test_deleted_binary_keeps_lines(c_inline, spawn, tmp_path):
    """A binary deleted after it started: its DWARF is read through /proc/PID/map_files."""
    binary = str(tmp_path / "doomed")
    shutil.copy(c_inline, binary)
    p = spawn(binary)
    os.unlink(binary)
    out = str(tmp_path / "deleted.pb.gz")
    run_cprof("-p", p.pid, "-d", 2, "-F", 499, "-o", out)
    check_chain(out, os.path.join(SYM, "inline.c"), C_CHAIN)
    assert mapping_flags(out, "doomed") == {"FN", "FL", "LN", "IN"}


def build_hot_lib(tmp_path):
    """usehot, a program spinning in cprof_hot() of libhot.so (built -g); returns both paths."""
    src = tmp_path / "hot.c"
    src.write_text("__attribute__((noinline)) unsigned cprof_hot(unsigned x)\n"
                   "{ for (int i = 0; i < 64; i++) x = x * 2654435761u ^ i; return x; }\n")
    lib = tmp_path / "libhot.so"
    subprocess.run(["cc", "-O2", "-g", "-shared", "-fPIC", "-o", lib, src], check=True)
    main = tmp_path / "main.c"
    main.write_text("#include <stdio.h>\n#include <unistd.h>\nunsigned cprof_hot(unsigned);\n"
                    "volatile unsigned s;\nint main(void) { alarm(60); puts(\"ready\");"
                    " fflush(stdout); for (;;) s = cprof_hot(s); }\n")
    exe = tmp_path / "usehot"
    subprocess.run(["cc", "-O2", "-o", exe, main, lib, f"-Wl,-rpath,{tmp_path}"], check=True)
    return exe, lib


def sections(path):
    """{name: (offset, size)} from readelf -S -W."""
    out = subprocess.run(["readelf", "-S", "-W", path], capture_output=True, text=True,
                         check=True).stdout
    secs = {}
    for m in re.finditer(r"\]\s+(\S+)\s+\S+\s+[0-9a-f]+\s+([0-9a-f]+)\s+([0-9a-f]+)", out):
        secs[m.group(1)] = (int(m.group(2), 16), int(m.group(3), 16))
    return secs


def test_corrupt_dwarf_is_survived(spawn, tmp_path):
    """Garbage in a library's .debug_* sections (the loader never reads them): the profile is
    still written, the function still named from .symtab."""
    import random
    exe, lib = build_hot_lib(tmp_path)
    rnd = random.Random(1234)
    with open(lib, "r+b") as f:
        for name, (off, size) in sections(str(lib)).items():
            if name.startswith(".debug_"):
                f.seek(off)
                f.write(bytes(rnd.getrandbits(8) for _ in range(size)))
    p = spawn(exe)
    _, names = profile_names(p.pid, str(tmp_path / "corrupt-dwarf.pb.gz"))
    assert "cprof_hot" in names, names


def test_bad_section_headers_fall_back_to_dynamic_symbols(spawn, tmp_path):
    """A library whose ELF header points its section headers far past the end of the file
    (the loader only needs program headers): no section is readable, yet the exported function
    is still named, from the dynamic symbol table that PT_DYNAMIC leads to."""
    import struct
    exe, lib = build_hot_lib(tmp_path)
    with open(lib, "r+b") as f:
        f.seek(0x28)  # e_shoff of an ELF64 header
        f.write(struct.pack("<Q", 1 << 40))
    p = spawn(exe)
    _, names = profile_names(p.pid, str(tmp_path / "bad-shdr.pb.gz"))
    assert "cprof_hot" in names, names


def test_code_in_a_non_elf_file_gives_stub_and_warning(spawn, tmp_path):
    """Code executed from a mapped file that is not ELF: a file+offset stub and one warning."""
    exe = str(tmp_path / "blob")
    subprocess.run(["cc", "-O2", "-o", exe, os.path.join(SYM, "blob.c")], check=True)
    blob = str(tmp_path / "code.bin")
    p = spawn(exe, blob)
    r, names = profile_names(p.pid, str(tmp_path / "blob.pb.gz"))
    assert "code.bin+0x0" in names, names
    err = r.stderr.decode()
    assert err.count("code.bin") == 1 and "not a readable ELF file" in err, err


@pytest.mark.parametrize("mode", ["exe", "pie"])
def test_stripped_go_binary_named_from_gopclntab(mode, spawn, tmp_path):
    if not shutil.which("go"):
        pytest.skip("no go")
    exe = str(tmp_path / f"gospin-{mode}")
    import tempfile
    # The build cache go_pprof uses too: the standard library is compiled once.
    env = dict(os.environ, GOCACHE=os.path.join(tempfile.gettempdir(), "cprof-gocache"),
               GOFLAGS="-mod=mod", HOME=os.environ.get("HOME", str(tmp_path)), CGO_ENABLED="0")
    subprocess.run(["go", "build", f"-buildmode={mode}", "-ldflags=-s -w", "-o", exe,
                    os.path.join(SYM, "gospin.go")], check=True, env=env, cwd=str(tmp_path))
    secs = sections(exe)
    assert ".symtab" not in secs and not any(s.startswith(".debug") for s in secs), secs
    p = spawn(exe)
    out = str(tmp_path / "go.pb.gz")
    run_cprof("-p", p.pid, "-d", 2, "-F", 499, "-o", out)
    from conftest import pprof_top
    rows, total = pprof_top(out, "samples", extra=["-symbolize=none"])
    assert rows.get("main.cprofGoSpin", (0,))[0] / total >= 0.5, rows


def addr2line_frames(out, n):
    """eu-addr2line -i -f / cprof-bpf symbolize output for n addresses given one per run."""
    lines = out.splitlines()
    frames = []
    for i in range(0, len(lines) - 1, 2):
        fn = lines[i].split(" inlined at ")[0]
        file, _, rest = lines[i + 1].partition(":")
        frames.append((fn, file, int(rest.split(":")[0] or 0)))
    return frames


def test_symbolize_agrees_with_eu_addr2line(c_inline, cxx_inline):
    """cprof-bpf symbolize, at every byte of the fixtures' hot functions: the same inline chain,
    files and lines as elfutils' own addr2line."""
    from conftest import CPROF
    for binary, fn in ((c_inline, "run"), (cxx_inline, "_ZNK5cprof5MixerIiE5churnEv")):
        syms = subprocess.run(["nm", "-S", binary], capture_output=True, text=True,
                              check=True).stdout
        m = re.search(rf"^([0-9a-f]+) ([0-9a-f]+) [tT] {re.escape(fn)}(\.\S+)?$", syms, re.M)
        assert m, syms
        start, size = int(m.group(1), 16), int(m.group(2), 16)
        compared = 0
        for a in range(start, start + size):
            ours = subprocess.run([CPROF, "symbolize", "--demangle", "none", "-e", binary,
                                   hex(a)], capture_output=True, text=True, check=True).stdout
            ref = subprocess.run(["eu-addr2line", "-i", "-f", "-e", binary, hex(a)],
                                 capture_output=True, text=True, check=True).stdout
            assert addr2line_frames(ours, 1) == addr2line_frames(ref, 1), (hex(a), ours, ref)
            compared += len(addr2line_frames(ours, 1)) > 1
        assert compared > 0, "no inlined frame anywhere in " + fn


def test_debug_cache_is_bounded(c_inline, tmp_path):
    """The cache of uncompressed copies keeps within CPROF_CACHE_MAX_MB: making a copy removes
    the least recently used ones first; a copy that is used again is renewed."""
    from conftest import CPROF
    binary, root, _, bid = compressed_debug(c_inline, tmp_path)
    cache = tmp_path / "cache"
    (cache / "debug").mkdir(parents=True)
    old1, old2, recent = (cache / "debug" / f"{n * 8}.debug" for n in ("a", "b", "c"))
    for f, size, mtime in ((old1, 1 << 20, 1000), (old2, 1 << 20, 2000),
                           (recent, 1 << 19, time.time() - 10)):
        f.write_bytes(b"\0" * size)
        os.utime(f, (mtime, mtime))
    env = dict(os.environ, CPROF_CACHE_DIR=str(cache), CPROF_CACHE_MAX_MB="2")
    args = [CPROF, "symbolize", "--debug-dir", str(root), "-e", binary, "0x1000"]
    subprocess.run(args, capture_output=True, check=True, env=env)
    copy = cache / "debug" / f"{bid}.debug"
    # 2.5 MiB of old copies and the new one: the oldest goes, which brings it under 2 MiB.
    assert copy.exists() and not old1.exists(), list(cache.rglob("*"))
    assert old2.exists() and recent.exists(), list(cache.rglob("*"))
    os.utime(copy, (3000, 3000))
    subprocess.run(args, capture_output=True, check=True, env=env)
    assert copy.stat().st_mtime > time.time() - 60, copy.stat()
