"""What the benchmarks in tools/bench/ share: paths, building a workload, starting and reaping a
profiler (own CPU time and peak RSS from its rusage), skipping a peer tool that is not installed,
rounds interleaved over the configurations, medians and ratios, the printed table, and the
--quick option (short durations, to check that a benchmark runs; its figures mean nothing).
"""
import os
import re
import select
import shutil
import statistics
import subprocess
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CPROF = os.path.join(ROOT, "build", "cprof-bpf")
BENCH = os.path.join(ROOT, "tools", "bench")
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
# The profilers' environment: bcc() adds BCC_KERNEL_SOURCE; a benchmark may add its own.
ENV = dict(os.environ)
# Frame pointers, so that every profiler can walk the workload's stacks; threads.
FP_FLAGS = ("-fno-omit-frame-pointer", "-pthread")


def parse(ap, **quick):
    """Adds --quick to ap and parses the command line; --quick sets each option named in quick
    (dest=value) that the command line left at its default."""
    short = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in quick.items())
    ap.add_argument("--quick", action="store_true",
                    help=f"short runs to check that the benchmark works ({short})")
    a = ap.parse_args()
    if a.quick:
        for k, v in quick.items():
            if getattr(a, k) == ap.get_default(k):
                setattr(a, k, v)
    return a


def build(tmp, src, flags=FP_FLAGS):
    """Compiles the C workload src -O2 -g with flags into tmp; returns the executable's path."""
    exe = os.path.join(tmp, os.path.splitext(os.path.basename(src))[0])
    subprocess.run(["cc", "-O2", "-g", *flags, "-o", exe, src], check=True)
    return exe


def ops(out):
    """The count a workload prints last (`ops N`)."""
    return int(re.search(r"ops (\d+)", out).group(1))


def workload(argv, **kw):
    """Starts a workload that prints `ready` once set up (stdout a text pipe) and waits for it."""
    w = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, **kw)
    line = w.stdout.readline()
    if not line.startswith("ready"):
        w.kill()
        w.wait()
        raise RuntimeError(f"{os.path.basename(argv[0])} did not start: {line.strip()!r}")
    return w


def start(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE):
    """Starts a profiler in a copy of ENV, its pipes in text mode."""
    return subprocess.Popen(argv, stdout=stdout, stderr=stderr, text=True, env=dict(ENV))


def wait_for(stream, marker, timeout):
    """Reads a profiler's pipe until marker appears (it says it has attached), it ends, or timeout
    seconds pass: (whether marker came, what was read). Reads the descriptor, not the buffered
    file, so that a line already read cannot sit unseen in a buffer while select() waits."""
    fd, seen, want = stream.fileno(), b"", marker.encode()
    end = time.monotonic() + timeout
    while want not in seen and time.monotonic() < end:
        if select.select([fd], [], [], 0.5)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            seen += chunk
    return want in seen, seen.decode(errors="replace")


def reap(proc, sig=None):
    """Stops proc with sig (None: it ends by itself) and waits for it, reading its pipes meanwhile
    so that a full pipe cannot stall it. Returns (own CPU s, peak RSS MB, stdout, stderr): its
    rusage, and the text of the pipes it has ("" for the others)."""
    if sig is not None:
        os.kill(proc.pid, sig)  # not send_signal: it polls, which may reap what wait4 needs
    text = {}

    def read(name, f):
        text[name] = f.read()
    readers = [threading.Thread(target=read, args=(n, f))
               for n, f in (("out", proc.stdout), ("err", proc.stderr)) if f]
    for t in readers:
        t.start()
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    for t in readers:
        t.join()
    return ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024.0, text.get("out", ""), \
        text.get("err", "")


def peer(tool):
    """Whether a peer tool is installed; says so when it is not, so that a missing row is
    explained (tools/install-deps.sh --bench installs them)."""
    if shutil.which(tool):
        return True
    print(f"{tool} skipped: not installed")
    return False


def bcc(tool):
    """Whether bcc's tool can run: installed, and kernel headers found. bcc needs kernel headers
    this kernel lacks: tools/bench/bcc-headers.sh makes a tree, passed in ENV."""
    if not peer(tool):
        return False
    r = subprocess.run(["bash", os.path.join(BENCH, "bcc-headers.sh")], capture_output=True,
                       text=True)
    if r.returncode:
        print(f"{tool} skipped: no kernel headers ({r.stderr.strip()[-200:]})")
        return False
    ENV["BCC_KERNEL_SOURCE"] = r.stdout.strip()
    return True


def rounds(configs, n, run, errors=()):
    """Runs run(config) n times for each of configs (tuples, the name first), interleaved so that
    a drift of the machine hits all alike; returns {name: [results]}. A run that raises one of
    errors is left out and said."""
    res = {c[0]: [] for c in configs}
    for _ in range(n):
        for c in configs:
            try:
                res[c[0]].append(run(c))
            except errors as e:
                print(f"  {c[0]}: {e}")
    return res


def med(rows, key=None):
    """The median of key over rows (an index or dict key; None: the rows themselves), leaving out
    rows without a value; None when none has one."""
    vals = [r if key is None else r[key] if isinstance(r, (list, tuple)) else r.get(key)
            for r in rows]
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def ratio(results, name, key=None, base="none"):
    """The median of key for name over the median for base (the run without a profiler)."""
    return med(results[name], key) / med(results[base], key)


class Table:
    """A table of fixed-width columns: the row name left-aligned in width, then cols, each
    (title, width, format spec); a value of None prints as '-'."""

    def __init__(self, title, width, cols, indent="", sep=" "):
        self.title, self.width, self.cols, self.indent, self.sep = title, width, cols, indent, sep

    def header(self):
        print(self.indent + f"{self.title:{self.width}}" +
              "".join(f"{self.sep}{t:>{w}}" for t, w, _ in self.cols))

    def row(self, name, *vals):
        print(self.indent + f"{name:{self.width}}" +
              "".join(f"{self.sep}{'-' if v is None else format(v, spec):>{w}}"
                      for v, (_, w, spec) in zip(vals, self.cols)))
