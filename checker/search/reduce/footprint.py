"""What each action touches, and each thread's control-flow graph, as static facts.

A footprint is a bitmask over the packed state: the bits of every field an
action reads (guard, update expressions, checks, lock-acquire conditions, its
next-pc expression) or writes (every field it assigns other than to itself).
Two actions of different threads are independent when neither writes what
the other reads or writes; then neither can enable, disable or change the
effect or the checks of the other, and the two orders reach the same state.

The control-flow graph of a thread has its pcs as nodes and, for each action
at pc ``p``, an edge to every pc its next-pc expression can produce (the
constant leaves of its ``If`` tree; any pc when it is not a tree of
constants). A back edge (depth-first from pc 0, then from any unvisited pc;
self loops included) closes every cycle of that graph, so every cycle of the
state graph takes a back edge of some thread (a transition that moves no pc
is a self loop).
"""

from __future__ import annotations

from dataclasses import dataclass

from checker.lang.expr import Const, Expr, Ite, Var, variables
from checker.lang.layout import Field
from checker.lang.program import Action, Program


def _mask(fields: set[object]) -> int:
    m = 0
    for f in fields:
        if isinstance(f, Field):
            m |= f.mask
    return m


def action_reads(a: Action) -> set[object]:
    """The fields an action's enabledness, effect, next pc or checks depend on."""
    r: set[object] = set(variables(a.guard))
    for e in a.updates.values():
        r |= variables(e)
    for c in a.checks:
        r |= variables(c.bad)
    for acq in a.acquires:
        r |= variables(acq.cond)
    for _, cond in a.releases:
        r |= variables(cond)
    return r


def action_writes(a: Action) -> set[Field]:
    return {f for f, e in a.updates.items() if not (isinstance(e, Var) and e.field is f)}


def _targets(e: Expr, npcs: int) -> set[int]:
    if isinstance(e, Const):
        return {int(e.value)}
    if isinstance(e, Ite):
        return _targets(e.a, npcs) | _targets(e.b, npcs)
    return set(range(npcs))


@dataclass
class ThreadGraph:
    """One thread's pcs: successors, back edges, and footprints now and from here on."""

    succ: list[set[int]]  # pc -> next pcs (the done pc has none)
    back: list[bool]  # pc -> some action at pc takes a back edge
    reads_at: list[int]  # pc -> reads of the actions at pc
    writes_at: list[int]
    reads_from: list[int]  # pc -> reads of every action at a pc reachable from pc (itself included)
    writes_from: list[int]


def thread_graph(program: Program, t: int) -> ThreadGraph:
    th = program.threads[t]
    per_pc = program.by_label[t]
    npcs = th.pc.hi - th.pc.lo + 1  # includes the done pc of a finite thread
    succ: list[set[int]] = [set() for _ in range(npcs)]
    reads_at, writes_at = [0] * npcs, [0] * npcs
    for p, acts in enumerate(per_pc):
        for a in acts:
            succ[p] |= {q for q in _targets(a.target, npcs) if 0 <= q < npcs}
            reads_at[p] |= _mask(action_reads(a))
            writes_at[p] |= _mask(set(action_writes(a)))
    back = [False] * npcs
    state = [0] * npcs  # 0 unvisited, 1 on the stack, 2 done
    for root in range(npcs):
        if state[root]:
            continue
        state[root] = 1
        stack: list[tuple[int, list[int]]] = [(root, sorted(succ[root]))]
        while stack:
            p, todo = stack[-1]
            if not todo:
                state[p] = 2
                stack.pop()
                continue
            q = todo.pop(0)
            if state[q] == 1:
                back[p] = True
            elif state[q] == 0:
                state[q] = 1
                stack.append((q, sorted(succ[q])))
    reads_from, writes_from = [0] * npcs, [0] * npcs
    for p in range(npcs):
        seen, todo2 = {p}, [p]
        while todo2:
            q = todo2.pop()
            reads_from[p] |= reads_at[q]
            writes_from[p] |= writes_at[q]
            for n in succ[q]:
                if n not in seen:
                    seen.add(n)
                    todo2.append(n)
    return ThreadGraph(succ, back, reads_at, writes_at, reads_from, writes_from)


__all__ = ["ThreadGraph", "action_reads", "action_writes", "thread_graph"]
