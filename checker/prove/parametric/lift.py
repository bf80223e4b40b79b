"""The spec's program for any number of copies of each thread: the lifted transition relation.

Derived from the built ``Program`` (the very actions the explicit search compiles), by renaming:
every thread of the spec becomes a *kind*; a state of the lifted system has any number of
threads of each kind, each with its own copy of the kind's per-thread fields. Threads are the
elements of an uninterpreted sort ``Thread`` (``kind(n)`` says which script thread ``n`` runs;
``kind`` is rigid; ``nobody`` has kind -1); a lock owner field holds a ``Thread`` (``nobody``:
free), where the explicit engine holds ``index + 1`` (0: free). Quantified variables appear only
as arguments of uninterpreted functions of that sort, so Z3's model-based quantifier
instantiation decides the queries (the fragment Ivy and mypyvy keep to; with arrays it did not).

- per-thread fields (Z3 functions of the thread): the thread's pc, its reader and queued bits
  of each rw_semaphore, and the fields marked ``THREAD_LOCAL`` (C locals, per-thread ghosts);
  every other field is shared and stays one Z3 constant;
- an action of thread ``T`` becomes a template over a thread ``me`` of kind ``T``: its own
  fields are ``f(me)``, the constant ``T + 1`` in a lock owner position is ``me``; its
  post-state is the pre-state with ``me``'s entries replaced;
- the rwsem placeholders resolved over every thread at build time (``Program.quantified``:
  no reader holds it, a writer is queued) become quantifiers over all threads of every kind;
- an invariant is split into its top-level conjuncts; a conjunct naming threads ``T1..Tk``
  (their fields or owner ids) holds for all threads ``n1..nk`` of those kinds, except a
  disjunct that only says "T is at these steps", which some thread of T's kind satisfies.

Anything else that names another thread (which renaming cannot lift) is a ``LiftError``: the
lifting refuses rather than guess.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field

import z3

from checker.lang.build import substitute
from checker.lang.expr import INT, Bin, Const, Expr, ExprError, Ite, Nary, Or, Var, variables
from checker.lang.layout import THREAD_LOCAL, Field
from checker.lang.program import Action, Program, RwSem
from checker.prove.z3expr import literal, range_constraint, to_z3, z3_sort

_CMP = ("==", "!=", "<", "<=", ">", ">=")


class LiftError(ValueError):
    """The program cannot be lifted by renaming (a step names another thread's state)."""


Access = Callable[[z3.ExprRef], z3.ExprRef]
Access2 = Callable[[z3.ExprRef, z3.ExprRef], z3.ExprRef]


@dataclass
class PState:
    """One state of the lifted system: shared fields as terms, per-thread fields as functions of the
    thread (a Z3 function symbol, or a view of one: the post-state of a step is the pre-state's
    function with the acting thread's entry replaced, so no quantified frame axiom is needed)."""

    tag: str
    shared: dict[Field, z3.ExprRef]
    thread: dict[Field, Access]
    member: dict[Field, Access] = dc_field(default_factory=dict)  # pool families (PoolLifting): G -> value
    member2: dict[Field, Access2] = dc_field(default_factory=dict)  # a member's rwsem bits: (G, Thread) -> bool


def _view(old: Access, me: z3.ExprRef, val: z3.ExprRef) -> Access:
    def at(n: z3.ExprRef) -> z3.ExprRef:
        return z3.If(n == me, val, old(n))
    return at


class _Env(Mapping[Field, z3.ExprRef]):
    """Field -> Z3 term for one state and one binding of kinds to thread-id terms (lazy)."""

    def __init__(self, lift: Lifting, s: PState, binding: Mapping[int, z3.ExprRef]) -> None:
        self.lift, self.s, self.binding = lift, s, binding

    def __getitem__(self, f: Field) -> z3.ExprRef:
        lf = self.lift
        if f in self.s.shared:
            return self.s.shared[f]
        if f in self.s.thread:
            t = lf.thread_of[f]
            if t not in self.binding:
                raise KeyError(f)
            return self.s.thread[f](self.binding[t])
        if f in lf.tid_index:
            t = lf.tid_index[f]
            if t not in self.binding:
                raise KeyError(f)
            return self.binding[t]
        if f in lf.quant_fields:
            return lf.quantifier(f, self.s)
        if f in lf.exists_fields:
            k, at = lf.exists_fields[f]
            s = self.s

            def not_at(b: Mapping[int, z3.ExprRef]) -> z3.BoolRef:
                return z3.Not(lf.term(at, s, b))
            return z3.Not(lf.forall({k: lf.var("@e")}, not_at))
        if f is lf.nobody_field:
            return lf.nobody
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

    def __init__(self, program: Program, universe: Mapping[int, Sequence[int]] | None = None,
                 singletons: Sequence[int] = ()) -> None:
        """``universe``: instantiate at a size (kind -> its thread ids): quantifiers over threads
        become finite conjunctions and disjunctions over those ids (checker.prove.parametric.instance).
        ``singletons``: kinds with exactly one thread (closing a file descriptor happens once)."""
        self.program = program
        self.universe = universe
        self.singletons = tuple(singletons)
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
        # proofs: an uninterpreted sort; an instance (``universe``): integers, so concrete ids are distinct
        # literals that simplify() decides (checker.prove.parametric.instance)
        self.tsort: z3.SortRef = z3.IntSort() if universe is not None else z3.DeclareSort("Thread")
        self.nobody: z3.ExprRef = z3.IntVal(0) if universe is not None else z3.Const("@nobody", self.tsort)
        self.nobody_field = Field("@nobody", "int", 0, 0, 0)
        self.kind: Access = z3.Function("@kind", self.tsort, z3.IntSort()).__call__
        if universe is not None:
            self.kind = _kind_table({i: t for t, ids in universe.items() for i in ids})
        self._prepared: dict[int, tuple[Expr, Expr]] = {}
        self.exists_fields: dict[Field, tuple[int, Expr]] = {}  # "some thread of kind k is at these steps"

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
                return self.nobody_field.var
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

    def term(self, prepared: Expr, s: PState, binding: Mapping[int, z3.ExprRef]) -> z3.BoolRef:
        try:
            return to_z3(prepared, _Env(self, s, binding))
        except ExprError as err:
            raise LiftError(f"cannot lift by renaming: {err}") from None

    def quantifier(self, pf: Field, s: PState) -> z3.BoolRef:
        what, rw = self.quant_fields[pf]
        if what == "no-readers":  # no thread holds rw for reading
            return z3.And(*[self.forall({t: self.var("@q")}, _unset(s.thread[f], t)) for t, f in rw.readers.items()])
        # some writer is queued on rw
        return z3.Or(*[z3.Not(self.forall({t: self.var("@q")}, _unset(s.thread[f], t))) for t, f in rw.queued.items()])

    def forall(self, ns: dict[int, z3.ExprRef],
               body: Callable[[Mapping[int, z3.ExprRef]], z3.BoolRef]) -> z3.BoolRef:
        """``body`` for every thread of each kind in ``ns`` (finite over ``universe`` when set)."""
        if self.universe is None:
            guard = z3.And(*[self.is_kind(n, t) for t, n in ns.items()])
            return z3.ForAll(list(ns.values()), z3.Implies(guard, body(ns)))
        combos: list[dict[int, z3.ExprRef]] = [{}]
        for t in ns:
            combos = [{**c, t: z3.IntVal(i)} for c in combos for i in self.universe.get(t, ())]
        return z3.And(*[body(c) for c in combos])

    def var(self, name: str) -> z3.ExprRef:
        """A thread variable (bound by a quantifier, or the acting thread)."""
        return z3.Const(name, self.tsort)

    def is_kind(self, n: z3.ExprRef, t: int) -> z3.BoolRef:
        return self.kind(n) == t

    # ------------------------------------------------------------ states
    def state(self, tag: str) -> PState:
        shared = {f: z3.Const(f"{f.name}@{tag}", self.tsort if f.kind == "owner" else z3_sort(f.sort))
                  for f in self.shared}
        thread: dict[Field, Access] = {}
        for f in self.per_thread:
            fn = z3.Function(f"{f.name}@{tag}", self.tsort, z3_sort(f.sort))
            thread[f] = fn.__call__
        return PState(tag, shared, thread)

    def init(self, s: PState) -> z3.BoolRef:
        """Every shared field at its initial value; every thread of every kind at its first step."""
        terms = [v == self.literal(f, f.init) for f, v in s.shared.items()]
        terms.append(self._per_kind(s, "@i", lambda f, v: v == literal(f.sort, f.init)))
        return z3.And(self.axioms(), *terms)

    def axioms(self) -> z3.BoolRef:
        """Rigid facts about threads: ``nobody`` is no thread; a singleton kind has one thread."""
        terms = [self.kind(self.nobody) == -1]
        if self.universe is None:
            n = self.var("@u")
            for k in self.singletons:
                one = z3.Const(f"@the{k}", self.tsort)
                terms += [self.kind(one) == k, z3.ForAll([n], z3.Implies(self.kind(n) == k, n == one))]
        return z3.And(*terms)

    def _per_kind(self, s: PState, name: str, fn: Callable[[Field, z3.ExprRef], z3.BoolRef],
                  ints_only: bool = False) -> z3.BoolRef:
        """``fn(f, f(n))`` for every thread ``n`` and every per-thread field ``f`` of its kind, as one
        quantifier (Z3 instantiates it once per thread term)."""
        n = self.var(name)
        per_kind: list[z3.BoolRef] = []
        for t in range(self.kinds):
            mine = [fn(f, at(n)) for f, at in s.thread.items()
                    if self.thread_of[f] == t and (f.sort == INT or not ints_only)]
            if mine:
                per_kind.append(z3.Implies(self.is_kind(n, t), z3.And(*mine)))
        return self._forall_one(n, z3.And(*per_kind)) if per_kind else z3.BoolVal(True)

    def literal(self, f: Field, value: int) -> z3.ExprRef:
        """A shared field's initial value (an owner field: free, or a thread id of an instance)."""
        if f.kind == "owner":
            if value and self.universe is None:
                raise LiftError(f"{f.name}: a lock held at start cannot be lifted")
            return self.nobody if not value else z3.IntVal(value)
        return literal(f.sort, value)

    def valid_thread(self, n: z3.ExprRef) -> z3.BoolRef:
        return z3.And(self.kind(n) >= 0, self.kind(n) < self.kinds)

    def shared_range(self, f: Field, v: z3.ExprRef) -> z3.BoolRef:
        if f.kind == "owner":
            return z3.Or(v == self.nobody, self.valid_thread(v))
        return range_constraint(f, v)

    def ranges(self, s: PState, every: bool = True) -> z3.BoolRef:
        """The typing invariant: the axioms, the shared fields' ranges and (``every``) every thread's fields'
        ranges, a quantifier; without it, what a check about given elements needs first, at a fraction of the cost
        (``pprove.instance``)."""
        terms = [self.shared_range(f, v) for f, v in s.shared.items()]
        if every:
            terms.append(self._per_kind(s, "@r", range_constraint, ints_only=True))
        return z3.And(self.axioms(), *[t for t in terms if not z3.is_true(t)])

    # ------------------------------------------------------------ actions
    def guard(self, a: Action, s: PState, me: z3.ExprRef) -> z3.BoolRef:
        """Thread ``me`` of ``a``'s kind is at ``a``'s step and the guard holds."""
        pc = self.program.threads[a.thread].pc
        return z3.And(self.is_kind(me, a.thread), s.thread[pc](me) == a.label,
                      self.term(self.prepare(a.guard), s, {a.thread: me}))

    def bad(self, a: Action, s: PState, me: z3.ExprRef, props: set[str] | None = None) -> z3.BoolRef:
        terms = [self.term(self.prepare(c.bad), s, {a.thread: me}) for c in a.checks
                 if props is None or c.prop in props]
        return z3.Or(*terms) if terms else z3.BoolVal(False)

    def updated(self, a: Action, s: PState, me: z3.ExprRef) -> tuple[dict[Field, z3.ExprRef], dict[Field, z3.ExprRef]]:
        """The values ``a`` by ``me`` writes: (shared field -> value, own per-thread field -> value)."""
        bind = {a.thread: me}
        shared: dict[Field, z3.ExprRef] = {}
        own: dict[Field, z3.ExprRef] = {}
        for f, e in a.updates.items():
            self.place(a, s, f, self.term(self.prepare(e, owner_value=f.kind == "owner"), s, bind), shared, own)
        return shared, own

    def place(self, a: Action, s: PState, f: Field, val: z3.ExprRef, shared: dict[Field, z3.ExprRef],
              own: dict[Field, z3.ExprRef]) -> None:
        """File the value ``a`` writes to ``f``: a shared field, or the step's own thread's field."""
        if f in s.shared:
            shared[f] = val
        elif self.thread_of[f] == a.thread:
            own[f] = val
        else:
            raise LiftError(f"{a.function}: {a.text}: writes {f.name} of another thread")

    def step(self, a: Action, s: PState, me: z3.ExprRef) -> tuple[z3.BoolRef, PState]:
        """``a`` taken by thread ``me``: (enabled, no check fails, post-state typed; the post-state)."""
        shared, own = self.updated(a, s, me)
        typed = [self.shared_range(f, v) for f, v in shared.items()]
        typed += [range_constraint(f, v) for f, v in own.items() if f.sort == INT]
        ok = z3.And(self.guard(a, s, me), z3.Not(self.bad(a, s, me)), *[t for t in typed if not z3.is_true(t)])
        thread = dict(s.thread)
        for f, v in own.items():
            thread[f] = _view(s.thread[f], me, v)
        return ok, PState(s.tag + "'", {**s.shared, **shared}, thread)

    def successor(self, s: PState, tag: str, me: z3.ExprRef, sel: z3.ArithRef,
                  actions: Sequence[Action]) -> tuple[z3.BoolRef, PState]:
        """One step of any action (``sel``) by thread ``me`` (BMC): fresh shared constants, the
        per-thread functions a view on ``me``'s fresh entry."""
        nxt = self.state(tag)
        own = {f: z3.Const(f"{f.name}@{tag}", z3_sort(f.sort)) for f in self.per_thread}
        post = PState(tag, nxt.shared, {f: _view(s.thread[f], me, v) for f, v in own.items()})
        alts = []
        for a in actions:
            ok, p = self.step(a, s, me)
            eqs = [nxt.shared[f] == p.shared[f] for f in self.shared]
            eqs += [own[f] == p.thread[f](me) for f in self.per_thread]
            alts.append(z3.And(sel == a.aid, ok, *eqs))
        return z3.Or(*alts), post

    # ------------------------------------------------------------ invariants
    def groups(self, e: Expr) -> list[tuple[tuple[int, ...], list[Expr]]]:
        """``e``'s conjuncts (prepared), grouped by the kinds they name."""
        groups: dict[tuple[int, ...], list[Expr]] = {}
        for c in conjuncts(e):
            p = self._existential(self.prepare(c))
            groups.setdefault(tuple(self.threads_named(p)), []).append(p)
        return list(groups.items())

    def _existential(self, p: Expr) -> Expr:
        """In a disjunction, a disjunct that only says "thread T is at one of these steps" (T named
        nowhere else in it) reads "some thread of T's kind is there": an existential over T's kind.
        (Every other mention of a thread reads "every thread of its kind", ``conjunct``.)"""
        if not (isinstance(p, Nary) and p.op == "or"):
            return p
        flat = _disjuncts(p)
        named = [set(self.threads_named(x)) for x in flat]
        pcs = {th.pc: th.index for th in self.program.threads}
        pure = [len(ks) == 1 and _at_steps(x, pcs) for x, ks in zip(flat, named)]
        others = {k for ks, ok in zip(named, pure) if not ok for k in ks}
        out: list[Expr] = []
        for x, ks, ok in zip(flat, named, pure):
            if ok and not ks & others:
                pf = Field(f"@some-thread-at#{len(self.exists_fields)}", "bool", 0, 1, 0)
                self.exists_fields[pf] = (next(iter(ks)), x)
                out.append(pf.var)
            else:
                out.append(x)
        return Or(*out) if len(self.exists_fields) and any(o is not x for o, x in zip(out, flat)) else p

    def group(self, named: tuple[int, ...], ps: list[Expr], s: PState) -> z3.BoolRef:
        """One group of conjuncts for every thread of each kind it names (one quantifier)."""
        def body(b: Mapping[int, z3.ExprRef]) -> z3.BoolRef:
            return z3.And(*[self.term(p, s, b) for p in ps])
        return body({}) if not named else self.forall({t: self.var(f"@n{t}") for t in named}, body)

    def invariant(self, e: Expr, s: PState) -> z3.BoolRef:
        """``e`` lifted: its conjuncts grouped by the kinds they name, one quantifier per group."""
        return z3.And(*[self.group(named, ps, s) for named, ps in self.groups(e)])

    def _forall_one(self, n: z3.ExprRef, body: z3.BoolRef) -> z3.BoolRef:
        """``body`` (already guarded by kinds) for every thread ``n`` (each id of the universe when set)."""
        if self.universe is None:
            return z3.ForAll([n], body)
        ids = sorted({i for xs in self.universe.values() for i in xs})
        return z3.And(*[z3.substitute(body, (n, z3.IntVal(i))) for i in ids])

    def conjunct(self, c: Expr, s: PState) -> z3.BoolRef:
        """``c`` for every thread of each kind it names."""
        p = self.prepare(c)
        named = self.threads_named(p)
        if not named:
            return self.term(p, s, {})

        def body(b: Mapping[int, z3.ExprRef]) -> z3.BoolRef:
            return self.term(p, s, b)

        return self.forall({t: self.var(f"@n{t}") for t in named}, body)

    def reads(self, prepared: Expr) -> set[Field]:
        """The fields a prepared invariant part reads (a step writing none of them cannot break it)."""
        return {v for v in variables(prepared) if isinstance(v, Field)}

    def writes(self, a: Action) -> set[Field]:
        return set(a.updates)

    def check_liftable(self) -> None:
        """Translate every action once (raises LiftError naming the first step that cannot be lifted)."""
        s = self.state("lift")
        me = self.var("@me")
        for a in self.program.actions:
            self.step(a, s, me)


Body = Callable[[Mapping[int, z3.ExprRef]], z3.BoolRef]


def _kind_table(kinds: Mapping[int, int]) -> Access:
    """``kind`` of an instance: each thread id's kind, -1 for any other integer (``nobody`` is 0)."""
    def kind(n: z3.ExprRef) -> z3.ExprRef:
        out: z3.ExprRef = z3.IntVal(-1)
        for i, t in sorted(kinds.items()):
            out = z3.If(n == i, t, out)
        return out
    return kind


def _unset(at: Access, t: int) -> Body:
    """The bit of the thread bound to kind ``t`` is clear."""
    def body(b: Mapping[int, z3.ExprRef]) -> z3.BoolRef:
        return z3.Not(at(b[t]))
    return body


def conjuncts(e: Expr) -> list[Expr]:
    if isinstance(e, Nary) and e.op == "and":
        return [c for x in e.args for c in conjuncts(x)]
    return [e]


def _disjuncts(e: Expr) -> list[Expr]:
    if isinstance(e, Nary) and e.op == "or":
        return [d for x in e.args for d in _disjuncts(x)]
    return [e]


def _at_steps(e: Expr, pcs: Mapping[Field, int]) -> bool:
    """``e`` is ``pc == label`` (or a disjunction of those) of one thread's pc."""
    if isinstance(e, Bin) and e.op == "==" and isinstance(e.a, Var) and isinstance(e.b, Const):
        return e.a.field in pcs
    if isinstance(e, Nary) and e.op == "or":
        return all(_at_steps(x, pcs) for x in e.args)
    return False


def _owner_valued(e: Expr) -> bool:
    if isinstance(e, Var):
        return isinstance(e.field, Field) and e.field.kind == "owner"
    if isinstance(e, Ite):
        return _owner_valued(e.a) or _owner_valued(e.b)
    return False


__all__ = ["LiftError", "Lifting", "PState", "conjuncts"]
