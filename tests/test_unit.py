"""Runs the C unit tests (cmocka), release and ASan+UBSan builds, as part of one pytest run."""
import glob
import os
import shutil
import subprocess

import pytest

from conftest import CPROF, ROOT, SAN_ENV

BINS = sorted(glob.glob(os.path.join(ROOT, "build", "tests", "test_*")) +
              glob.glob(os.path.join(ROOT, "build", "san", "tests", "test_*")))


def _env(tmp_path):
    # CPROF_SRCDIR: the fixtures' sources, whatever the current directory is.
    return dict(os.environ, **SAN_ENV, TMPDIR=str(tmp_path), CPROF_SRCDIR=ROOT)


def test_unit_tests_were_built():
    assert BINS, "no unit test binaries: run `make test`, which builds them"


@pytest.mark.parametrize("binary", BINS, ids=[os.path.relpath(b, ROOT) for b in BINS])
def test_unit(binary, tmp_path):
    r = subprocess.run([binary], capture_output=True, text=True, env=_env(tmp_path), timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "Sanitizer" not in r.stderr, r.stderr[-4000:]


# A fresh machine has no tracefs mounted (and debugfs, which would automount it, neither). In a
# private mount namespace both are unmounted if they are mounted here, so the programs that could
# need tracefs are tested as they run there; the machine's own mounts are untouched.
NO_TRACEFS = """
for m in /sys/kernel/debug/tracing /sys/kernel/tracing /sys/kernel/debug; do
    while mountpoint -q "$m"; do umount -l "$m"; done
done
for d in /sys/kernel/tracing /sys/kernel/debug/tracing; do
    if [ -e "$d/events" ]; then echo "tracefs still at $d" >&2; exit 99; fi
done
exec "$@"
"""
PROBES = [b for b in BINS if os.path.basename(b) == "test_unwind_probes"]


def _without_tracefs(argv, tmp_path):
    if not shutil.which("unshare"):
        pytest.skip("no unshare")
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-ec",
                           NO_TRACEFS, "sh", *argv], capture_output=True, text=True,
                          env=_env(tmp_path), timeout=300)


@pytest.mark.parametrize("binary", PROBES, ids=[os.path.relpath(b, ROOT) for b in PROBES])
def test_unwind_probes_without_tracefs(binary, tmp_path):
    r = _without_tracefs([binary], tmp_path)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    # The raw syscall tp_btf ran and checked the stacks; the tracepoint was only loaded.
    assert "tp_btf sys_enter: " in r.stderr and "not attached (no tracefs)" in r.stderr, \
        r.stderr[-4000:]


def test_every_program_loads_without_tracefs(tmp_path):
    r = _without_tracefs([CPROF, "check"], tmp_path)
    assert r.returncode == 0 and "FAIL" not in r.stdout, r.stdout + r.stderr
    assert "Sanitizer" not in r.stderr, r.stderr[-4000:]
