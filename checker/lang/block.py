"""Atomic blocks of statements and the steps they become: the builder's lock and refcount semantics.

A kernel critical section is written as a ``Block`` (C statements run as one
atomic step; reads see earlier writes) plus the locks the step releases and
acquires. Locks may be single instances or *families* -- one instance per pool
slot, e.g. ``kvm->lock`` of every ``struct kvm`` -- addressed by an index that
may be chosen by state (``matrix_mdev->kvm``). ``emit`` turns all of it into one
``ThreadBuilder.step``: guards for blocking acquisitions, owner updates, bad
unlock balance checks, wait-for records for deadlock reports.

Reference counts: ``get_ref``/``put_ref`` on a pool with a refcount. A pool may
name a lock family its destructor takes (``kvm_destroy_vm`` takes
``kvm->lock``): the last put then waits for that instance to be free, and a
thread holding it never returns (recursive locking) -- nothing is freed under
a lock that lives in the object.

This is the only place those semantics live; domain models call it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from checker.lang.expr import BOOL, And, Const, Expr, If, Not, Or, Select, lift
from checker.lang.layout import Field
from checker.lang.program import ProgramBuilder, ThreadBuilder
from checker.lang.program_types import Acquire, AnyLock, Check, Lock, Pool, RwSem, Wait

IntOrExpr = int | Expr
LockOrFamily = AnyLock | Sequence[AnyLock]


def true() -> Expr:
    return Const(True, BOOL)


def eq(x: IntOrExpr, k: int) -> Expr:
    """x == k for an int or an INT expression (constant-folded for ints)."""
    if isinstance(x, int):
        return Const(x == k, BOOL)
    return x == k


class Block:
    """A sequential block of C statements run as one atomic step; reads see earlier writes."""

    def __init__(self) -> None:
        self.upd: dict[Field, Expr] = {}
        self.checks: list[Check] = []
        # (condition, index, lock family): the block's last put of that object runs a destructor
        # that takes the family's instance ``index``
        self.destroys: list[tuple[Expr, IntOrExpr, Sequence[AnyLock], str]] = []

    def __getitem__(self, f: Field) -> Expr:
        return self.upd.get(f, f.var)

    def set(self, f: Field, value: IntOrExpr | bool | Expr, when: Expr | None = None) -> None:
        v = lift(value, f.sort) if not isinstance(value, Expr) else value
        self.upd[f] = v if when is None else If(when, v, self[f])

    def set_at(self, fields: Sequence[Field], idx: IntOrExpr, value: Any, when: Expr | None = None) -> None:
        """fields[idx] = value (idx chosen by state); ``value`` may be a function of the old value."""
        for k, f in enumerate(fields):
            cond = eq(idx, k) if when is None else And(when, eq(idx, k))
            if isinstance(cond, Const) and not cond.value:
                continue
            new = value(self[f]) if callable(value) else value
            self.set(f, new, when=cond)

    def through(self, idx: IntOrExpr, members: Sequence[int], body: Callable[[Block, int], Expr | None]) -> Expr:
        """C statements on the object a pointer names (``matrix_mdev->...``, ``matrix_mdev`` chosen by state):
        ``body(b, k)``, written once, runs for every member k on the values so far; each field it writes then
        takes one case per member, ``If(idx == k, member k's value, ...)``, and so does each check (one per
        message: ``use after free of struct kvm kvm1`` through whichever mdev). Where ``body`` writes only
        under ``idx == k`` this is what running it for each member in turn does (the cases exclude each
        other), in the shape of a loop over the pool rather than a fold through each field's value. Returns
        ``Or`` of what ``body`` returns, each under its case."""
        branches: list[tuple[Expr, Block, Expr | None]] = []
        for k in members:
            case = eq(idx, k)
            if isinstance(case, Const) and not case.value:
                continue
            bk = Block()
            bk.upd = dict(self.upd)
            branches.append((case, bk, body(bk, k)))
        written: dict[Field, None] = {}
        for _, bk, _ in branches:
            written.update((f, None) for f, v in bk.upd.items() if v is not self.upd.get(f))
        for f in written:
            value = self[f]
            for case, bk, _ in reversed(branches):
                if bk.upd.get(f) is not self.upd.get(f):
                    value = If(case, bk.upd[f], value)
            self.upd[f] = value
        same: dict[tuple[str, str], dict[int, list[Expr]]] = {}  # one check per message: per case, its bads
        for n, (case, bk, _) in enumerate(branches):
            for c in bk.checks:
                same.setdefault((c.prop, c.message), {}).setdefault(n, []).append(c.bad)
            self.destroys += [(And(case, last), v, family, what) for last, v, family, what in bk.destroys]
        for (prop, message), per_case in same.items():
            bad: Expr = Const(False, BOOL)
            for n in reversed(per_case):
                case = branches[n][0]
                bad = If(case, Or(*per_case[n]), bad) if len(per_case) > 1 else And(case, Or(*per_case[n]))
            self.checks.append(Check(bad, prop, message))
        return Or(*[And(case, got) for case, _, got in branches if got is not None])

    def check(self, bad: Expr, prop: str, message: str) -> None:
        self.checks.append(Check(bad, prop, message))

    def merge(self, upd: dict[Field, Expr], checks: Sequence[Check]) -> None:
        """Add an object operation of ProgramBuilder (alloc, free)."""
        self.upd.update(upd)
        self.checks.extend(checks)


@dataclass(frozen=True)
class Use:
    """A lock operand: ``lock`` (an instance or a family), taken/released when ``when`` holds, the
    family member ``index`` (chosen by state), ``mode`` "w" (mutex, down_write) or "r" (down_read)."""

    lock: Any
    when: Expr | None = None
    index: IntOrExpr | None = None
    mode: str = "w"


def instances(lk: Any, cond: Expr | None, idx: IntOrExpr | None) -> list[tuple[AnyLock, Expr]]:
    """The lock instances an operand may name, each with the condition under which it does."""
    c = cond if cond is not None else true()
    if isinstance(lk, (list, tuple)):
        if idx is None:
            raise ValueError("a lock family needs an index")
        out = []
        for k, inst in enumerate(lk):
            ck = And(c, eq(idx, k))
            if not (isinstance(ck, Const) and not ck.value):
                out.append((inst, ck))
        return out
    return [(lk, c)]


def family_name(lk: Any, idx: Any = None) -> str:
    if isinstance(lk, (list, tuple)):
        if isinstance(idx, int):
            return str(lk[idx].name)
        return str(lk[0].cls) if lk else "?"
    return str(lk.name)


def is_rw(lk: Any) -> bool:
    inst = lk[0] if isinstance(lk, (list, tuple)) else lk
    return isinstance(inst, RwSem)


def emit(t: ThreadBuilder, function: str, text: str, block: Block | None = None, guard: Expr | None = None,
         jumps: Sequence[tuple[Expr, str]] = (), goto: str | None = None, release: Sequence[Use] = (),
         acquire: Sequence[Use] = (), waits: Sequence[Wait] = (),
         branches: Sequence[tuple[Expr | None, str]] = ()) -> int:
    """One atomic step: ``block`` plus lock releases (first) and acquisitions (blocking: the step is
    enabled only when every acquired instance is free). ``branches``: the text segments a trace shows,
    each under its condition on the pre-state (ThreadBuilder.step)."""
    b = block or Block()
    upd = dict(b.upd)
    checks = list(b.checks)
    rels: list[tuple[AnyLock, Expr]] = []
    acqs: list[Acquire] = []
    wts = list(waits)
    g = [guard] if guard is not None else []
    me = t.index + 1
    for last, v, family, destructor in b.destroys:  # the destructor takes family[v]: wait (self-held: never)
        for inst, c in instances(family, last, v):
            assert isinstance(inst, Lock)
            stuck = And(c, inst.owner.var != 0)
            g.append(Not(stuck))
            wts.append(Wait(f"{inst.name} (in {destructor})", [inst.owner], stuck))
    for u in release:
        for inst, c in instances(u.lock, u.when, u.index):
            if isinstance(inst, RwSem):
                if u.mode == "r":
                    rf = inst.reader(t.index)
                    upd[rf] = If(c, 0, rf.var)
                    checks.append(Check(And(c, rf.var == 0), "lock-order",
                                        f"bad unlock balance: up_read({inst.name})"))
                else:
                    upd[inst.writer] = If(c, 0, inst.writer.var)
                    checks.append(Check(And(c, inst.writer.var != me), "lock-order",
                                        f"bad unlock balance: up_write({inst.name})"))
            else:
                upd[inst.owner] = If(c, 0, inst.owner.var)
                checks.append(Check(And(c, inst.owner.var != me), "lock-order",
                                    f"bad unlock balance: mutex_unlock({inst.name}) by a thread not holding it"))
            rels.append((inst, c))
    for u in acquire:
        for inst, c in instances(u.lock, u.when, u.index):
            if isinstance(inst, RwSem):
                if u.mode == "r":
                    rf = inst.reader(t.index)
                    g.append(Or(Not(c), And(inst.writer.var == 0, Not(t.prog_writer_waiting(inst)))))
                    upd[rf] = If(c, 1, rf.var)
                else:
                    g.append(Or(Not(c), And(inst.writer.var == 0, inst.no_readers())))
                    upd[inst.writer] = If(c, me, inst.writer.var)
                wts.append(Wait(inst.name, [inst.writer], c))
            else:
                g.append(Or(Not(c), inst.owner.var == 0))
                upd[inst.owner] = If(c, me, inst.owner.var)
                wts.append(Wait(inst.name, [inst.owner], c))
            acqs.append(Acquire(inst, u.mode, c))
    return t.step(function, text, guard=And(*g) if g else None, updates=upd, checks=checks,
                  jumps=list(jumps), goto=goto, acquires=acqs, releases=rels, waits=wts, branches=branches)


def lock_text(u: Use) -> str:
    verb = "mutex_lock" if not is_rw(u.lock) else ("down_read" if u.mode == "r" else "down_write")
    return f"{verb}({family_name(u.lock, u.index)})"


def wait_clear(t: ThreadBuilder, function: str, holders: Sequence[Field], names: Sequence[str],
               idx: IntOrExpr, when: Expr | None = None, text: str = "") -> int:
    """wait_event(!flag[idx]) over a family of open-coded wait flags (``kvm_busy`` of one mdev)."""
    c = when if when is not None else true()
    g, wts = [], []
    for k, (h, name) in enumerate(zip(holders, names)):
        ck = And(c, eq(idx, k))
        if isinstance(ck, Const) and not ck.value:
            continue
        g.append(Or(Not(ck), h.var == 0))
        wts.append(Wait(name, [h], ck))
    return t.step(function, text or "wait_event(!flag)", guard=And(*g), waits=wts)


# ---------------------------------------------------------------- reference counts


def use_checks(pb: ProgramBuilder, b: Block, pool: Pool, i: IntOrExpr, what: str, when: Expr | None = None) -> None:
    """Dereferencing ``pool[i]``: NULL and use after free (``what`` names the access in messages)."""
    for c in pb.use(pool, i, what):
        b.check(c.bad if when is None else And(when, c.bad), c.prop, c.message)


def get_ref(pb: ProgramBuilder, b: Block, pool: Pool, i: IntOrExpr, what: str, when: Expr | None = None) -> None:
    """Take a reference (kvm_get_kvm)."""
    assert pool.refs is not None
    c = when if when is not None else true()
    use_checks(pb, b, pool, i, what, when)
    b.check(And(c, pool.refcount(i) >= pool.refs[0].hi), "range", f"{pool.name} refcount above the model bound")
    b.set_at(pool.refs, i, lambda r: r + 1, when=c)


def put_ref(pb: ProgramBuilder, b: Block, pool: Pool, i: IntOrExpr, what: str, when: Expr | None = None,
            destroy_lock: Sequence[AnyLock] = (), destructor: str = "") -> None:
    """Drop a reference (kvm_put_kvm); the last one frees the object. ``destroy_lock``: the family whose
    instance ``i`` the destructor (named ``destructor``) takes: the step waits for it, and a thread
    holding it deadlocks on itself."""
    assert pool.refs is not None
    c = when if when is not None else true()
    use_checks(pb, b, pool, i, what, when)
    rc = Select([b[f] for f in pool.refs], i, 0)
    b.check(And(c, rc == 0), "memory-safety", f"{pool.name} refcount underflow")
    last = And(c, rc == 1)
    if destroy_lock:
        b.destroys.append((last, i, destroy_lock, destructor or f"{pool.name} destructor"))
    b.set_at(pool.state, i, 2, when=last)  # FREED
    b.set_at(pool.refs, i, lambda r: If(r > 0, r - 1, 0), when=c)


__all__ = ["Block", "Use", "emit", "eq", "family_name", "get_ref", "instances", "is_rw", "lock_text", "put_ref",
           "true", "use_checks", "wait_clear"]
