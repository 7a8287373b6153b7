#!/usr/bin/env bash
# Structure figures of user/: files over MAX_LINES lines, functions over MAX_FUNC lines, and
# include cycles between modules, at two levels: files (a module is X.c with its X.h; a folder's
# private internal.h belongs to all its files) and folders (collect/, sym/, ...; each top-level
# file of user/ is a module of its own).
# Usage: tools/structure-check.sh [MAX_LINES [MAX_FUNC]]   (defaults 700 and 80)
# Exit status: 0 when nothing is over and there is no cycle, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
exec /usr/bin/python3 - "${1:-700}" "${2:-80}" <<'PY'
import os, re, sys

max_lines, max_func = int(sys.argv[1]), int(sys.argv[2])
files = sorted(os.path.join(d, f) for d, _, fs in os.walk("user") for f in fs
               if f.endswith((".c", ".h")))
bad = 0

print(f"files in user/ over {max_lines} lines:")
for f in files:
    n = sum(1 for _ in open(f, errors="replace"))
    if n > max_lines:
        print(f"  {n:5d} {f}")
        bad += 1

# Kernel style: a function body opens with "{" alone in column 0 and closes with "}" in column
# 0; its name is the identifier before the "(" of the lines above.
print(f"functions over {max_func} lines (from the line of their name to the closing brace):")
for f in files:
    if not f.endswith(".c"):
        continue
    lines = open(f, errors="replace").read().split("\n")
    for i, line in enumerate(lines):
        if line != "{":
            continue
        j = i - 1
        while j > 0 and "(" not in lines[j]:
            j -= 1
        m = re.search(r"(\w+)\s*\(", lines[j])
        if not m or lines[j].startswith(("struct ", "static const", "const ")) and "=" in lines[j]:
            continue
        end = next((k for k in range(i + 1, len(lines)) if lines[k].startswith("}")), len(lines))
        n = end - j + 1
        if n > max_func:
            print(f"  {n:5d} {f}:{j + 1} {m.group(1)}")
            bad += 1

inc = re.compile(r'^#include "([^"]+)"', re.M)
def module(path, level):
    rel = os.path.relpath(path, "user")
    if level == "file" and os.path.basename(rel) == "internal.h":
        return None  # a folder's private header, shared by its files: part of each of them
    if level == "folder":
        return rel.split(os.sep)[0] if os.sep in rel else os.path.splitext(rel)[0]
    return os.path.splitext(rel)[0]

for level in ("file", "folder"):
    graph = {}
    for f in files:
        a = module(f, level)
        if a is None:
            continue
        for h in inc.findall(open(f, errors="replace").read()):
            p = os.path.join("user", h)
            if not os.path.exists(p):
                p = os.path.join(os.path.dirname(f), h)
            if not os.path.exists(p) or not p.startswith("user"):
                continue  # bpf/, build/ (skeletons, protobuf), system
            b = module(os.path.normpath(p), level)
            if b is not None and a != b:
                graph.setdefault(a, set()).add(b)
    # Strongly connected components (Tarjan): each one of more than one module is a cycle.
    index, low, stack, on, sccs, n = {}, {}, [], set(), [], [0]
    def visit(v):
        index[v] = low[v] = n[0]; n[0] += 1; stack.append(v); on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))
    sys.setrecursionlimit(10000)
    for v in sorted(set(graph) | {w for ws in graph.values() for w in ws}):
        if v not in index:
            visit(v)
    print(f"include cycles between {level} modules:")
    for comp in sccs:
        print("  " + " <-> ".join(comp))
        bad += 1
    if not sccs:
        print("  none")
print(f"total: {bad}")
sys.exit(1 if bad else 0)
PY
