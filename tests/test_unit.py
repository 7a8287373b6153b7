"""Runs the C unit tests (cmocka), release and ASan+UBSan builds, as part of one pytest run."""
import glob
import os
import subprocess

import pytest

from conftest import ROOT, SAN_ENV

BINS = sorted(glob.glob(os.path.join(ROOT, "build", "tests", "test_*")) +
              glob.glob(os.path.join(ROOT, "build", "san", "tests", "test_*")))


def test_unit_tests_were_built():
    assert BINS, "no unit test binaries: run `make test`, which builds them"


@pytest.mark.parametrize("binary", BINS, ids=[os.path.relpath(b, ROOT) for b in BINS])
def test_unit(binary, tmp_path):
    env = dict(os.environ, **SAN_ENV, TMPDIR=str(tmp_path))
    r = subprocess.run([binary], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "Sanitizer" not in r.stderr, r.stderr[-4000:]
