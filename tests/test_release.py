"""The release build (the suite's other tests use the ASan+UBSan one) and `make demo`'s script."""
import os
import subprocess

from conftest import RELEASE, ROOT, go_pprof, run_cprof


def test_demo_script_profiles_a_live_workload(tmp_path):
    r = subprocess.run(["bash", os.path.join(ROOT, "tools", "demo.sh")], capture_output=True,
                       text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    # go tool pprof -top of the demo profile, then cprof-bpf's own table: both show hot_a.
    assert r.stdout.count("hot_a") >= 2, r.stdout
    assert "run_cpu" in r.stdout


def test_release_build_records(workload, spawn, workdir):
    w = spawn(workload, "cpu", 30)
    out = os.path.join(workdir, "release.pb.gz")
    run_cprof("-p", w.pid, "-d", 1, "-o", out, binary=RELEASE)
    assert "hot_a" in go_pprof("-top", out)
