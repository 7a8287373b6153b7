"""Nothing depends on where the checkout is: a `git clone` of this checkout's HEAD into a new
temporary directory (under /tmp, where a fresh machine's users often put one) builds with the
installed dependencies, and a real end-to-end test runs from it, started from another directory.
Takes about a minute: one release build (BPF objects, skeletons, user space) and one capture."""
import os
import shutil
import subprocess
import tempfile

import pytest

from conftest import ROOT

# Real captures read back by `go tool pprof`: short, and they fail if the binary, the fixtures or
# the conftest paths are wrong. The second hides /tmp behind a tmpfs in a private namespace, as
# a container does: with the checkout under /tmp it must not hide its own fixtures.
E2E = ["tests/test_record.py::test_stacks_reach_main",
       "tests/test_symbols.py::test_node_jit_in_other_mount_and_pid_namespace"]


@pytest.fixture
def clone():
    if not shutil.which("git") or \
            subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True).returncode:
        pytest.skip("not a git checkout")
    d = tempfile.mkdtemp(prefix="cprof-clone-", dir="/tmp")
    dst = os.path.join(d, "cprof-bpf")
    try:
        r = subprocess.run(["git", "clone", "-q", "--no-hardlinks", ROOT, dst],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        yield dst
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_no_path_of_the_checkout_in_the_tree(clone):
    """No committed file names the directory it was committed from."""
    real = os.path.realpath(ROOT)
    for path in {ROOT, real}:
        r = subprocess.run(["git", "-C", clone, "grep", "-n", "-I", "-F", "-e", path],
                           capture_output=True, text=True)
        assert r.returncode == 1 and not r.stdout, r.stdout[:4000]


def test_clone_builds_and_runs_from_anywhere(clone):
    env = dict(os.environ)
    env.pop("CPROF_BIN", None)
    env.pop("PYTEST_ADDOPTS", None)
    r = subprocess.run(["make", "-j2", "-C", clone], capture_output=True, text=True, env=env,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    binary = os.path.join(clone, "build", "cprof-bpf")
    assert os.access(binary, os.X_OK)
    # From another directory, against the clone's own build: its conftest finds everything
    # relative to the clone.
    env["CPROF_BIN"] = binary
    with tempfile.TemporaryDirectory(prefix="cprof-cwd-") as cwd:
        r = subprocess.run(["/usr/bin/python3", "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            *[os.path.join(clone, t) for t in E2E]], capture_output=True,
                           text=True, env=env, cwd=cwd, timeout=300)
    assert r.returncode == 0 and f"{len(E2E)} passed" in r.stdout, \
        r.stdout[-4000:] + r.stderr[-4000:]
