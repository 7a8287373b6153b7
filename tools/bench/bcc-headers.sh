#!/usr/bin/env bash
# bcc's Python tools compile C at start and need kernel headers, which this kernel does not ship.
# Workaround for the benchmarks only: install Debian's linux-headers-amd64, merge its -common and
# -amd64 trees into one folder, and print that folder for BCC_KERNEL_SOURCE.
set -euo pipefail
out=${1:-/tmp/cprof-bcc-headers}
if [ -f "$out/.ready" ]; then
	echo "$out"
	exit 0
fi
if ! dpkg-query -W -f='${Status}' linux-headers-amd64 2>/dev/null | grep -q "install ok"; then
	DEBIAN_FRONTEND=noninteractive apt-get install -o DPkg::Lock::Timeout=300 -y -qq \
		linux-headers-amd64 >/dev/null
fi
amd64=$(ls -d /usr/src/linux-headers-*-amd64 | sort -V | tail -1)
common=$(ls -d /usr/src/linux-headers-*-common | sort -V | tail -1)
rm -rf "$out"
mkdir -p "$out"
cp -a "$common/." "$out/"
cp -a "$amd64/." "$out/"
touch "$out/.ready"
echo "$out"
