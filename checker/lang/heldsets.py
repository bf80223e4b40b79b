"""Which locks a thread holds at each label, when that is known statically.

A forward may/must dataflow over each thread's control flow. Where may == must
the held set is a function of the pc, so lock-order edges of steps there are
derived from "this step fired" alone; elsewhere (conditional locking, a lock
instance chosen by state, trylock) the explorer records held sets at run time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from checker.lang.expr import Bin, Const, Expr, Ite, Nary, Not, Un, Var, children, true, variables
from checker.lang.program_types import Action, Program, Thread

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


S = TypeVar("S")


def forward(th: Thread, per_pc: list[list[Action]], start: S, step: Callable[[Action, S, Path], S],
            join: Callable[[S, S], S], same: Callable[[S, S], bool]) -> list[S | None]:
    """One thread's forward dataflow to a fixpoint: [pc] -> the state before the step at pc (None: no step
    leads there), from ``start`` at pc 0, along every target of every step (``paths``)."""
    at: list[S | None] = [None] * (len(per_pc) + (0 if th.cyclic else 1))
    at[0] = start
    work = [0]
    while work:
        pc = work.pop()
        cur = at[pc]
        if pc >= len(per_pc) or cur is None:
            continue
        for a in per_pc[pc]:
            for t, known in paths(a.target):
                nxt = step(a, cur, known)
                old = at[t]
                merged = nxt if old is None else join(old, nxt)
                if old is None or not same(old, merged):
                    at[t] = merged
                    work.append(t)
    return at[:len(per_pc)]


MayMust = tuple[Held, Held]


def static_held(program: Program) -> list[list[Held | None]]:
    """[thread][pc] -> held lock indices before the step at pc, or None if state-dependent. A pc no step
    reaches gets the empty set: a claim about it is vacuous, and a statement "holds nothing there" keeps
    ``auto:lock-ownership`` inductive where that pc's steps lead to a pc the analysis does know."""

    def step(a: Action, mm: MayMust, known: Path) -> MayMust:
        return transfer(a, mm[0], mm[1], known)

    def join(x: MayMust, y: MayMust) -> MayMust:
        return x[0] | y[0], x[1] & y[1]

    out: list[list[Held | None]] = []
    for th, per_pc in zip(program.threads, program.by_label):
        start: MayMust = (frozenset(), frozenset())
        at = forward(th, per_pc, start, step, join, lambda x, y: x == y)
        # no step leads to a None pc: no run is ever there, any held set is true (vacuously)
        out.append([frozenset() if mm is None else (mm[0] if mm[0] == mm[1] else None) for mm in at])
    return out


# --------------------------------------------------------------------------- conditional holds

HeldWhen = dict[int, "Expr | None"]  # slot -> held exactly when this holds (Const True: held); None: unknown


def same_expr(x: Expr, y: Expr) -> bool:
    """Structural equality (``==`` on expressions builds an expression)."""
    if x is y:
        return True
    if type(x) is not type(y) or getattr(x, "sort", None) != getattr(y, "sort", None):
        return False
    if isinstance(x, Const) and isinstance(y, Const):
        return x.value == y.value
    if isinstance(x, Var) and isinstance(y, Var):
        return x.field is y.field
    if isinstance(x, (Un, Bin, Nary)) and x.op != getattr(y, "op", None):
        return False
    cx, cy = children(x), children(y)
    return len(cx) == len(cy) and all(same_expr(a, b) for a, b in zip(cx, cy))


def _join_when(x: HeldWhen, y: HeldWhen) -> HeldWhen:
    out: HeldWhen = {}
    for k in x.keys() | y.keys():
        a, b = x.get(k), y.get(k)
        out[k] = a if k in x and k in y and a is not None and b is not None and same_expr(a, b) else None
    return out


def _equal_when(x: HeldWhen, y: HeldWhen) -> bool:
    return x.keys() == y.keys() and all(
        (x[k] is None) == (y[k] is None) and (x[k] is None or same_expr(x[k], y[k]))  # type: ignore[arg-type]
        for k in x)


def transfer_when(a: Action, held: HeldWhen, known: Path) -> HeldWhen:
    """Conditional held sets after ``a`` towards one target. A lock taken under a condition the path does not
    fix is held exactly when that condition holds, as long as the thread's own steps leave the condition's
    fields alone; a release under the same condition (structurally) drops it. Anything else is unknown."""
    out = dict(held)
    for acq in a.acquires:
        taken = _holds(acq.cond, known)
        if taken is False:
            continue
        k = slot(acq.lock.index, acq.mode)
        if acq.trylock or k in out:  # a trylock's outcome, or a second acquire of a maybe-held lock
            out[k] = None
        else:
            out[k] = true() if taken else acq.cond
    for lk, cond in a.releases:
        done = _holds(cond, known)
        if done is False:
            continue
        for k in (slot(lk.index, "w"), slot(lk.index, "r")):
            if k not in out:
                continue
            h = out[k]
            if done or (h is not None and same_expr(h, cond)):
                del out[k]
            elif h is not None and _is_true(h):
                out[k] = Not(cond)
            else:
                out[k] = None
    written = set(a.updates)
    for k, h in out.items():  # the step rewrites what the condition reads: it no longer says who holds
        if h is not None and not _is_true(h) and variables(h) & written:
            out[k] = None
    return out


def held_when(program: Program) -> list[list[HeldWhen]]:
    """[thread][pc] -> for each lock slot the thread may hold there, the condition under which it holds it
    (None: unknown); a slot absent is not held. Refines ``static_held`` where locks are taken under a
    state-chosen condition (``kvm->lock`` of ``matrix_mdev->kvm`` when attached): what the prover states in
    ``auto:lock-ownership`` and proves by induction, never trusted."""
    start: HeldWhen = {}
    return [[h if h is not None else {} for h in forward(th, per_pc, start, transfer_when, _join_when, _equal_when)]
            for th, per_pc in zip(program.threads, program.by_label)]


def static_acquire(a: Action, held: Held | None) -> bool:
    """Edges of ``a`` are known from the pc alone: static held set, unconditional acquires."""
    return held is not None and all(_is_true(x.cond) for x in a.acquires)

