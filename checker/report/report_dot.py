"""Graphviz DOT for the lock-order graph (lockdep's class graph).

Output is sorted so that two runs, or two designs, diff line by line.
"""

from __future__ import annotations

from checker.report.results import CheckResult, LockEdge


def _quote(*lines: str) -> str:
    """A DOT string; several lines are joined with DOT's own "\\n" escape."""
    return '"' + "\\n".join(t.replace("\\", "\\\\").replace('"', '\\"') for t in lines) + '"'


def _label(edge: LockEdge) -> str:
    first = (edge.function or "?") + (" (r)" if edge.dst_mode == "r" else "")
    if edge.src_mode == "r":
        return _quote(first, f"holding {edge.src} (r)")
    return _quote(first)


def cycle_pairs(result: CheckResult) -> set[tuple[str, str]]:
    """(src, dst) class pairs on any cycle, closing each cycle back to its first lock."""
    pairs: set[tuple[str, str]] = set()
    for cycle in result.cycles:
        n = len(cycle.locks)
        pairs.update((cycle.locks[k], cycle.locks[(k + 1) % n]) for k in range(n))
    return pairs


def lock_graph_dot(result: CheckResult) -> str:
    """``digraph lock_order``: one node per class, one edge per LockEdge, cycle edges red."""
    on_cycle = cycle_pairs(result)
    classes = set(result.lock_classes)
    for edge in result.lock_edges:
        classes.update((edge.src, edge.dst))

    lines = [
        "digraph lock_order {",
        "  rankdir=LR;",
        '  node [shape=box, fontname="monospace"];',
        '  edge [fontname="monospace", fontsize=10];',
    ]
    lines += [f"  {_quote(c)} [label={_quote(c)}];" for c in sorted(classes)]

    def key(e: LockEdge) -> tuple[str, ...]:
        return (e.src, e.dst, e.function, e.src_mode, e.dst_mode, e.thread, e.operation, e.src_function)

    seen: set[str] = set()
    for edge in sorted(result.lock_edges, key=key):
        attrs = [f"label={_label(edge)}"]
        if (edge.src, edge.dst) in on_cycle:
            attrs += ["color=red", "penwidth=2"]
        line = f"  {_quote(edge.src)} -> {_quote(edge.dst)} [{', '.join(attrs)}];"
        if line not in seen:  # edges differing only in thread/operation draw the same
            seen.add(line)
            lines.append(line)
    lines.append("}")
    return "\n".join(lines) + "\n"
