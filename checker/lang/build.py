"""Freeze a ProgramBuilder into a Program: resolve labels, pcs and placeholders."""

from __future__ import annotations

import difflib
from collections.abc import Callable

from checker.lang.expr import BOOL, And, Bin, Const, Expr, If, Ite, Nary, Not, Or, Un
from checker.lang.layout import Field, int_field
from checker.lang.program import ProgramBuilder, StepDef
from checker.lang.program_types import (
    Action,
    Check,
    Lock,
    ModelError,
    NoReaders,
    Program,
    RwSem,
    Thread,
    WriterWaiting,
)


def substitute(e: Expr, fn: Callable[[Expr], Expr | None]) -> Expr:
    """Rebuild ``e`` bottom-up, replacing nodes for which ``fn`` returns an Expr."""
    r = fn(e)
    if r is not None:
        return r
    if isinstance(e, Un):
        a = substitute(e.a, fn)
        return e if a is e.a else Un(e.op, a, e.sort)
    if isinstance(e, Bin):
        a, b = substitute(e.a, fn), substitute(e.b, fn)
        return e if (a is e.a and b is e.b) else Bin(e.op, a, b, e.sort)
    if isinstance(e, Nary):
        args = tuple(substitute(x, fn) for x in e.args)
        return e if all(x is y for x, y in zip(args, e.args)) else Nary(e.op, args)
    if isinstance(e, Ite):
        c, a, b = substitute(e.c, fn), substitute(e.a, fn), substitute(e.b, fn)
        return e if (c is e.c and a is e.a and b is e.b) else Ite(c, a, b, e.sort)
    return e


def did_you_mean(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def finish(pb: ProgramBuilder) -> Program:
    if not pb.threads:
        raise ModelError(f"model {pb.name}: no threads")
    nthreads = len(pb.threads)
    layout = pb.layout
    for f in pb._owner_fields:
        f.hi = nthreads
        f.names = tuple(t.name for t in pb.threads)
        layout.add(f)
    for tb in pb.threads:  # every blocking down_write can queue: one bit per (rwsem, writer thread)
        for sd in tb.steps:
            for a in sd.acquires:
                if isinstance(a.lock, RwSem) and a.mode == "w" and not a.trylock:
                    a.lock.queue_bit(tb.index)
    for lk in pb.locks:
        if isinstance(lk, RwSem):
            for f in lk.late:
                layout.add(f)

    threads: list[Thread] = []
    for tb in pb.threads:
        n = len(tb.steps)
        if n == 0:
            raise ModelError(f"thread {tb.name}: no steps")
        if tb._pending_label is not None:
            raise ModelError(f"thread {tb.name}: label {tb._pending_label!r} names no step")
        hi = n - 1 if tb.cyclic else n
        names = tuple([s.name for s in tb.steps] + ([] if tb.cyclic else ["<done>"]))
        pc = int_field(f"{tb.name}.pc", 0, hi, 0, group=tb.name, names=names)
        pc.kind = "pc"
        layout.add(pc)
        labels = [s.name for s in tb.steps]
        threads.append(Thread(tb.name, tb.index, pc, tb.cyclic, labels, -1 if tb.cyclic else n))
    layout.freeze()

    quantified: dict[int, tuple[Expr, str, RwSem]] = {}

    def resolve(node: Expr) -> Expr | None:
        out: Expr
        if isinstance(node, NoReaders):
            out = And(*[f.var == 0 for f in node.rw.readers.values()])
            quantified[id(out)] = (out, "no-readers", node.rw)
            return out
        if isinstance(node, WriterWaiting):
            out = Or(*[f.var == 1 for f in node.rw.queued.values()])
            quantified[id(out)] = (out, "writer-waiting", node.rw)
            return out
        return None

    actions: list[Action] = []
    by_label: list[list[list[Action]]] = []
    for tb, th in zip(pb.threads, threads):
        per_pc: list[list[Action]] = []
        for p, sd in enumerate(tb.steps):
            act = _action(pb, tb.name, th, p, sd, tb.label_names, len(actions), resolve)
            actions.append(act)
            per_pc.append([act])
            for q in _queue_alternatives(act, len(actions), resolve):
                actions.append(q)
                per_pc[-1].append(q)
        by_label.append(per_pc)
    return Program(pb.name, layout, threads, actions, list(pb.locks), list(pb.flags), list(pb.pools),
                   list(pb.properties), dict(pb.shared), by_label, list(pb.permutables),
                   dict(pb.unsynchronized), quantified, dict(pb.instance_pools))


def _queue_alternatives(act: Action, aid: int, resolve: Callable[[Expr], Expr | None]) -> list[Action]:
    """rwsem_down_write_slowpath: a writer finding the semaphore taken joins its wait
    list (a step of its own), after which new readers queue behind it. Taking the
    semaphore clears the writer's queued bit."""
    out: list[Action] = []
    for acq in act.acquires:
        rw = acq.lock
        if not isinstance(rw, RwSem) or acq.mode != "w" or acq.trylock:
            continue
        q = rw.queued[act.thread]
        act.updates[q] = If(acq.cond, 0, q.var) if not _is_true(acq.cond) else Const(0, q.sort)
        taken = Not(substitute(And(rw.writer.var == 0, rw.no_readers()), resolve))
        out.append(Action(aid + len(out), act.thread, act.label, act.function, act.operation,
                          f"down_write({rw.name}): contended, queue as waiting writer",
                          And(acq.cond, taken, q.var == 0), {q: Const(1, q.sort)}, [], [], [], [],
                          Const(act.label, act.target.sort)))
    return out


def _is_true(e: Expr) -> bool:
    return isinstance(e, Const) and e.value is True


def _target(label: str, labels: dict[str, int], thread: str, function: str) -> int:
    if label not in labels:
        raise ModelError(f"thread {thread}, {function}: unknown label {label!r}"
                         + did_you_mean(label, sorted(labels)))
    return labels[label]


def _action(pb: ProgramBuilder, tname: str, th: Thread, p: int, sd: StepDef, labels: dict[str, int],
            aid: int, resolve: Callable[[Expr], Expr | None]) -> Action:
    n = len(pb.threads[th.index].steps)
    if sd.goto is not None:
        default = _target(sd.goto, labels, tname, sd.function)
    elif p + 1 < n:
        default = p + 1
    else:
        default = 0 if th.cyclic else n
    target: Expr = Const(default, th.pc.sort)
    for cond, lab in reversed(sd.jumps):
        target = If(cond, _target(lab, labels, tname, sd.function), target)
    target = substitute(target, resolve)
    guard = substitute(sd.guard, resolve) if sd.guard is not None else Const(True, BOOL)
    updates: dict[Field, Expr] = {f: substitute(v, resolve) for f, v in sd.updates.items()}
    if th.pc in updates:
        raise ModelError(f"thread {tname}, {sd.function}: steps may not write the pc directly")
    updates[th.pc] = target
    checks = [Check(substitute(c.bad, resolve), c.prop, c.message) for c in sd.checks]
    if not th.cyclic:
        finishing = target == th.done
        for lk in pb.locks:
            checks.append(Check(And(finishing, _held_after(lk, th.index, updates)), "lock-order",
                                f"{tname} finished while holding {lk.name} "
                                "(lockdep: lock held when returning to user space)"))
    for f in updates:
        if f.kind in ("int", "ref", "enum") and not _const_in_range(updates[f], f):
            checks.append(Check(Or(updates[f] < f.lo, updates[f] > f.hi), "range",
                                f"{f.name} leaves its declared range {f.lo}..{f.hi}"))
    checks = [c for c in checks if not (isinstance(c.bad, Const) and c.bad.value is False)]
    branches = [(None if c is None else substitute(c, resolve), seg) for c, seg in sd.branches]
    return Action(aid, th.index, p, sd.function, sd.operation, sd.text, guard, updates, checks,
                  sd.acquires, sd.releases, sd.waits, target, branches)


def _held_after(lk: object, t: int, updates: dict[Field, Expr]) -> Expr:
    """Whether thread ``t`` holds ``lk`` after a step with ``updates`` (values from the pre-state)."""
    if isinstance(lk, Lock):
        return updates.get(lk.owner, lk.owner.var) == t + 1
    assert isinstance(lk, RwSem)
    w = updates.get(lk.writer, lk.writer.var) == t + 1
    if t in lk.readers:
        r = lk.readers[t]
        return Or(w, updates.get(r, r.var) == 1)
    return w


def _const_in_range(e: Expr, f: Field) -> bool:
    """Cheap static proof that ``e`` stays in ``f``'s range (constants, If of constants, f itself)."""
    if isinstance(e, Const):
        if not f.lo <= int(e.value) <= f.hi:
            raise ModelError(f"constant {e.value} assigned to {f.name} outside {f.lo}..{f.hi}")
        return True
    if isinstance(e, Ite):
        return _const_in_range(e.a, f) and _const_in_range(e.b, f)
    from checker.lang.expr import Var

    return isinstance(e, Var) and e.field is f


__all__ = ["did_you_mean", "finish", "substitute"]
