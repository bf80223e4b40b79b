"""lockdep's view: the "acquired B while holding A" graph over lock classes.

Edges come from every transition the search fired: statically known held sets
(``heldsets``) for steps that fired at least once, and held sets recorded at
run time for the rest. Following lockdep: a trylock adds no edge into the
lock it tries (it cannot wait), but locks taken while holding it do get
edges from it; rw-semaphore readers are non-recursive, so read edges count.
Every elementary cycle is a "possible circular locking dependency"; it is
marked reachable when some explored deadlock state blocks on exactly its
lock classes.
"""

from __future__ import annotations

from checker.lang.program_types import Action, AnyLock, Program, RwSem
from checker.report.results import LockCycle, LockEdge
from checker.search.codegen import Compiled


def _mode(lk: AnyLock, mode: str) -> str:
    return mode if isinstance(lk, RwSem) else "w"


def collect_edges(program: Program, comp: Compiled) -> list[LockEdge]:
    """One LockEdge per (src class, dst class, modes), first creator in action order."""
    edges: dict[tuple[str, str, str, str], LockEdge] = {}
    locks = program.locks
    # who acquires each lock statically, for "src acquired in ..." provenance
    acquirer: dict[tuple[int, int], str] = {}

    def add(a: Action, held: list[int], acq_idx: list[int]) -> None:
        """``held``: heldsets slots (2 * lock index, + 1 for a read hold)."""
        for i in acq_idx:
            acq = a.acquires[i]
            if acq.trylock:
                continue
            for h in held:
                src = locks[h // 2]
                mode_src = "r" if h % 2 else "w"
                key = (src.cls, acq.lock.cls, mode_src, _mode(acq.lock, acq.mode))
                if key not in edges:
                    th = program.threads[a.thread].name
                    edges[key] = LockEdge(src.cls, acq.lock.cls, key[2], key[3], th, a.function, a.operation,
                                          acquirer.get((a.thread, h // 2), ""))

    for a in program.actions:
        for acq in a.acquires:
            acquirer.setdefault((a.thread, acq.lock.index), a.function)
    for a in program.actions:
        if a.acquires and comp.fired[a.aid]:
            static = comp.static_held[a.thread][a.label]
            assert static is not None
            add(a, sorted(static), list(range(len(a.acquires))))
    for aid, held_mask, acq_mask in sorted(comp.dynamic_edges):
        a = program.actions[aid]
        held = [i for i in range(2 * len(locks)) if held_mask >> i & 1]
        add(a, held, [i for i in range(len(a.acquires)) if acq_mask >> i & 1])
    return sorted(edges.values(), key=lambda e: (e.src, e.dst, e.src_mode, e.dst_mode))


def find_cycles(edges: list[LockEdge], order: list[str] | None = None,
                limit: int = 64) -> list[list[LockEdge]]:
    """Elementary cycles of the class graph, each once, starting at its first-declared class."""
    rank = {c: i for i, c in enumerate(order or sorted({e.src for e in edges} | {e.dst for e in edges}))}
    adj: dict[str, list[LockEdge]] = {}
    for e in edges:
        adj.setdefault(e.src, []).append(e)
    nodes = sorted(adj, key=lambda c: rank.get(c, len(rank)))
    cycles: list[list[LockEdge]] = []
    for start in nodes:
        stack: list[tuple[str, list[LockEdge], set[str]]] = [(start, [], {start})]
        while stack and len(cycles) < limit:
            node, path, on_path = stack.pop()
            for e in reversed(adj.get(node, [])):
                if e.dst == start:
                    cycles.append(path + [e])
                elif rank.get(e.dst, len(rank)) > rank.get(start, len(rank)) and e.dst not in on_path:
                    stack.append((e.dst, path + [e], on_path | {e.dst}))
    # one cycle per lock sequence (modes may differ)
    uniq: dict[tuple[str, ...], list[LockEdge]] = {}
    for c in cycles:
        uniq.setdefault(tuple(e.src for e in c), c)
    return [uniq[k] for k in sorted(uniq, key=lambda k: (len(k), k))]


def scenario(locks: list[str]) -> list[str]:
    """lockdep's "Possible unsafe locking scenario" for a cycle of n classes."""
    n = len(locks)
    width = max(20, max(len(f"lock({x});") for x in locks) + 4)
    cols = [f"CPU{i}" for i in range(n)]
    lines = ["".join(c.ljust(width) for c in cols), "".join(("-" * 4).ljust(width) for _ in cols)]
    for i, lk in enumerate(locks):
        lines.append(" " * (width * i) + f"lock({lk});")
    for i in range(n):
        nxt = locks[(i + 1) % n]
        lines.append(" " * (width * i) + f"lock({nxt});")
    lines.append("")
    lines.append(" *** DEADLOCK ***")
    return lines


def cycles_report(edges: list[LockEdge], deadlock_sets: list[frozenset[str]],
                  order: list[str] | None = None) -> list[LockCycle]:
    out = []
    for c in find_cycles(edges, order):
        classes = [e.src for e in c]
        reachable = frozenset(classes) in set(deadlock_sets)
        out.append(LockCycle(classes, c, reachable, scenario(classes)))
    return out
