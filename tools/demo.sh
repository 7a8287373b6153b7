#!/usr/bin/env bash
# `make demo`: starts a small bundled workload, profiles it for a few seconds with cprof-bpf,
# writes a pprof file and prints its top functions through go tool pprof.
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/demo
mkdir -p "$out"
cc -O2 -g -fno-omit-frame-pointer -o "$out/workload" tests/fixtures/workload.c

"$out/workload" cpu 30 > "$out/workload.log" &
wl=$!
trap 'kill $wl 2>/dev/null || true' EXIT
sleep 0.2

echo "== sudo build/cprof-bpf -p $wl -d 3 -o $out/cpu.pb.gz"
build/cprof-bpf -p "$wl" -d 3 -o "$out/cpu.pb.gz"
echo
echo "== go tool pprof -top $out/cpu.pb.gz"
GOCACHE=${GOCACHE:-/tmp/cprof-gocache} go tool pprof -top -nodecount=20 "$out/cpu.pb.gz"
echo
echo "== the same profile as a table, straight from cprof-bpf (--format top)"
build/cprof-bpf -p "$wl" -d 2 --format top --top 12
echo
echo "Open it in a browser: go tool pprof -http=:8080 $out/cpu.pb.gz"
