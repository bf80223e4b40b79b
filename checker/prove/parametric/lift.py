"""The spec's program for any number of copies of each thread: the lifted transition relation.

Derived from the built ``Program`` (the very actions the explicit search compiles), by renaming:
every thread of the spec becomes a *kind*; a state of the lifted system has any number of
threads of each kind, each with its own copy of the kind's per-thread fields. Threads are
identified by integers >= 1 (``kind[n]`` says which script thread ``n`` runs; ``kind`` is rigid);
a lock owner field holds a thread id (0: free), as the explicit engine holds ``index + 1``.

- per-thread fields (Z3 arrays indexed by thread id): the thread's pc, its reader and
  queued bits of each rw_semaphore, and the fields marked ``THREAD_LOCAL`` (C locals, per-thread
  ghosts); every other field is shared and stays one Z3 constant;
- an action of thread ``T`` becomes a template over a thread ``me`` of kind ``T``: its own
  fields are ``arr[me]``, the constant ``T + 1`` in a lock owner position is ``me``;
- the rwsem placeholders resolved over every thread at build time (``Program.quantified``:
  no reader holds it, a writer is queued) become quantifiers over all threads of every kind;
- an invariant is split into its top-level conjuncts; a conjunct naming threads ``T1..Tk``
  (their fields or owner ids) holds for all threads ``n1..nk`` of those kinds.

Anything else that names another thread (which renaming cannot lift) is a ``LiftError``: the
lifting refuses rather than guess.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import z3

from checker.lang.build import substitute
from checker.lang.expr import INT, Bin, Const, Expr, ExprError, Ite, Nary, Var, variables
from checker.lang.layout import THREAD_LOCAL, Field
from checker.lang.program import Action, Program, RwSem
from checker.prove.z3expr import literal, range_constraint, to_z3, z3_sort

_CMP = ("==", "!=", "<", "<=", ">", ">=")


class LiftError(ValueError):
    """The program cannot be lifted by renaming (a step names another thread's state)."""


@dataclass
class PState:
    """One step of a lifted path: shared fields as constants, per-thread fields as arrays."""

    tag: str
    shared: dict[Field, z3.ExprRef]
    arrays: dict[Field, z3.ArrayRef]


class _Env(Mapping[Field, z3.ExprRef]):
    """Field -> Z3 term for one state and one binding of kinds to thread-id terms (lazy)."""

    def __init__(self, lift: Lifting, s: PState, binding: Mapping[int, z3.ArithRef]) -> None:
        self.lift, self.s, self.binding = lift, s, binding

    def __getitem__(self, f: Field) -> z3.ExprRef:
        lf = self.lift
        if f in self.s.shared:
            return self.s.shared[f]
        if f in self.s.arrays:
            t = lf.thread_of[f]
            if t not in self.binding:
                raise KeyError(f)
            return z3.Select(self.s.arrays[f], self.binding[t])
        if f in lf.tid_index:
            t = lf.tid_index[f]
            if t not in self.binding:
                raise KeyError(f)
            return self.binding[t]
        if f in lf.quant_fields:
            return lf.quantifier(f, self.s)
        raise KeyError(f)

    def __contains__(self, f: object) -> bool:
        try:
            self[f]  # type: ignore[index]
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[Field]:
        return iter(())

    def __len__(self) -> int:
        return 0


class Lifting:
    """The lifted relation of one Program (see the module docstring)."""

    def __init__(self, program: Program, universe: Mapping[int, Sequence[int]] | None = None) -> None:
        """``universe``: instantiate at a size (kind -> its thread ids): quantifiers over threads
        become finite conjunctions and disjunctions over those ids (checker.prove.parametric.instance)."""
        self.program = program
        self.universe = universe
        self.kinds = len(program.threads)
        self.thread_of: dict[Field, int] = {}
        by_name = {th.name: th.index for th in program.threads}
        for th in program.threads:
            self.thread_of[th.pc] = th.index
        for lk in program.locks:
            if isinstance(lk, RwSem):
                for t, f in [*lk.readers.items(), *lk.queued.items()]:
                    self.thread_of[f] = t
        for f in program.layout.fields:
            owner = f.meta.get(THREAD_LOCAL)
            if isinstance(owner, str):
                if owner not in by_name:
                    raise LiftError(f"{f.name}: local of thread {owner!r}, which the program does not have")
                self.thread_of[f] = by_name[owner]
        self.shared = [f for f in program.layout.fields if f not in self.thread_of]
        self.per_thread = [f for f in program.layout.fields if f in self.thread_of]
        self.tids = [Field(f"@thread{j}", "int", 0, 0, 0) for j in range(self.kinds)]
        self.tid_index = {f: j for j, f in enumerate(self.tids)}
        self.quant_fields: dict[Field, tuple[str, RwSem]] = {}
        self._quant_of: dict[int, Field] = {}
        for key, (_node, what, rw) in program.quantified.items():
            pf = Field(f"@{what}:{rw.name}#{key}", "bool", 0, 1, 0)
            self.quant_fields[pf] = (what, rw)
            self._quant_of[key] = pf
        self.kind = z3.Array("@kind", z3.IntSort(), z3.IntSort())
        self._prepared: dict[int, tuple[Expr, Expr]] = {}

    # ------------------------------------------------------------ expressions
    def prepare(self, e: Expr, owner_value: bool = False) -> Expr:
        """``e`` with the resolved rwsem placeholders and the owner-position thread constants
        replaced by pseudo fields (``owner_value``: ``e`` is itself a lock owner value)."""
        key = id(e) * 2 + int(owner_value)
        hit = self._prepared.get(key)
        if hit is None:
            out = self._owner_value(e) if owner_value else substitute(e, self._rewrite)
            hit = self._prepared[key] = (e, out)
        return hit[1]

    def _rewrite(self, node: Expr) -> Expr | None:
        pf = self._quant_of.get(id(node))
        if pf is not None:
            return pf.var
        if isinstance(node, Bin) and node.op in _CMP and (_owner_valued(node.a) or _owner_valued(node.b)):
            return Bin(node.op, self._owner_value(node.a), self._owner_value(node.b), node.sort)
        return None

    def _owner_value(self, e: Expr) -> Expr:
        if isinstance(e, Const):
            c = int(e.value)
            if c == 0:
                return e
            if not 1 <= c <= self.kinds:
                raise LiftError(f"thread id {c} outside the program's threads")
            return self.tids[c - 1].var
        if isinstance(e, Var):
            return e
        if isinstance(e, Ite):
            return Ite(substitute(e.c, self._rewrite), self._owner_value(e.a), self._owner_value(e.b), e.sort)
        raise LiftError(f"a lock owner used in arithmetic ({type(e).__name__}): cannot rename threads")

    def threads_named(self, prepared: Expr) -> list[int]:
        """The threads (kinds) a prepared expression names: their fields or their owner ids."""
        out: set[int] = set()
        for f in variables(prepared):
            if isinstance(f, Field):
                if f in self.thread_of:
                    out.add(self.thread_of[f])
                elif f in self.tid_index:
                    out.add(self.tid_index[f])
        return sorted(out)

    def term(self, prepared: Expr, s: PState, binding: Mapping[int, z3.ArithRef]) -> z3.BoolRef:
        try:
            return to_z3(prepared, _Env(self, s, binding))
        except ExprError as err:
            raise LiftError(f"cannot lift by renaming: {err}") from None

    def quantifier(self, pf: Field, s: PState) -> z3.BoolRef:
        what, rw = self.quant_fields[pf]
        if what == "no-readers":  # no thread holds rw for reading
            return z3.And(*[self.forall({t: z3.Int("@q")}, _unset(s.arrays[f], t)) for t, f in rw.readers.items()])
        # some writer is queued on rw
        return z3.Or(*[z3.Not(self.forall({t: z3.Int("@q")}, _unset(s.arrays[f], t))) for t, f in rw.queued.items()])

    def forall(self, ns: dict[int, z3.ArithRef],
               body: Callable[[Mapping[int, z3.ArithRef]], z3.BoolRef]) -> z3.BoolRef:
        """``body`` for every thread of each kind in ``ns`` (finite over ``universe`` when set)."""
        if self.universe is None:
            guard = z3.And(*[self.is_kind(n, t) for t, n in ns.items()])
            return z3.ForAll(list(ns.values()), z3.Implies(guard, body(ns)))
        combos: list[dict[int, z3.ArithRef]] = [{}]
        for t in ns:
            combos = [{**c, t: z3.IntVal(i)} for c in combos for i in self.universe.get(t, ())]
        return z3.And(*[body(c) for c in combos])

    def is_kind(self, n: z3.ArithRef, t: int) -> z3.BoolRef:
        return z3.And(n >= 1, self.kind[n] == t)

    # ------------------------------------------------------------ states
    def state(self, tag: str) -> PState:
        shared = {f: z3.Const(f"{f.name}@{tag}", z3_sort(f.sort)) for f in self.shared}
        arrays = {f: z3.Array(f"{f.name}@{tag}", z3.IntSort(), z3_sort(f.sort)) for f in self.per_thread}
        return PState(tag, shared, arrays)

    def init(self, s: PState) -> z3.BoolRef:
        terms = [v == literal(f.sort, f.init) for f, v in s.shared.items()]
        terms += [a == z3.K(z3.IntSort(), literal(f.sort, f.init)) for f, a in s.arrays.items()]
        return z3.And(*terms)

    def valid_thread(self, n: z3.ArithRef) -> z3.BoolRef:
        return z3.And(n >= 1, self.kind[n] >= 0, self.kind[n] < self.kinds)

    def shared_range(self, f: Field, v: z3.ExprRef) -> z3.BoolRef:
        if f.kind == "owner":
            return z3.Or(v == 0, self.valid_thread(v))
        return range_constraint(f, v)

    def ranges(self, s: PState) -> z3.BoolRef:
        terms = [self.shared_range(f, v) for f, v in s.shared.items()]
        for f, a in s.arrays.items():
            if f.sort == INT:
                terms.append(self.forall({self.thread_of[f]: z3.Int("@r")}, _in_range(f, a, self.thread_of[f])))
        return z3.And(*[t for t in terms if not z3.is_true(t)])

    # ------------------------------------------------------------ actions
    def guard(self, a: Action, s: PState, me: z3.ArithRef) -> z3.BoolRef:
        """Thread ``me`` of ``a``'s kind is at ``a``'s step and the guard holds."""
        pc = self.program.threads[a.thread].pc
        return z3.And(self.is_kind(me, a.thread), z3.Select(s.arrays[pc], me) == a.label,
                      self.term(self.prepare(a.guard), s, {a.thread: me}))

    def bad(self, a: Action, s: PState, me: z3.ArithRef, props: set[str] | None = None) -> z3.BoolRef:
        terms = [self.term(self.prepare(c.bad), s, {a.thread: me}) for c in a.checks
                 if props is None or c.prop in props]
        return z3.Or(*terms) if terms else z3.BoolVal(False)

    def post(self, a: Action, s: PState, me: z3.ArithRef) -> tuple[dict[Field, z3.ExprRef], dict[Field, z3.ExprRef]]:
        """The post-state of ``a`` by ``me``: (shared field -> value, per-thread field -> array)."""
        bind = {a.thread: me}
        shared = dict(s.shared)
        arrays: dict[Field, z3.ExprRef] = dict(s.arrays)
        for f, e in a.updates.items():
            val = self.term(self.prepare(e, owner_value=f.kind == "owner"), s, bind)
            if f in s.shared:
                shared[f] = val
            elif self.thread_of[f] == a.thread:
                arrays[f] = z3.Store(s.arrays[f], me, val)
            else:
                raise LiftError(f"{a.function}: {a.text}: writes {f.name} of another thread")
        return shared, arrays

    def post_ranges(self, a: Action, s: PState, me: z3.ArithRef,
                    post: tuple[dict[Field, z3.ExprRef], dict[Field, z3.ExprRef]]) -> z3.BoolRef:
        shared, arrays = post
        terms = []
        for f in a.updates:
            if f in s.shared:
                terms.append(self.shared_range(f, shared[f]))
            elif f.sort == INT:
                terms.append(range_constraint(f, z3.Select(arrays[f], me)))
        return z3.And(*[t for t in terms if not z3.is_true(t)])

    def action_trans(self, a: Action, s: PState, t: PState, me: z3.ArithRef) -> z3.BoolRef:
        """``a`` taken by thread ``me``: enabled, no check fails, updates and frame, typed post-state."""
        post = self.post(a, s, me)
        eqs = [t.shared[f] == v for f, v in post[0].items()] + [t.arrays[f] == v for f, v in post[1].items()]
        return z3.And(self.guard(a, s, me), z3.Not(self.bad(a, s, me)), self.post_ranges(a, s, me, post), *eqs)

    # ------------------------------------------------------------ invariants
    def invariant(self, e: Expr, s: PState) -> z3.BoolRef:
        return z3.And(*[self.conjunct(c, s) for c in conjuncts(e)])

    def conjunct(self, c: Expr, s: PState) -> z3.BoolRef:
        """``c`` for every thread of each kind it names."""
        p = self.prepare(c)
        named = self.threads_named(p)
        if not named:
            return self.term(p, s, {})

        def body(b: Mapping[int, z3.ArithRef]) -> z3.BoolRef:
            return self.term(p, s, b)

        return self.forall({t: z3.Int(f"@n{t}") for t in named}, body)

    def check_liftable(self) -> None:
        """Translate every action once (raises LiftError naming the first step that cannot be lifted)."""
        s, t = self.state("lift"), self.state("lift'")
        me = z3.Int("@me")
        for a in self.program.actions:
            self.action_trans(a, s, t, me)


Body = Callable[[Mapping[int, z3.ArithRef]], z3.BoolRef]


def _unset(arr: z3.ArrayRef, t: int) -> Body:
    """The bit of the thread bound to kind ``t`` is clear."""
    def body(b: Mapping[int, z3.ArithRef]) -> z3.BoolRef:
        return z3.Not(z3.Select(arr, b[t]))
    return body


def _in_range(f: Field, arr: z3.ArrayRef, t: int) -> Body:
    def body(b: Mapping[int, z3.ArithRef]) -> z3.BoolRef:
        return range_constraint(f, z3.Select(arr, b[t]))
    return body


def conjuncts(e: Expr) -> list[Expr]:
    if isinstance(e, Nary) and e.op == "and":
        return [c for x in e.args for c in conjuncts(x)]
    return [e]


def _owner_valued(e: Expr) -> bool:
    if isinstance(e, Var):
        return isinstance(e.field, Field) and e.field.kind == "owner"
    if isinstance(e, Ite):
        return _owner_valued(e.a) or _owner_valued(e.b)
    return False


__all__ = ["LiftError", "Lifting", "PState", "conjuncts"]
