"""The concurrent-program layer (the role of PlusCal): how a design declares its program.

A model is a set of threads; each thread runs a bounded script (or a cyclic
program) of labelled atomic steps. Each step names the kernel function it
models. Locks, rw-semaphores, wait flags, object pools and shared fields are
declared once (``ProgramBuilder``, ``ThreadBuilder``); the layer turns every
step into a guarded command over typed state fields (``Action``, in
``checker.lang.program_types``), from which the explorer, the lock-order
analysis, the race and memory-safety checks and the Z3 encoding are all derived.
The types a design writes with are re-exported here, so a design imports one module.

Definition errors are raised early as ``ModelError`` naming the culprit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field as dc_field

from checker.lang.expr import BOOL, And, Const, Expr, If, Not, Or, Select, lift
from checker.lang.layout import Field, Layout, bool_field, enum_field, int_field, ref_field
from checker.lang.program_types import (
    ALIVE,
    FREED,
    LIFECYCLE,
    UNBORN,
    Acquire,
    Action,
    AnyLock,
    Check,
    Lock,
    Member,
    ModelError,
    Permutable,
    Pool,
    Program,
    Property,
    RwSem,
    Thread,
    Wait,
    WaitFlag,
    WriterWaiting,
)

ObjOp = tuple[dict[Field, Expr], list[Check]]
Updates = Mapping[Field, Expr | int | bool]


# ---------------------------------------------------------------- builder


class ProgramBuilder:
    """Declare shared objects, then threads and their steps; ``build()`` freezes."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.layout = Layout()
        self.locks: list[AnyLock] = []
        self.flags: list[WaitFlag] = []
        self.pools: list[Pool] = []
        self.threads: list[ThreadBuilder] = []
        self.properties: list[Property] = []
        self.shared: dict[Field, tuple[AnyLock, ...]] = {}
        self.unsynchronized: dict[Field, str] = {}  # field -> why it needs no lock (not race-checked)
        self._names: set[str] = set()
        self._owner_fields: list[Field] = []
        self._derived: list[Callable[[Program], None]] = []
        self.permutables: list[Permutable] = []
        self.instance_pools: dict[str, list[Member]] = {}

    # ---- declarations
    def _claim(self, name: str, what: str) -> None:
        if name in self._names:
            raise ModelError(f"duplicate {what} name {name!r}")
        self._names.add(name)

    def _owner(self, name: str, group: str) -> Field:
        f = Field(name, "owner", 0, 0, 0, group=group)  # hi fixed at build()
        self._owner_fields.append(f)
        return f

    def mutex(self, name: str, cls: str | None = None) -> Lock:
        self._claim(name, "lock")
        lk = Lock(name, cls or name, self._owner(f"{name}.owner", name), len(self.locks))
        self.locks.append(lk)
        return lk

    def rwsem(self, name: str, cls: str | None = None) -> RwSem:
        self._claim(name, "lock")
        rw = RwSem(name, cls or name, self._owner(f"{name}.writer", name), {}, len(self.locks))
        self.locks.append(rw)
        return rw

    def flag(self, name: str) -> WaitFlag:
        self._claim(name, "wait flag")
        wf = WaitFlag(name, self._owner(name, name))
        self.flags.append(wf)
        return wf

    def var(self, f: Field, protected_by: Sequence[AnyLock] = (), unsynchronized: str = "") -> Expr:
        """Add a state field. Every field two threads access is race-checked (checker/search/races.py);
        ``protected_by`` also declares the locks an access must hold (lock discipline);
        ``unsynchronized`` says why it needs none (atomic, READ_ONCE/WRITE_ONCE) and exempts it."""
        self._claim(f.name, "field")
        self.layout.add(f)
        if protected_by and unsynchronized:
            raise ModelError(f"field {f.name!r}: protected_by and unsynchronized exclude each other")
        if protected_by:
            self.shared[f] = tuple(protected_by)
        if unsynchronized:
            self.unsynchronized[f] = unsynchronized
        return f.var

    def field(self, name: str) -> Field:
        return self.layout[name]

    def pool(self, name: str, slots: Sequence[str], refcount_max: int = 0,
             leak_check: bool = False, init_alive: Sequence[int] = (), init_refs: int = 0,
             ctype: str = "") -> Pool:
        self._claim(name, "pool")
        states = []
        refs: list[Field] | None = [] if refcount_max else None
        for i, slot in enumerate(slots):
            alive = i in init_alive
            st = enum_field(f"{slot}.state", LIFECYCLE, "alive" if alive else "unborn", group=slot)
            self.layout.add(st)
            states.append(st)
            if refs is not None:
                rf = int_field(f"{slot}.refs", 0, refcount_max, init_refs if alive else 0, group=slot)
                self.layout.add(rf)
                refs.append(rf)
        p = Pool(name, tuple(slots), states, refs, leak_check, ctype)
        self.pools.append(p)
        return p

    def thread(self, name: str, cyclic: bool = False) -> ThreadBuilder:
        self._claim(name, "thread")
        tb = ThreadBuilder(self, name, len(self.threads), cyclic)
        self.threads.append(tb)
        return tb

    def permutable(self, name: str, members: Sequence[Member]) -> None:
        """Declare instances that may be permuted together (threads, their fields and locks)."""
        shapes = {(len(m.threads), len(m.fields), len(m.locks), len(m.slots)) for m in members}
        if len(shapes) > 1:
            raise ModelError(f"permutable {name!r}: members differ in shape {sorted(shapes)}")
        self.permutables.append(Permutable(name, list(members)))

    def instance_pool(self, name: str, members: Sequence[Member]) -> None:
        """Declare an instance pool: member k's fields, locks and slots (checker.lang.loops). Members
        of different shapes (a scenario gives one VM an fd field another lacks) are kept: the pool
        is then not one a prover can generalise, which checker.prove.parametric.pools reports."""
        if name in self.instance_pools:
            raise ModelError(f"instance pool {name!r} declared twice")
        self.instance_pools[name] = list(members)

    def always(self, name: str, expr: Expr, description: str, source: str = "") -> None:
        self._prop(name, "always", expr, description, source)

    def sometimes(self, name: str, expr: Expr, description: str, source: str = "") -> None:
        self._prop(name, "sometimes", expr, description, source)

    def _prop(self, name: str, kind: str, expr: Expr, description: str, source: str) -> None:
        if any(p.name == name for p in self.properties):
            raise ModelError(f"duplicate property {name!r}")
        if expr.sort != BOOL:
            raise ModelError(f"property {name!r} is not a boolean expression")
        self.properties.append(Property(name, kind, expr, description, source))

    # ---- object operations (compose into a step's ``objects=``)
    def _slot_update(self, fields: list[Field], i: Expr | int, new: object) -> dict[Field, Expr]:
        idx = lift(i, fields[0].var.sort) if not isinstance(i, Expr) else i
        out: dict[Field, Expr] = {}
        for k, f in enumerate(fields):
            val = new(f.var) if callable(new) else lift(new, f.sort)  # type: ignore[arg-type]
            out[f] = val if isinstance(idx, Const) and idx.value == k else If(idx == k, val, f.var)
            if isinstance(idx, Const) and idx.value != k:
                del out[f]
        return out

    def alloc(self, pool: Pool, i: int, refs: int = 1) -> ObjOp:
        upd = self._slot_update(pool.state, i, ALIVE)
        if pool.refs is not None:
            upd.update(self._slot_update(pool.refs, i, refs))
        bad = Not(Select([f.var for f in pool.state], i, -1) == UNBORN)
        return upd, [Check(bad, "memory-safety", f"{pool.slots[i]} allocated twice")]

    def free(self, pool: Pool, i: Expr | int) -> ObjOp:
        st = Select([f.var for f in pool.state], i, -1)
        upd = self._slot_update(pool.state, i, FREED)
        return upd, [Check(st == FREED, "memory-safety", f"double free of {pool.name}"),
                     Check(st == UNBORN, "memory-safety", f"free of unallocated {pool.name}")]

    def use(self, pool: Pool, i: Expr | int, what: str = "") -> list[Check]:
        """Checks for dereferencing ``pool[i]``: NULL and use after free."""
        idx = i if isinstance(i, Expr) else lift(i, pool.state[0].var.sort)
        st = Select([f.var for f in pool.state], idx, -1)
        if not pool.ctype:
            label = what or pool.name
            return [Check(idx == -1, "memory-safety", f"NULL dereference of {label}"),
                    Check(And(idx != -1, st == FREED), "memory-safety", f"use after free of {label}")]
        # One check per instance, so the message names the object ("struct kvm kvm0") once;
        # the report adds which step freed it (checker.report.objects.freed_by).
        at = f": {what}" if what else ""
        checks = [Check(idx == -1, "memory-safety", f"NULL dereference of {pool.ctype} pointer{at}")]
        for k, slot in enumerate(pool.slots):
            if isinstance(idx, Const) and idx.value != k:
                continue
            checks.append(Check(And(idx == k, pool.state[k].var == FREED), "memory-safety",
                                f"use after free of {pool.ctype} {slot}{at}"))
        return checks

    def get(self, pool: Pool, i: Expr | int) -> ObjOp:
        if pool.refs is None:
            raise ModelError(f"get on pool {pool.name} without refcount")
        rc = self.refcount_expr(pool, i)
        hi = pool.refs[0].hi
        upd = self._slot_update(pool.refs, i, lambda v: v + 1)
        return upd, self.use(pool, i) + [Check(rc >= hi, "range", f"{pool.name} refcount above the model bound {hi}")]

    def put(self, pool: Pool, i: Expr | int, release: bool = True) -> ObjOp:
        """Drop a reference; the last put frees the object when ``release``."""
        if pool.refs is None:
            raise ModelError(f"put on pool {pool.name} without refcount")
        rc = self.refcount_expr(pool, i)
        upd = self._slot_update(pool.refs, i, lambda v: If(v > 0, v - 1, 0))
        if release:
            idx = i if isinstance(i, Expr) else lift(i, pool.state[0].var.sort)
            for k, f in enumerate(pool.state):
                upd[f] = If(And(idx == k, rc == 1), FREED, f.var)
        return upd, self.use(pool, i) + [Check(rc == 0, "memory-safety", f"{pool.name} refcount underflow")]

    def refcount_expr(self, pool: Pool, i: Expr | int) -> Expr:
        return pool.refcount(i)

    def derive(self, fn: Callable[[Program], None]) -> None:
        """Run ``fn`` on the built program, before it is returned: for properties that name
        program points (a thread's pc, an action), which exist only once the program is built.
        ``fn`` adds them with ``Program.add_property``."""
        self._derived.append(fn)

    def build(self) -> Program:
        from checker.lang.build import finish

        program = finish(self)
        for fn in self._derived:
            fn(program)
        return program


class ThreadBuilder:
    """Steps of one thread. Every call appends one labelled atomic step."""

    def __init__(self, prog: ProgramBuilder, name: str, index: int, cyclic: bool) -> None:
        self.prog, self.name, self.index, self.cyclic = prog, name, index, cyclic
        self.steps: list[StepDef] = []
        self.label_names: dict[str, int] = {}
        self._pending_label: str | None = None
        self.operation = ""

    @contextmanager
    def op(self, name: str) -> Iterator[None]:
        """Steps inside belong to kernel path ``name`` (shown in traces)."""
        outer, self.operation = self.operation, name
        try:
            yield
        finally:
            self.operation = outer

    def label(self, name: str) -> None:
        if name in self.label_names or name == self._pending_label:
            raise ModelError(f"thread {self.name}: duplicate label {name!r}")
        if self._pending_label is not None:
            raise ModelError(f"thread {self.name}: two labels {self._pending_label!r}, {name!r} on one step")
        self._pending_label = name

    def _add(self, sd: StepDef) -> int:
        sd.operation = self.operation
        pc = len(self.steps)
        sd.name = self._pending_label or f"{sd.function}#{pc}"
        if self._pending_label:
            self.label_names[self._pending_label] = pc
            self._pending_label = None
        self.steps.append(sd)
        return pc

    # ---- generic step
    def step(self, function: str, text: str, guard: Expr | None = None,
             updates: Mapping[Field, Expr | int | bool] | None = None, objects: Sequence[ObjOp] = (),
             checks: Sequence[Check] = (), jumps: Sequence[tuple[Expr, str]] = (),
             goto: str | None = None, acquires: Sequence[Acquire] = (),
             releases: Sequence[tuple[AnyLock, Expr]] = (), waits: Sequence[Wait] = (),
             branches: Sequence[tuple[Expr | None, str]] = ()) -> int:
        """One atomic step. ``jumps``: (cond, label) tried in order, else ``goto`` or fall through.
        ``branches``: (condition on the pre-state or None, text) segments; a trace shows those that
        hold instead of ``text`` (which still names the whole step, e.g. in lock-order reports)."""
        upd: dict[Field, Expr] = {}
        for f, v in (updates or {}).items():
            upd[f] = lift(v, f.sort) if not isinstance(v, Expr) else v
        chk = list(checks)
        for o_upd, o_chk in objects:
            for f, v in o_upd.items():
                if f in upd:
                    raise ModelError(f"thread {self.name}, {function}: {f.name} updated twice in one step")
                upd[f] = v
            chk.extend(o_chk)
        for f, v in upd.items():
            if v.sort != f.sort:
                raise ModelError(f"thread {self.name}, {function}: {f.name} is {f.sort}, assigned {v.sort}")
        return self._add(StepDef(function=function, text=text, guard=guard, updates=upd, checks=chk,
                                 jumps=list(jumps), goto=goto, acquires=list(acquires),
                                 releases=list(releases), waits=list(waits), branches=list(branches)))

    # ---- locks
    def lock(self, lk: Lock, function: str, when: Expr | None = None, alts: Sequence[Lock] = (),
             index: Expr | None = None) -> int:
        """mutex_lock. ``alts``+``index``: lock ``alts[index]`` (instance chosen by state);
        ``when``: conditional locking (``if (kvm) mutex_lock(&kvm->lock)``)."""
        cands = list(alts) if alts else [lk]
        cond = when if when is not None else Const(True, BOOL)
        t = self.index
        acq, upd, wait_terms = [], {}, []
        for k, c in enumerate(cands):
            this = cond if index is None else And(cond, index == k)
            acq.append(Acquire(c, "w", this))
            upd[c.owner] = If(this, t + 1, c.owner.var)
            wait_terms.append(Wait(c.name, [c.owner], this))
        guard = And(*[Or(Not(w.cond), c.owner.var == 0) for w, c in zip(wait_terms, cands)])
        return self.step(function, f"mutex_lock({lk.name})", guard=guard, updates=upd,
                         acquires=acq, waits=wait_terms)

    def unlock(self, lk: Lock, function: str, when: Expr | None = None, alts: Sequence[Lock] = (),
               index: Expr | None = None) -> int:
        cands = list(alts) if alts else [lk]
        cond = when if when is not None else Const(True, BOOL)
        t = self.index
        upd, rel, checks = {}, [], []
        for k, c in enumerate(cands):
            this = cond if index is None else And(cond, index == k)
            upd[c.owner] = If(this, 0, c.owner.var)
            rel.append((c, this))
            checks.append(Check(And(this, c.owner.var != t + 1), "lock-order",
                                f"bad unlock balance: mutex_unlock({c.name}) by a thread not holding it"))
        return self.step(function, f"mutex_unlock({lk.name})", updates=upd, checks=checks, releases=rel)

    def trylock(self, lk: Lock, function: str, fail: str) -> int:
        """mutex_trylock: take it if free, else jump to ``fail``. Never waits, so no
        lock-order edge into ``lk`` (lockdep's rule)."""
        t = self.index
        free = lk.owner.var == 0
        return self.step(function, f"mutex_trylock({lk.name})", updates={lk.owner: If(free, t + 1, lk.owner.var)},
                         jumps=[(Not(free), fail)], acquires=[Acquire(lk, "w", free, trylock=True)])

    def down_read(self, rw: RwSem, function: str) -> int:
        t = self.index
        guard = And(rw.writer.var == 0, Not(self.prog_writer_waiting(rw)))
        return self.step(function, f"down_read({rw.name})", guard=guard, updates={rw.reader(t): 1},
                         acquires=[Acquire(rw, "r", Const(True, BOOL))])

    def up_read(self, rw: RwSem, function: str) -> int:
        t = self.index
        return self.step(function, f"up_read({rw.name})", updates={rw.reader(t): 0},
                         checks=[Check(rw.reader(t).var == 0, "lock-order", f"bad unlock balance: up_read({rw.name})")],
                         releases=[(rw, Const(True, BOOL))])

    def down_write(self, rw: RwSem, function: str) -> int:
        t = self.index
        guard = And(rw.writer.var == 0, rw.no_readers())
        return self.step(function, f"down_write({rw.name})", guard=guard, updates={rw.writer: t + 1},
                         acquires=[Acquire(rw, "w", Const(True, BOOL))])

    def up_write(self, rw: RwSem, function: str) -> int:
        t = self.index
        return self.step(function, f"up_write({rw.name})", updates={rw.writer: 0},
                         checks=[Check(rw.writer.var != t + 1, "lock-order",
                                       f"bad unlock balance: up_write({rw.name})")],
                         releases=[(rw, Const(True, BOOL))])

    def prog_writer_waiting(self, rw: RwSem) -> Expr:
        """Placeholder resolved at build(): some writer is queued on ``rw``."""
        return WriterWaiting(rw)

    # ---- wait flags (kvm_busy)
    def set_flag(self, wf: WaitFlag, function: str, text: str = "", updates: Updates | None = None) -> int:
        upd: dict[Field, Expr | int | bool] = dict(updates or {})
        upd[wf.holder] = self.index + 1
        return self.step(function, text or f"{wf.name} = true", updates=upd)

    def clear_flag(self, wf: WaitFlag, function: str, text: str = "", updates: Updates | None = None) -> int:
        upd: dict[Field, Expr | int | bool] = dict(updates or {})
        upd[wf.holder] = 0
        return self.step(function, text or f"{wf.name} = false; wake_up_all", updates=upd)

    def wait_clear(self, wf: WaitFlag, function: str) -> int:
        return self.step(function, f"wait_event(!{wf.name})", guard=wf.holder.var == 0,
                         waits=[Wait(wf.name, [wf.holder], Const(True, BOOL))])

    def goto(self, label: str) -> None:
        """Make the previous step continue at ``label`` instead of falling through."""
        if not self.steps:
            raise ModelError(f"thread {self.name}: goto before any step")
        self.steps[-1].goto = label


@dataclass
class StepDef:
    function: str
    text: str
    guard: Expr | None
    updates: dict[Field, Expr]
    checks: list[Check]
    jumps: list[tuple[Expr, str]]
    goto: str | None
    acquires: list[Acquire]
    releases: list[tuple[AnyLock, Expr]]
    waits: list[Wait]
    operation: str = ""
    name: str = ""
    branches: list[tuple[Expr | None, str]] = dc_field(default_factory=list)


__all__ = [
    "Acquire", "Action", "AnyLock", "Check", "Lock", "Member", "ModelError", "Permutable", "Pool", "Program",
    "ProgramBuilder", "Property", "RwSem", "Thread", "ThreadBuilder", "Wait", "WaitFlag", "bool_field", "enum_field",
    "int_field", "ref_field", "ALIVE", "FREED", "UNBORN",
]
