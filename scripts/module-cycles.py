#!/usr/bin/env python3
"""Finds import cycles between the top-level modules of a Rust crate.

Usage: scripts/module-cycles.py CRATE/src

A top-level module is `src/a.rs` or the directory `src/a/` (its `mod.rs` and every file
below it count as module `a`). An edge a -> b is any `crate::b` path written in a file of
`a` (in `use` lines or inline), and any `super::b` written in a file directly inside
`src/a/` whose parent is the crate root, so it reaches sibling `b`. `self::` paths and
paths inside comments are ignored. `lib.rs` and `main.rs` are the crate roots, not modules.

Prints the edges of each cycle and exits 1, else prints
`CRATE/src: N modules, no import cycles` and exits 0. Exit 2 on a bad argument.

Layering is what keeps a crate readable: when module a uses b and b uses a, neither can
be understood, tested or replaced alone, and that is what this check guards.
"""

import re
import sys
from pathlib import Path

ROOTS = {"lib", "main"}
CRATE_PATH = re.compile(r"\bcrate::([A-Za-z_][A-Za-z0-9_]*)")
# `use crate::{a, b::c}`: a braced group right after `crate::` names several modules.
CRATE_GROUP = re.compile(r"\bcrate::\{")
# One or more `super::` then a name or a braced group.
SUPER_CHAIN = re.compile(r"(?<![A-Za-z0-9_:])((?:super::)+)(\{|[A-Za-z_][A-Za-z0-9_]*)")
INLINE_MOD = re.compile(r"\bmod\s+([A-Za-z_][A-Za-z0-9_]*)\s*\{")


def strip_comments_and_strings(text):
    """Removes // and /* */ comments and string literals so that prose never adds edges."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'r(#*)"', text[i:])
            end = text.find('"' + m.group(1), i + len(m.group(0)))
            i = n if end < 0 else end + 1 + len(m.group(1))
            out.append('""')
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            out.append('""')
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i:i + 4]):
            # A char literal such as '"' or '\''; lifetimes ('a) are left alone.
            m = re.match(r"'(\\.[^']*|[^\\'])'", text[i:])
            i += len(m.group(0)) if m else 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def braced(text, start):
    """The text inside the balanced braces whose `{` is at start."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1:i]
    return text[start + 1:]


def first_names(group):
    """The first path segment of each item of a braced `use` group (nested braces flattened)."""
    names = []
    depth = 0
    item = []
    for ch in group + ",":
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            seg = "".join(item).strip().split("::")[0].strip()
            if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", seg or "-"):
                names.append(seg)
            item = []
        else:
            item.append(ch)
    return names


def module_of(src, path):
    rel = path.relative_to(src)
    if len(rel.parts) == 1:
        return rel.stem
    return rel.parts[0]


def file_path(src, path):
    """The module path of a file: src/a.rs and src/a/mod.rs are [a], src/a/b.rs is [a, b]."""
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "mod":
        parts.pop()
    return parts


def inline_path(text, pos):
    """The inline `mod x { ... }` blocks that enclose position pos, outermost first."""
    opened = []  # (name, brace depth inside it)
    depth = 0
    starts = {m.end() - 1: m.group(1) for m in INLINE_MOD.finditer(text, 0, pos)}
    for i, ch in enumerate(text[:pos]):
        if ch == "{":
            depth += 1
            if i in starts:
                opened.append((starts[i], depth))
        elif ch == "}":
            if opened and opened[-1][1] == depth:
                opened.pop()
            depth -= 1
    return [name for name, _ in opened]


def super_targets(base, text):
    """Top-level modules reached by `super::` chains that climb to the crate root."""
    found = set()
    for m in SUPER_CHAIN.finditer(text):
        here = base + inline_path(text, m.start())
        ups = m.group(1).count("super::")
        if ups != len(here):
            continue  # stays inside this top-level module (or climbs past the root)
        tail = m.group(2)
        found.update(first_names(braced(text, m.start(2))) if tail == "{" else [tail])
    return found


def graph(src):
    files = sorted(p for p in src.rglob("*.rs") if p.is_file())
    modules = {module_of(src, p) for p in files} - ROOTS
    edges = {m: set() for m in modules}
    for path in files:
        here = module_of(src, path)
        if here in ROOTS:
            continue
        text = strip_comments_and_strings(path.read_text(encoding="utf-8"))
        targets = set(CRATE_PATH.findall(text))
        for g in CRATE_GROUP.finditer(text):
            targets.update(first_names(braced(text, g.end() - 1)))
        targets.update(super_targets(file_path(src, path), text))
        for t in targets:
            if t in modules and t != here:
                edges[here].add(t)
    return modules, edges


def cycles(modules, edges):
    """Strongly connected components with more than one module (Tarjan), each with its edges."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    sys.setrecursionlimit(10000)
    for v in sorted(modules):
        if v not in index:
            visit(v)
    return out


def main(argv):
    if len(argv) != 2:
        print("usage: module-cycles.py CRATE/src", file=sys.stderr)
        return 2
    src = Path(argv[1])
    if not src.is_dir():
        print(f"{argv[1]}: not a directory", file=sys.stderr)
        return 2
    modules, edges = graph(src)
    found = cycles(modules, edges)
    label = argv[1].rstrip("/")
    if not found:
        print(f"{label}: {len(modules)} modules, no import cycles")
        return 0
    for comp in sorted(found, key=lambda c: sorted(c)):
        names = sorted(comp)
        print(f"{label}: import cycle among {', '.join(names)}:")
        for a in names:
            for b in sorted(edges[a] & comp):
                print(f"  {a} -> {b}")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
