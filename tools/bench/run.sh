#!/usr/bin/env bash
# `make bench`: every benchmark, side by side with the tools users would pick instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
for b in tools/bench/bench_*.py; do
	echo "== $b"
	/usr/bin/python3 "$b"
	echo
done
