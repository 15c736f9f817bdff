#!/usr/bin/env python3
"""Checks the crates' layout rules (run by `make lint`):

- no dependency cycle between the top-level modules of a crate, nor between the
  sibling modules inside one module directory (test code is not counted);
- no source file longer than MAX_LINES unless its module doc says why, with a line
  containing "Longer than" (e.g. "//! Longer than 350 lines: ...").

Dependencies are read from `crate::a::b` and `super::x` paths in the code.
"""

import re
import sys
from pathlib import Path

MAX_LINES = 350
CRATES = ["host/runtime/src", "host/conformance/src", "host/server/src"]
TEST_START = re.compile(r"^#\[cfg\(test\)\]\s*$")


def module_path(src: Path, file: Path) -> list[str]:
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return parts


def code_of(file: Path) -> str:
    """The file's non-test code, without comments."""
    lines = []
    for line in file.read_text().splitlines():
        if TEST_START.match(line):
            break
        stripped = line.strip()
        if stripped.startswith("//"):
            continue
        lines.append(line)
    return "\n".join(lines)


def references(code: str, here: list[str]) -> set[tuple[str, ...]]:
    """Module paths this code names, absolute from the crate root."""
    refs = set()
    # `use crate::{a, b::c}` and plain `crate::a::b` paths.
    for m in re.finditer(r"crate::\{([^}]*)\}", code):
        for item in m.group(1).split(","):
            name = item.strip().split("::")[0]
            if name and name != "self":
                refs.add((name,))
    for m in re.finditer(r"crate::([a-z_][a-z0-9_]*)(?:::([a-z_][a-z0-9_]*))?", code):
        refs.add(tuple(p for p in m.groups() if p))
    for m in re.finditer(r"\bsuper::([a-z_][a-z0-9_]*)", code):
        refs.add(tuple(here[:-1]) + (m.group(1),))
    return refs


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    problems = []
    for crate in CRATES:
        src = root / crate
        files = sorted(src.rglob("*.rs"))
        modules = {tuple(module_path(src, f)): f for f in files}
        # Edges between siblings: for every directory module (root included).
        graphs: dict[tuple[str, ...], dict[str, set[str]]] = {}
        for path, file in modules.items():
            if not path or "tests" in path:
                continue
            for ref in references(code_of(file), list(path)):
                # The deepest common parent decides which sibling graph the edge is in.
                common = 0
                while common < min(len(path), len(ref)) and path[common] == ref[common]:
                    common += 1
                if common >= len(path) or common >= len(ref):
                    continue  # a module naming its own descendant or ancestor
                parent = path[:common]
                if ref[: common + 1] not in modules and parent + (ref[common],) not in modules:
                    continue  # an item, not a module
                graph = graphs.setdefault(parent, {})
                graph.setdefault(path[common], set()).add(ref[common])
        for parent, graph in graphs.items():
            cycle = find_cycle(graph)
            if cycle:
                where = "::".join(parent) or "crate root"
                problems.append(f"{crate}: module cycle under {where}: {' -> '.join(cycle)}")
        for file in files:
            text = file.read_text()
            n = text.count("\n")
            if n > MAX_LINES and "Longer than" not in text:
                rel = file.relative_to(root)
                problems.append(f"{rel}: {n} lines (over {MAX_LINES}); split it, or say why in its module doc")
    for p in problems:
        print(p)
    if not problems:
        print(f"layout: no module cycles, no file over {MAX_LINES} lines without a reason")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
