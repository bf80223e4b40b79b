"""Which locks a thread holds at each label, when that is known statically.

A forward may/must dataflow over each thread's control flow. Where may == must
the held set is a function of the pc, so lock-order edges of steps there are
derived from "this step fired" alone; elsewhere (conditional locking, a lock
instance chosen by state, trylock) the explorer records held sets at run time.
"""

from __future__ import annotations

from checker.lang.expr import Const, Expr, Ite
from checker.lang.program_types import Action, Program

Held = frozenset[int]  # 2 * lock index, + 1 when held for reading (rwsem readers)


def slot(lock_index: int, mode: str) -> int:
    return 2 * lock_index + (1 if mode == "r" else 0)


def targets(e: Expr) -> set[int]:
    """Every pc value a step's target expression can produce."""
    if isinstance(e, Const):
        return {int(e.value)}
    if isinstance(e, Ite):
        return targets(e.a) | targets(e.b)
    raise ValueError("a step target must be built from constants and If")


def _is_true(e: Expr) -> bool:
    return isinstance(e, Const) and e.value is True


def transfer(a: Action, may: Held, must: Held) -> tuple[Held, Held]:
    may_s, must_s = set(may), set(must)
    for acq in a.acquires:
        may_s.add(slot(acq.lock.index, acq.mode))
        if _is_true(acq.cond) and not acq.trylock:
            must_s.add(slot(acq.lock.index, acq.mode))
    for lk, cond in a.releases:  # a release drops either mode: a thread holds an rwsem one way
        for k in (slot(lk.index, "w"), slot(lk.index, "r")):
            must_s.discard(k)
            if _is_true(cond):
                may_s.discard(k)
    return frozenset(may_s), frozenset(must_s)


def static_held(program: Program) -> list[list[Held | None]]:
    """[thread][pc] -> held lock indices before the step at pc, or None if state-dependent."""
    out: list[list[Held | None]] = []
    for th, per_pc in zip(program.threads, program.by_label):
        n = len(per_pc) + (0 if th.cyclic else 1)
        may: list[Held | None] = [None] * n
        must: list[Held | None] = [None] * n
        may[0], must[0] = frozenset(), frozenset()
        work = [0]
        while work:
            pc = work.pop()
            if pc >= len(per_pc):
                continue
            m, mu = may[pc], must[pc]
            assert m is not None and mu is not None
            for a in per_pc[pc]:
                nm, nmu = transfer(a, m, mu)
                for t in targets(a.target):
                    if may[t] is None:
                        may[t], must[t] = nm, nmu
                        work.append(t)
                    else:
                        um, umu = may[t] | nm, must[t] & nmu  # type: ignore[operator]
                        if um != may[t] or umu != must[t]:
                            may[t], must[t] = um, umu
                            work.append(t)
        row: list[Held | None] = []
        for pc in range(len(per_pc)):
            row.append(may[pc] if may[pc] is not None and may[pc] == must[pc] else None)
        out.append(row)
    return out


def static_acquire(a: Action, held: Held | None) -> bool:
    """Edges of ``a`` are known from the pc alone: static held set, unconditional acquires."""
    return held is not None and all(_is_true(x.cond) for x in a.acquires)

