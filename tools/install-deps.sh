#!/usr/bin/env bash
# Installs every Debian 12 package that building, testing, benchmarking and the demo need.
# Idempotent: installs only what is missing, and runs `apt-get update` only when it must.
set -euo pipefail

# Build: BPF compile, skeletons, libbpf, ELF/DWARF, protobuf, HTTP server and client, gzip.
BUILD_PKGS="clang llvm bpftool libbpf-dev libelf-dev libdw-dev zlib1g-dev
	libprotobuf-c-dev protobuf-c-compiler libmicrohttpd-dev libcurl4-openssl-dev pkg-config make gcc
	libiberty-dev libdebuginfod-dev"
# Tests: go tool pprof (reference consumer), cmocka (unit tests), pytest (end to end) and
# pytest-xdist (test files run side by side),
# binutils/elfutils for fixtures, gdb (tests/test_threads.py checks the threads snapshot
# against its backtraces), clang's sanitizer runtime, curl for HTTP tests; openssl (test
# certificates), chromium and python3-websocket (the flame graph page in a headless browser);
# python3.11, the CPython whose frames tests/test_python.py walks on every machine.
TEST_PKGS="golang-go libcmocka-dev python3 python3-pytest python3-pytest-xdist binutils elfutils gdb
	libclang-rt-14-dev curl openssl chromium python3-websocket
	g++ debuginfod nodejs libjemalloc-dev python3.11"

want="$BUILD_PKGS $TEST_PKGS"
if [ "${1:-}" = "--bench" ]; then
	# Benchmarks compare against the tools users would otherwise pick.
	want="$want linux-perf bpftrace bpfcc-tools libjemalloc-dev wrk austin"
fi

missing=""
for p in $want; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing packages:$missing; run as root (sudo make)" >&2
	exit 1
fi
echo "install-deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# Update the package lists once if they are empty or a first try fails.
if ! apt-get install -o DPkg::Lock::Timeout=300 -y -qq --no-install-recommends $missing >/dev/null 2>&1; then
	apt-get update -o DPkg::Lock::Timeout=300 -qq
	apt-get install -o DPkg::Lock::Timeout=300 -y -qq --no-install-recommends $missing >/dev/null
fi
