"""Runs each libFuzzer target (tests/fuzz/, built by `make test` into build/fuzz/) for a short
fixed time on its corpus (build/fuzz/corpus-NAME, seeded from build/fuzz/seeds). A crash, a
leak, a sanitizer report, a broken invariant or an input slower than the timeout fails the
test; the input that did it is left in build/fuzz/ (NAME-crash-*, ...) to reproduce with
`build/fuzz/NAME FILE`. Longer runs: `make fuzz FUZZ_SECONDS=600`."""
import glob
import os
import subprocess
import tempfile

import pytest

from conftest import ROOT

FUZZ_DIR = os.path.join(ROOT, "build", "fuzz")
TARGETS = sorted(os.path.basename(p)[:-2] for p in glob.glob(os.path.join(ROOT, "tests", "fuzz",
                                                                           "fuzz_*.c")))
SECONDS = 20
# Inputs that once crashed or hung a target, as hex (xxd -p): NAME-WHAT.hex.
REGRESS = sorted(glob.glob(os.path.join(ROOT, "tests", "fuzz", "regress", "*.hex")))


@pytest.mark.parametrize("name", TARGETS)
def test_fuzz_target(name):
    binary = os.path.join(FUZZ_DIR, name)
    seeds = os.path.join(FUZZ_DIR, "seeds")
    assert os.access(binary, os.X_OK) and os.path.isdir(seeds), \
        f"{binary} not built: run `make test` (or `make fuzz-build`)"
    corpus = os.path.join(FUZZ_DIR, f"corpus-{name}")
    os.makedirs(corpus, exist_ok=True)
    before = set(os.listdir(FUZZ_DIR))
    env = {k: v for k, v in os.environ.items() if not k.endswith("SAN_OPTIONS")}
    r = subprocess.run([binary, f"-max_total_time={SECONDS}", "-rss_limit_mb=4096",
                        "-max_len=65536", "-timeout=10", f"-artifact_prefix={FUZZ_DIR}/{name}-",
                        "-print_final_stats=1", corpus, seeds],
                       capture_output=True, text=True, env=env, timeout=SECONDS + 240)
    found = sorted(set(os.listdir(FUZZ_DIR)) - before)
    assert r.returncode == 0 and not found, (found, r.stderr[-6000:])
    runs = [ln for ln in r.stderr.splitlines() if ln.startswith("stat::number_of_executed_units")]
    assert runs and int(runs[0].split(":")[-1]) > 0, r.stderr[-3000:]


@pytest.mark.parametrize("hexfile", REGRESS, ids=[os.path.basename(p) for p in REGRESS])
def test_fuzz_regression(hexfile):
    name = os.path.basename(hexfile).split("-")[0]
    binary = os.path.join(FUZZ_DIR, name)
    assert os.access(binary, os.X_OK), f"{binary} not built: run `make test`"
    with open(hexfile) as f:
        data = bytes.fromhex("".join(f.read().split()))
    env = {k: v for k, v in os.environ.items() if not k.endswith("SAN_OPTIONS")}
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "input")
        with open(path, "wb") as f:
            f.write(data)
        r = subprocess.run([binary, "-timeout=5", "-rss_limit_mb=2048", path],
                           capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-4000:]
