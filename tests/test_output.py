"""Where `record -o PATH` writes: devices and FIFOs in place, symlinks followed, only a regular
file replaced, nothing temporary left behind; what it refuses before sampling; `-- CMD` that
cannot run. Device nodes are made in a private mount namespace (unshare -m) on a tmpfs of its
own: the machine's /dev is never touched."""
import os
import shlex
import shutil
import signal
import stat
import subprocess
import threading
import time

import pytest

from conftest import (CPROF, assert_no_sanitizer, pprof_top, read_until, run_cprof,
                      san_env, start_cprof)


def _in_private_ns(script, timeout=120):
    """Runs a shell script in a private mount namespace (mounts there vanish with it)."""
    if not shutil.which("unshare"):
        pytest.skip("no unshare")
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-ec", script],
                       capture_output=True, text=True, env=san_env(), timeout=timeout)
    assert_no_sanitizer(r.stderr)
    return r


def _cprof_cmd(*args):
    return " ".join(shlex.quote(str(a)) for a in (CPROF, *args))


def _hot(profile):
    rows, _ = pprof_top(profile, "samples")
    return "hot_a" in rows and "hot_b" in rows, rows


def test_dev_null_stays_a_character_device(workload, tmp_path):
    """-o /dev/null (a private one: a node made by mknod, bind-mounted over /dev/null in a private
    namespace) and -o on another null node keep the devices: nothing is renamed over them."""
    d = tmp_path / "dev"
    d.mkdir()
    script = f"""
mount -t tmpfs cprof-dev {d}
mknod {d}/null c 1 3
mknod {d}/null2 c 1 3
mount --bind {d}/null /dev/null
{_cprof_cmd("-o", "/dev/null", "--", workload, "cpu", 1)}
{_cprof_cmd("-o", f"{d}/null2", "--", workload, "cpu", 1)}
echo "kind:$(stat -c '%F %t:%T' /dev/null)"
echo "kind:$(stat -c '%F %t:%T' {d}/null2)"
echo "ls:$(ls -A {d} | tr '\\n' ' ')"
"""
    r = _in_private_ns(script)
    assert r.returncode == 0, r.stderr
    kinds = [ln[5:] for ln in r.stdout.splitlines() if ln.startswith("kind:")]
    assert kinds == ["character special file 1:3"] * 2, r.stdout + r.stderr
    # Nothing was left beside them (no PATH.tmp.PID).
    assert "ls:null null2 " in r.stdout, r.stdout
    assert not os.path.exists(d / "null"), "the tmpfs must live only in the namespace"


def test_dev_full_is_a_clear_error(workload, tmp_path):
    d = tmp_path / "dev"
    d.mkdir()
    script = f"""
mount -t tmpfs cprof-dev {d}
mknod {d}/full c 1 7
rc=0; {_cprof_cmd("-o", f"{d}/full", "--", workload, "cpu", 1)} || rc=$?
echo "rc=$rc"
echo "kind:$(stat -c '%F' {d}/full)"
echo "ls:$(ls -A {d} | tr '\\n' ' ')"
"""
    r = _in_private_ns(script)
    assert "rc=1" in r.stdout, r.stdout + r.stderr
    assert f"cannot write {d}/full: No space left on device" in r.stderr, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if "cannot" in ln]
    assert len(errors) == 1, r.stderr
    assert "kind:character special file" in r.stdout and "ls:full \n" in r.stdout, r.stdout


def test_fifo_gets_the_profile(workload, tmp_path):
    fifo = tmp_path / "profile.fifo"
    os.mkfifo(fifo)
    got = {}

    def reader():
        with open(fifo, "rb") as f:
            got["data"] = f.read()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    run_cprof("-o", fifo, "--", workload, "cpu", 1)
    t.join(30)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode), "the FIFO was replaced"
    assert got.get("data", b"")[:2] == b"\x1f\x8b", got  # gzip: the profile
    out = tmp_path / "read.pb.gz"
    out.write_bytes(got["data"])
    ok, rows = _hot(out)
    assert ok, rows


def test_symlink_is_followed(workload, tmp_path):
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    link = tmp_path / "link.pb.gz"
    target = real_dir / "cpu.pb.gz"
    target.write_bytes(b"old")
    os.chmod(target, 0o640)
    os.symlink(os.path.relpath(target, tmp_path), link)
    run_cprof("-o", link, "--", workload, "cpu", 1)
    assert os.path.islink(link) and os.readlink(link) == "real/cpu.pb.gz"
    ok, rows = _hot(target)
    assert ok, rows
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640  # the replaced file's mode is kept
    assert sorted(os.listdir(real_dir)) == ["cpu.pb.gz"] and \
        sorted(os.listdir(tmp_path)) == ["link.pb.gz", "real"]
    # A dangling symlink: the file it names is created.
    dangling = tmp_path / "dangling.pb.gz"
    os.symlink("real/new.pb.gz", dangling)
    run_cprof("-o", dangling, "--", workload, "cpu", 1)
    assert os.path.islink(dangling) and _hot(real_dir / "new.pb.gz")[0]


def test_sigkill_leaves_no_temporary_file(workload, spawn, tmp_path):
    w = spawn(workload, "cpu", 60)
    out = tmp_path / "cpu.pb.gz"
    out.write_bytes(b"previous profile")
    p = start_cprof("-v", "-p", w.pid, "-d", 30, "-o", out)
    try:
        err = read_until(p.stderr, "profiling", 60)
        assert "profiling" in err, err
        time.sleep(0.5)
        os.kill(p.pid, signal.SIGKILL)
        p.wait(30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert sorted(os.listdir(tmp_path)) == ["cpu.pb.gz"], os.listdir(tmp_path)
    assert out.read_bytes() == b"previous profile"


def test_sigterm_writes_and_leaves_no_temporary_file(workload, spawn, tmp_path):
    w = spawn(workload, "cpu", 60)
    out = tmp_path / "cpu.pb.gz"
    p = start_cprof("-v", "-p", w.pid, "-d", 30, "-o", out)
    try:
        err = read_until(p.stderr, "profiling", 60)
        assert "profiling" in err, err
        time.sleep(1)
        p.send_signal(signal.SIGTERM)
        err += p.communicate(timeout=60)[1]
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    assert sorted(os.listdir(tmp_path)) == ["cpu.pb.gz"], os.listdir(tmp_path)
    assert _hot(out)[0]


def test_failed_write_leaves_no_temporary_file(workload, tmp_path):
    """A file system that fills up: one-line error, exit 1, the old file intact, no temp file."""
    d = tmp_path / "small"
    d.mkdir()
    script = f"""
mount -t tmpfs -o size=64k cprof-small {d}
printf old > {d}/cpu.pb.gz
dd if=/dev/zero of={d}/filler bs=4k 2>/dev/null || true
rc=0; {_cprof_cmd("-o", f"{d}/cpu.pb.gz", "--", workload, "cpu", 1)} || rc=$?
echo "rc=$rc"
echo "ls:$(ls -A {d} | tr '\\n' ' ')"
echo "old:$(cat {d}/cpu.pb.gz)"
"""
    r = _in_private_ns(script)
    assert "rc=1" in r.stdout, r.stdout + r.stderr
    assert "No space left on device" in r.stderr, r.stderr
    assert len([ln for ln in r.stderr.splitlines() if "cannot" in ln]) == 1, r.stderr
    assert "ls:cpu.pb.gz filler \n" in r.stdout and "old:old" in r.stdout, r.stdout


@pytest.mark.parametrize("case", ["dir", "proc", "proc-new", "no-parent", "trailing-slash"])
def test_bad_output_fails_before_sampling(workload, spawn, tmp_path, case):
    w = spawn(workload, "idle", 60)
    path, reason = {
        "dir": (str(tmp_path), "Is a directory"),
        "proc": ("/proc/version", "kernel file system"),
        "proc-new": ("/proc/cprof.pb.gz", "kernel file system"),
        "no-parent": (str(tmp_path / "missing" / "x.pb.gz"), "does not exist"),
        "trailing-slash": (str(tmp_path / "x.pb.gz") + "/", "directory"),
    }[case]
    t0 = time.monotonic()
    r = run_cprof("-p", w.pid, "-d", 30, "-o", path, check=False, timeout=60)
    took = time.monotonic() - t0
    err = r.stderr.decode()
    assert r.returncode == 1 and took < 5, (took, err)
    assert reason in err and len(err.strip().splitlines()) == 1, err
    assert "No such file or directory" not in err or case == "no-parent", err
    assert os.listdir(tmp_path) == [], os.listdir(tmp_path)


def test_read_only_file_system_fails_before_sampling(workload, tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    script = f"""
mount -t tmpfs -o ro cprof-ro {d}
t0=$(date +%s.%N)
rc=0; {_cprof_cmd("-a", "-d", 30, "-o", f"{d}/cpu.pb.gz")} || rc=$?
echo "rc=$rc took=$(echo "$(date +%s.%N) - $t0" | bc)"
"""
    r = _in_private_ns(script)
    assert "rc=1" in r.stdout, r.stdout + r.stderr
    assert float(r.stdout.split("took=")[1]) < 5, r.stdout
    assert "Read-only file system" in r.stderr and len(r.stderr.strip().splitlines()) == 1, \
        r.stderr


def test_no_write_permission_fails_before_sampling(workload, spawn, tmp_path):
    """Not root, but with CAP_BPF and CAP_PERFMON: a directory it may not write is refused."""
    if not shutil.which("setpriv"):
        pytest.skip("no setpriv")
    w = spawn(workload, "idle", 60)
    d = tmp_path / "closed"
    d.mkdir(mode=0o755)
    os.chmod(tmp_path, 0o755)
    argv = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
            "--inh-caps=+bpf,+perfmon", "--ambient-caps=+bpf,+perfmon",
            CPROF, "-p", str(w.pid), "-d", "30", "-o", str(d / "cpu.pb.gz")]
    t0 = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, env=san_env(), timeout=60)
    took = time.monotonic() - t0
    assert_no_sanitizer(r.stderr)
    assert r.returncode == 1 and took < 5, (took, r.stderr)
    assert "Permission denied" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.parametrize("cmd,status,reason", [
    ("/cprof-test-no-such-path/cmd", 127, "No such file or directory"),
    ("cprof-no-such-command", 127, "command not found"),
    ("/etc/passwd", 126, "Permission denied"),
    ("/etc", 126, "Is a directory"),
])
def test_command_that_cannot_run(tmp_path, cmd, status, reason):
    out = tmp_path / "cpu.pb.gz"
    r = run_cprof("-o", out, "--", cmd, check=False, timeout=60)
    err = r.stderr.decode()
    assert r.returncode == status, err
    assert reason in err and len(err.strip().splitlines()) == 1, err
    assert os.listdir(tmp_path) == []


def test_command_whose_exec_fails(tmp_path):
    """An interpreter that does not exist: found only by exec itself, after attaching."""
    script = tmp_path / "script"
    script.write_text("#!/cprof-test-no-such-path/interpreter\n")
    script.chmod(0o755)
    out = tmp_path / "cpu.pb.gz"
    r = run_cprof("-o", out, "--", script, check=False, timeout=60)
    err = r.stderr.decode()
    assert r.returncode == 127, err
    assert "cannot run" in err and len(err.strip().splitlines()) == 1, err
    assert sorted(os.listdir(tmp_path)) == ["script"]


@pytest.mark.parametrize("args,want", [
    (["-d", "1e9"], "out of range, expected 0.001 to 31536000 seconds"),
    (["-d", "soon"], "not a number"),
    (["-F", "100000"], "out of range, expected 1 to 10000 Hz"),
    (["-F", "1e3"], "not an integer"),
    (["--max-stacks", "99999999999999999999"], "out of range, expected 64 to 1048576"),
    (["--unwind-mem", "1T"], "out of range, expected 64K to 64G"),
    (["-p", "0"], "out of range, expected 1 to 4194304"),
])
def test_numeric_flags_name_the_problem(args, want):
    target = [] if "-p" in args else ["-p", "1"]
    r = run_cprof(*args, *target, check=False)
    err = r.stderr.decode()
    assert r.returncode == 2 and want in err and len(err.strip().splitlines()) == 1, err
