"""Which locks a thread holds at each label, when that is known statically.

A forward may/must dataflow over each thread's control flow. Where may == must
the held set is a function of the pc, so lock-order edges of steps there are
derived from "this step fired" alone; elsewhere (conditional locking, a lock
instance chosen by state, trylock) the explorer records held sets at run time.
"""

from __future__ import annotations

from checker.lang.expr import Const, Expr, Ite, Un
from checker.lang.program_types import Action, Program

Held = frozenset[int]  # 2 * lock index, + 1 when held for reading (rwsem readers)


def slot(lock_index: int, mode: str) -> int:
    return 2 * lock_index + (1 if mode == "r" else 0)


def _is_true(e: Expr) -> bool:
    return isinstance(e, Const) and e.value is True


Path = dict[int, bool]  # id(condition) -> its value on the way to a target


def _literal(e: Expr, value: bool = True) -> tuple[Expr, bool]:
    """``e`` with its ``not`` layers stripped, and the value the stripped condition has when ``e`` is ``value``."""
    while isinstance(e, Un) and e.op == "not":
        e, value = e.a, not value
    return e, value


def paths(e: Expr, known: Path | None = None) -> list[tuple[int, Path]]:
    """Every pc value a step's target can produce, with the jump conditions known on the way to it
    (``If(c, x, y)``: c true towards x, false towards y; ``not c`` is c with the value flipped)."""
    known = known or {}
    if isinstance(e, Const):
        return [(int(e.value), known)]
    if isinstance(e, Ite):
        c, v = _literal(e.c)
        return paths(e.a, {**known, id(c): v}) + paths(e.b, {**known, id(c): not v})
    raise ValueError("a step target must be built from constants and If")


def _holds(cond: Expr, known: Path) -> bool | None:
    """The condition's value where the path fixes it (the same expression object as a jump's, or its ``not``),
    else None."""
    if _is_true(cond):
        return True
    cond, v = _literal(cond)
    got = known.get(id(cond))
    return None if got is None else got == v


def transfer(a: Action, may: Held, must: Held, known: Path | None = None) -> tuple[Held, Held]:
    """Held sets after ``a`` towards one target; ``known``: the jump conditions on the way there, so a
    lock taken ``when c`` by a step that jumps away when ``not c`` is held on the fall-through only."""
    may_s, must_s = set(may), set(must)
    known = known or {}
    for acq in a.acquires:
        taken = _holds(acq.cond, known)
        if taken is False:
            continue
        may_s.add(slot(acq.lock.index, acq.mode))
        if taken and not acq.trylock:
            must_s.add(slot(acq.lock.index, acq.mode))
    for lk, cond in a.releases:  # a release drops either mode: a thread holds an rwsem one way
        done = _holds(cond, known)
        if done is False:
            continue
        for k in (slot(lk.index, "w"), slot(lk.index, "r")):
            must_s.discard(k)
            if done:
                may_s.discard(k)
    return frozenset(may_s), frozenset(must_s)


def static_held(program: Program) -> list[list[Held | None]]:
    """[thread][pc] -> held lock indices before the step at pc, or None if state-dependent. A pc no step
    reaches gets the empty set: a claim about it is vacuous, and a statement "holds nothing there" keeps
    ``auto:lock-ownership`` inductive where that pc's steps lead to a pc the analysis does know."""
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
                for t, known in paths(a.target):
                    nm, nmu = transfer(a, m, mu, known)
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
            if may[pc] is None:  # no step leads here: no run is ever at pc, any held set is true (vacuously)
                row.append(frozenset())
            else:
                row.append(may[pc] if may[pc] == must[pc] else None)
        out.append(row)
    return out


def static_acquire(a: Action, held: Held | None) -> bool:
    """Edges of ``a`` are known from the pc alone: static held set, unconditional acquires."""
    return held is not None and all(_is_true(x.cond) for x in a.acquires)

