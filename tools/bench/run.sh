#!/usr/bin/env bash
# `make bench`: every benchmark, side by side with the tools users would pick instead.
# BENCH="cpu heap" runs only those; BENCH_ARGS goes to each (`make bench BENCH_ARGS=--quick`:
# short runs that check every benchmark works; their figures mean nothing).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -n "${BENCH:-}" ]; then
	benches=()
	for n in $BENCH; do
		benches+=("tools/bench/bench_$n.py")
	done
else
	benches=(tools/bench/bench_*.py)
fi
for b in "${benches[@]}"; do
	echo "== $b"
	# shellcheck disable=SC2086 # BENCH_ARGS holds several words
	/usr/bin/python3 "$b" ${BENCH_ARGS:-}
	echo
done
