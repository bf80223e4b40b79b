"""What a concurrent program is made of, and the frozen ``Program`` they make up.

The declared shared objects (mutexes, rw-semaphores, wait flags, object pools), the guarded
commands steps compile to (``Action`` with its checks, lock acquisitions and waits), threads,
symmetry declarations and properties. ``checker.lang.program`` is where a design declares them;
``checker.lang.build`` freezes the declarations into a ``Program``; every engine layer reads these
types only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dc_field

from checker.lang.expr import BOOL, Const, Expr, Ite, Or, Select, Var, variables
from checker.lang.layout import Field, Layout, bool_field


class ModelError(ValueError):
    """A model definition is inconsistent (unknown label, duplicate name...)."""


# ---------------------------------------------------------------- declarations


@dataclass(eq=False)
class Lock:
    """A sleeping mutex; ``owner`` holds thread index + 1, 0 when free."""

    name: str
    cls: str
    owner: Field
    index: int = -1

    def held_by(self, t: int) -> Expr:
        return self.owner.var == t + 1

    def is_free(self) -> Expr:
        return self.owner.var == 0


@dataclass(eq=False)
class RwSem:
    """A rw_semaphore: ``writer`` owner (0 = none), one reader bit per reading
    thread, and one "queued" bit per writing thread.

    A down_write that finds the semaphore taken first queues (rwsem's wait
    list; a step of its own, added at build time), then takes it once free.
    Readers do not pass a queued writer (Linux rwsem fairness, and what lockdep
    assumes of non-recursive readers).
    """

    name: str
    cls: str
    writer: Field
    readers: dict[int, Field]  # thread index -> reader bit, created on first use
    index: int = -1
    late: list[Field] = dc_field(default_factory=list)
    queued: dict[int, Field] = dc_field(default_factory=dict)  # writer thread -> queued bit (build time)

    def reader(self, t: int) -> Field:
        return self._bit(self.readers, "reader", t)

    def queue_bit(self, t: int) -> Field:
        return self._bit(self.queued, "queued", t)

    def _bit(self, bits: dict[int, Field], what: str, t: int) -> Field:
        """Thread ``t``'s bit in ``bits``, created on first use (a late field: laid out at build time)."""
        if t not in bits:
            f = bool_field(f"{self.name}.{what}[{t}]", group=self.name)
            bits[t] = f
            self.late.append(f)
        return bits[t]

    def held_by(self, t: int, mode: str = "any") -> Expr:
        w = self.writer.var == t + 1
        if mode == "w":
            return w
        r = self.readers[t].var == 1 if t in self.readers else Const(False, BOOL)
        return r if mode == "r" else Or(w, r)

    def no_readers(self) -> Expr:
        """Resolved at build() over every thread's reader bit."""
        return NoReaders(self)


AnyLock = Lock | RwSem


@dataclass(eq=False)
class WaitFlag:
    """An open-coded lock (the ``kvm_busy`` pattern): holder = setter + 1.

    Setting does not wait; waiters sleep until it is clear. Invisible to the
    lock-order graph, exactly as it is to lockdep.
    """

    name: str
    holder: Field


@dataclass(eq=False)
class Pool:
    """Objects with a lifecycle: unborn -> alive -> freed, and an optional refcount."""

    name: str
    slots: tuple[str, ...]
    state: list[Field]
    refs: list[Field] | None
    leak_check: bool
    ctype: str = ""  # C type for messages ("struct kvm"); with it, violations name the instance

    def alive(self, i: Expr | int) -> Expr:
        return Select([f.var for f in self.state], i, -1) == ALIVE

    def refcount(self, i: Expr | int) -> Expr:
        if self.refs is None:
            raise ModelError(f"pool {self.name} has no refcount")
        return Select([f.var for f in self.refs], i, 0)


UNBORN, ALIVE, FREED = 0, 1, 2
LIFECYCLE = ("unborn", "alive", "freed")


@dataclass
class Check:
    """A safety condition checked whenever its step fires: ``bad`` -> violation."""

    bad: Expr
    prop: str  # built-in property name: memory-safety, lock-order, data-race, range...
    message: str


@dataclass
class Acquire:
    lock: AnyLock
    mode: str  # "w" (mutex or down_write) or "r" (down_read)
    cond: Expr  # acquired only when cond holds (conditional locking)
    trylock: bool = False


@dataclass
class Wait:
    """What a blocked step waits for besides its lock acquisitions (wait flags), for deadlock reports."""

    what: str  # lock or flag name
    holder: list[Field]  # owner fields naming the holder(s)
    cond: Expr  # the step is waiting on this object when cond holds


@dataclass(eq=False)
class Action:
    """One guarded command; the unit of interleaving."""

    aid: int
    thread: int
    label: int
    function: str
    operation: str
    text: str
    guard: Expr
    updates: dict[Field, Expr]
    checks: list[Check]
    acquires: list[Acquire]
    releases: list[tuple[AnyLock, Expr]]
    waits: list[Wait]
    target: Expr  # next pc
    # what a trace shows of this step: the segments whose condition holds in the pre-state, in
    # order (None: always), so a trace shows the branch that ran; empty: ``text``
    branches: list[tuple[Expr | None, str]] = dc_field(default_factory=list)

    def shown_text(self, holds: Callable[[Expr], bool]) -> str:
        """The step as a trace shows it; ``holds`` evaluates a condition on the pre-state."""
        if not self.branches:
            return self.text
        shown = [seg for cond, seg in self.branches if cond is None or holds(cond)]
        return "; ".join(shown) or self.text

    def footprint(self) -> tuple[frozenset[Field], frozenset[Field]]:
        """(fields read, fields possibly written). ``f := If(c, v, f)`` (a write through a
        state-chosen index, or a conditional write) keeps ``f`` where it does not write it: that
        is no read of ``f`` (issue 8 #2: unset_kvm does not read the other VMs' pqap_hook)."""
        reads: set[object] = set(variables(self.guard))
        for f, e in self.updates.items():
            reads |= _update_reads(f, e)
        return (frozenset(x for x in reads if isinstance(x, Field)), frozenset(self.updates))


def _update_reads(f: Field, e: Expr) -> set[object]:
    """Fields read by the update ``f := e``, not counting ``f`` kept unchanged in a branch."""
    if isinstance(e, Var) and e.field is f:
        return set()
    if isinstance(e, Ite):
        return variables(e.c) | _update_reads(f, e.a) | _update_reads(f, e.b)
    return variables(e)


@dataclass(eq=False)
class Thread:
    name: str
    index: int
    pc: Field
    cyclic: bool
    labels: list[str]  # label names, index = pc
    done: int  # pc value meaning "finished" (-1 for cyclic threads)


@dataclass
class Member:
    """One instance of a permutable group: its threads, fields and locks, each list in the same
    order for every member of the group (slot k of one member plays slot k's role in another).
    ``slots``: the pool slots (``kvm0``, ``mdev0``) the member is; a field whose values name slots
    (a ref into the pool, an enum naming them) has its values renamed with the member."""

    threads: list[str]
    fields: list[Field] = dc_field(default_factory=list)
    locks: list[AnyLock] = dc_field(default_factory=list)
    slots: list[str] = dc_field(default_factory=list)


@dataclass
class Permutable:
    """A design's declaration that these members may be permuted together (symmetry reduction).
    The engine (checker.search.reduce.symmetry) keeps the members the scenario makes
    interchangeable and checks that the program is unchanged by swapping them."""

    name: str
    members: list[Member]


@dataclass
class Property:
    name: str
    kind: str  # always | sometimes
    expr: Expr
    description: str
    source: str


# ---------------------------------------------------------------- placeholders resolved by build()


class NoReaders(Expr):
    """Resolved at build time: no thread holds ``rw`` for reading."""

    __slots__ = ("rw",)

    def __init__(self, rw: RwSem) -> None:
        self.rw, self.sort = rw, BOOL


class WriterWaiting(Expr):
    """Resolved at build time into a pc test over every down_write(rw) step."""

    __slots__ = ("rw",)

    def __init__(self, rw: RwSem) -> None:
        self.rw, self.sort = rw, BOOL


# ---------------------------------------------------------------- the frozen program


@dataclass(eq=False)
class Program:
    """A frozen, compiled concurrent program (see build.finish)."""

    name: str
    layout: Layout
    threads: list[Thread]
    actions: list[Action]
    locks: list[AnyLock]
    flags: list[WaitFlag]
    pools: list[Pool]
    properties: list[Property]
    shared: dict[Field, tuple[AnyLock, ...]]
    by_label: list[list[list[Action]]] = dc_field(default_factory=list)  # [thread][pc] -> actions
    permutables: list[Permutable] = dc_field(default_factory=list)  # symmetry declarations
    unsynchronized: dict[Field, str] = dc_field(default_factory=dict)  # exempt from race checks, with why
    # build-time placeholders as resolved (id of the resolved node -> (node, "no-readers"|"writer-waiting",
    # rwsem)): over every thread, which the parametric prover quantifies instead
    quantified: dict[int, tuple[Expr, str, RwSem]] = dc_field(default_factory=dict)
    # instance pools (mdevs, VMs): each member's fields, locks and slot names in one order for every
    # member, as symmetry declares them; the loops marked over a pool (checker.lang.loops) are checked
    # and read back against these (checker.prove.parametric.pools). Not a symmetry claim.
    instance_pools: dict[str, list[Member]] = dc_field(default_factory=dict)

    def add_property(self, name: str, kind: str, expr: Expr, description: str, source: str = "") -> None:
        """Add a derived property (see ProgramBuilder.derive); same rules as always/sometimes."""
        if any(p.name == name for p in self.properties):
            raise ModelError(f"duplicate property {name!r}")
        if kind not in ("always", "sometimes") or expr.sort != BOOL:
            raise ModelError(f"property {name!r}: a boolean always/sometimes property is needed")
        self.properties.append(Property(name, kind, expr, description, source))
