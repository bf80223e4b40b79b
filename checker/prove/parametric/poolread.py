"""Reading a built program's steps and invariants over an instance pool (for ``PoolLifting``).

An expression of the program built with three or more members is *prepared*: every complete class of
copies (checker.prove.parametric.pools) becomes a loop pseudo field, read back as a quantifier over
the members outside the fixed ones (a pointer select: the case at the pointer's element; a find-first
over the pool: the case at a member passing its test, if any: some such member over the pool, the
first in member order in an instance), and every
constant naming a member's slot (or a name no member has: ``NULL``, ``clean``) becomes a value
pseudo field. The terms are built over the pool's sort, or, for an instance of a given size
(``members``), over the integers 0..members-1, every quantifier over the pool a finite conjunction
(checker.prove.parametric.poolinstance compares that with the explicit engine).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import z3

from checker.lang.expr import BOOL, Bin, Const, Expr, ExprError, Ite, Nary, Slot, Un, Var, children
from checker.lang.heldsets import same_expr
from checker.lang.layout import Field
from checker.lang.program_types import Action
from checker.prove.parametric.lift import LiftError, Lifting, PState, _Env
from checker.prove.parametric.pools import Item, Pools, if_chain
from checker.prove.z3expr import range_constraint, to_z3, z3_sort
from checker.search.reduce.renaming import domain_of


@dataclass
class Loop:
    """A complete class of copies read back as a quantifier over the members outside ``fixed``
    (``op``: and, or; select: the case at ``pointer``'s element, else ``default``; choose: a find-first,
    the case at a member passing ``test`` if one does, else ``default``)."""

    op: str
    body: Expr  # the copy at member ``k``, prepared with ``fixed | {k}``
    k: int
    fixed: frozenset[int]
    pointer: Expr | None = None
    default: Expr | None = None
    test: Expr | None = None


def _slot_names(e: Expr) -> tuple[str, ...] | None:
    """The pointer domain of the ``Slot`` values an expression chooses among, if any."""
    if isinstance(e, Slot):
        return e.names
    if isinstance(e, Ite):
        return _slot_names(e.a) or _slot_names(e.b)
    return None


def _mkey(k: int) -> int:
    """A member's key in a binding (kinds are >= 0)."""
    return -1 - k


def _field_of(e: Expr) -> Field | None:
    if isinstance(e, Var) and isinstance(e.field, Field):
        return e.field
    if isinstance(e, Ite):
        return _field_of(e.a) or _field_of(e.b)
    return None


class _PoolEnv(_Env):
    def __getitem__(self, f: Field) -> z3.ExprRef:
        lf = self.lift
        assert isinstance(lf, PoolReading)
        if f in lf.family:
            k, f0 = lf.family[f]
            return self.s.member[f0](self._member(k, f))
        if f in lf.values:
            v = lf.values[f]
            return lf.special(v) if isinstance(v, str) else self._member(v, f)
        if f in lf.loops:
            return lf.loop_term(lf.loops[f], self.s, self.binding)
        if f in lf.rw_bits:
            k, fn, t = lf.rw_bits[f]
            if t not in self.binding:
                raise KeyError(f)
            return self.s.member2[fn](self._member(k, f), self.binding[t])
        if f in lf.quant_member:
            k, readers, queued = lf.quant_member[f]
            g, n = self._member(k, f), lf.var("@q")
            what, _ = lf.quant_fields[f]
            if what == "no-readers":
                return lf._forall_one(n, z3.Not(self.s.member2[readers](g, n)))
            return z3.Not(lf._forall_one(n, z3.Not(self.s.member2[queued](g, n))))
        return super().__getitem__(f)

    def _member(self, k: int, f: Field) -> z3.ExprRef:
        t = self.binding.get(_mkey(k))
        if t is None:
            raise LiftError(f"{f.name}: names member {k} of the pool outside its own member and its loops")
        return t


class PoolReading(Lifting):
    """The expression side of ``PoolLifting`` (see the module docstring)."""

    pool: str
    pools: Pools
    gsort: z3.SortRef
    members: int | None  # an instance of this many members, or None: any number
    member_fn: z3.FuncDeclRef | None
    family: dict[Field, tuple[int, Field]]
    rw_bits: dict[Field, tuple[int, Field, int]]
    quant_member: dict[Field, tuple[int, Field, Field]]
    slot_valued: dict[Field, dict[int, int | str]]
    special_names: list[str]
    loops: dict[Field, Loop]
    values: dict[Field, int | str]
    _value_fields: dict[int | str, Field]
    _prep: dict[tuple[int, frozenset[int], int], tuple[Expr, Expr]]  # by id, the node kept alive (ids get reused)
    # a step's find-first choices (pool sort): built while a step is read, None elsewhere (``PoolLifting.step``)
    _side: list[z3.BoolRef] | None = None
    _chosen: dict[tuple[str, str], tuple[z3.ExprRef, z3.BoolRef]]
    # an invariant's find-first choices while one is read (``PoolLifting.group``): each a bound element
    _inv_chosen: dict[str, tuple[z3.ExprRef, z3.BoolRef]] | None = None
    _slot_fields: dict[tuple[str, ...], Field]  # a Slot domain's pseudo field

    def is_member(self, x: z3.ExprRef) -> z3.BoolRef:
        if self.members is not None:
            return z3.And(x >= 0, x < self.members)
        assert self.member_fn is not None
        return self.member_fn(x)

    def g_forall(self, names: Sequence[str], body: Callable[[list[z3.ExprRef]], z3.BoolRef]) -> z3.BoolRef:
        """``body`` for every tuple of members (quantified, or every tuple of an instance's members)."""
        if self.members is not None:
            return z3.And(*[body([z3.IntVal(i) for i in xs])
                            for xs in itertools.product(range(self.members), repeat=len(names))])
        xs = [self.gvar(n) for n in names]
        return z3.ForAll(xs, z3.Implies(z3.And(*[self.is_member(x) for x in xs]), body(xs)))

    def g_exists(self, name: str, body: Callable[[z3.ExprRef], z3.BoolRef]) -> z3.BoolRef:
        if self.members is not None:
            return z3.Or(*[body(z3.IntVal(i)) for i in range(self.members)])
        x = self.gvar(name)
        return z3.Exists([x], z3.And(self.is_member(x), body(x)))

    # ------------------------------------------------------------ values
    def special(self, name: str) -> z3.ExprRef:
        """A value no member is (``NULL``, ``clean``): distinct constants, negative integers in an instance."""
        if name not in self.special_names:
            raise LiftError(f"{name!r} names no member of {self.pool} and no known value")
        i = self.special_names.index(name)
        return z3.IntVal(-1 - i) if self.members is not None else z3.Const(f"@{self.pool}:{name}", self.gsort)

    def value_sort(self, f: Field) -> z3.SortRef:
        if f.kind == "owner":
            return self.tsort
        return self.gsort if f in self.slot_valued else z3_sort(f.sort)

    def value_literal(self, f: Field, value: int, members: Mapping[int, z3.ExprRef]) -> z3.ExprRef:
        if f in self.slot_valued:
            v = self.slot_valued[f].get(value, "?")
            if isinstance(v, str):
                return self.special(v)
            if _mkey(v) not in members:
                raise LiftError(f"{f.name}: starts naming member {v} of {self.pool}: no initial state for every size")
            return members[_mkey(v)]
        return self.literal(f, value)

    def typed(self, f: Field, v: z3.ExprRef) -> z3.BoolRef:
        if f in self.slot_valued:
            names = sorted({x for x in self.slot_valued[f].values() if isinstance(x, str)})
            return z3.Or(self.is_member(v), *[v == self.special(x) for x in names])
        if f.kind == "owner":
            return self.shared_range(f, v)
        return range_constraint(f, v)

    def gvar(self, name: str) -> z3.ExprRef:
        return z3.Const(name, self.gsort)

    # ------------------------------------------------------------ expressions
    def prepare(self, e: Expr, owner_value: bool = False, fixed: frozenset[int] = frozenset()) -> Expr:
        """Classes of copies -> loop pseudo fields, slot constants -> value pseudo fields (by the domain of the field
        they are compared with or stored into), and ``Lifting.prepare``'s rewrites node by node: the classes are
        found on the program's own nodes (a resolved rwsem placeholder is renamed with its member there, not as
        the pseudo field it becomes). A lock owner value: ``Lifting.prepare``'s thread ids first."""
        return self._pp(super().prepare(e, True) if owner_value else e, fixed, None)

    def _pp(self, e: Expr, fixed: frozenset[int], ctx: Field | None) -> Expr:
        key = (id(e), fixed, id(ctx))
        hit = self._prep.get(key)
        if hit is None:
            hit = self._prep[key] = (e, self._pp1(e, fixed, ctx))
        return hit[1]

    def _pp1(self, e: Expr, fixed: frozenset[int], ctx: Field | None) -> Expr:
        lifted = self._rewrite(e)  # a resolved rwsem placeholder, a comparison of lock owners
        if isinstance(lifted, Bin):  # owners as thread ids; what chooses them is read over the pool still
            return Bin(lifted.op, self._pp(lifted.a, fixed, None), self._pp(lifted.b, fixed, None), lifted.sort)
        if lifted is not None:
            return lifted
        if isinstance(e, Slot):
            return self._value_field(self.pools.shape.slots[self.pool].get(e.names[int(e.value)], "?")).var
        if isinstance(e, Const):
            if ctx is not None and ctx in self.slot_valued:
                return self._value_field(self.slot_valued[ctx].get(int(e.value), "?")).var
            return e
        if isinstance(e, Var):
            return e
        if isinstance(e, Nary):
            groups = self.pools.class_groups([Item(e.op, [x]) for x in e.args], self.pool, fixed)
            looped = {i for per in groups for i in per.values()}
            rest = [self._pp(x, fixed, None) for i, x in enumerate(e.args) if i not in looped]
            for per in groups:  # each class its own quantifier, its first copy the body
                k, i0 = min(per.items(), key=lambda ki: ki[1])
                rest.append(self._loop_field(Loop(e.op, self._pp(e.args[i0], fixed | {k}, None), k, fixed)).var)
            return rest[0] if len(rest) == 1 else Nary(e.op, tuple(rest))
        if isinstance(e, Ite):
            ctx = ctx or (self._values_field(e) if e.sort != BOOL else None)  # the domain of the values it chooses
            sel = self._select(e, fixed, ctx)
            if sel is not None:
                return sel
            chosen = self._choose(e, fixed, ctx)
            if chosen is not None:
                return chosen
            return Ite(self._pp(e.c, fixed, None), self._pp(e.a, fixed, ctx), self._pp(e.b, fixed, ctx), e.sort)
        if isinstance(e, Bin):
            if e.op in ("<", ">") and self._range_check(e):
                return Const(False, BOOL)  # a value of the pool's sort is in range by its type
            if e.op in ("==", "!="):
                a, b = self._pp(e.a, fixed, self._values_field(e.b)), self._pp(e.b, fixed, self._values_field(e.a))
                return Bin(e.op, a, b, e.sort)
            return Bin(e.op, self._pp(e.a, fixed, None), self._pp(e.b, fixed, None), e.sort)
        if isinstance(e, Un):
            return Un(e.op, self._pp(e.a, fixed, None), e.sort)
        raise LiftError(f"cannot lift a {type(e).__name__} over a pool")

    def _range_check(self, e: Bin) -> bool:
        """``p < lo`` or ``p > hi`` of a field naming members (the explicit encoding's bounds)."""
        f, c = self._values_field(e.a), e.b
        if f is None or f not in self.slot_valued or not isinstance(c, Const) or not isinstance(e.a, Var):
            return False
        if (e.op == "<" and c.value == f.lo) or (e.op == ">" and c.value == f.hi):
            return True
        raise LiftError(f"{f.name}: ordered against {c.value} (a pointer into the pool has no order)")

    def _select(self, e: Ite, fixed: frozenset[int], ctx: Field | None) -> Expr | None:
        """An if chain whose cases pin one pointer to each member outside ``fixed``: the case at its element."""
        cases, x = if_chain(e)
        if len(cases) < 2:
            return None
        values = domain_of(ctx) if ctx is not None else None
        copies = self.pools.classes([Item("case", [c, a], domains=[None, values]) for c, a in cases], self.pool, fixed)
        pins = [self._pins(c) for c, _ in cases]
        # every case pins the same pointer, so the cases exclude each other and their order is no matter
        first = pins[0]
        if not copies or first is None or any(p is None or not same_expr(p[0], first[0]) for p in pins):
            return None
        i0 = min(copies)
        pointer, k = pins[i0]  # type: ignore[misc]
        rest = self._pp(x, fixed, ctx)
        for i in reversed(range(len(cases))):
            if i not in copies:
                c, a = cases[i]
                rest = Ite(self._pp(c, fixed, None), self._pp(a, fixed, ctx), rest, e.sort)
        lp = Loop("select", self._pp(cases[i0][1], fixed | {k}, ctx), k, fixed, self._pp(pointer, fixed, None), rest)
        return self._loop_field(lp, e).var

    def _choose(self, e: Ite, fixed: frozenset[int], ctx: Field | None) -> Expr | None:
        """A find-first over the pool (``Pools.choice``): the case at some member passing its test, if one does."""
        per = self.pools.choice(e, self.pool)
        if per is None:
            return None
        cases, default = if_chain(e)
        k, i0 = min(per.items(), key=lambda ki: ki[1])
        c, a = cases[i0]
        lp = Loop("choose", self._pp(a, frozenset({k}), ctx), k, frozenset(), default=self._pp(default, fixed, ctx),
                  test=self._pp(c, frozenset({k}), None))
        return self._loop_field(lp, e).var

    def _values_field(self, e: Expr) -> Field | None:
        """The field whose values ``e`` takes (``_field_of``), or a pseudo field of the pointer domain of the
        ``Slot`` values it chooses among (the mdev a lookup found, compared with a member's slot number)."""
        f = _field_of(e)
        names = _slot_names(e) if f is None else None
        return f if names is None else self._slot_field(names)

    def _slot_field(self, names: tuple[str, ...]) -> Field:
        """The pseudo field of a ``Slot`` domain (its values in ``slot_valued``: ``PoolLifting`` registers every
        domain the program has before anything is read)."""
        pf = self._slot_fields.get(names)
        if pf is None:
            pf = self._slot_fields[names] = Field(f"@slots:{names[0]}..", "ref", -1, len(names) - 1, -1, names=names)
        return pf

    def _pins(self, c: Expr) -> tuple[Expr, int] | None:
        """``c`` is ``p == <a member's slot>``: (p, the member)."""
        if isinstance(c, Bin) and c.op == "==" and isinstance(c.b, Const):
            f = self._values_field(c.a)
            if f is not None and f in self.slot_valued:
                v = self.slot_valued[f].get(int(c.b.value))
                if isinstance(v, int):
                    return c.a, v
        return None

    def _loop_field(self, lp: Loop, like: Expr | None = None) -> Field:
        """A pseudo field standing for the loop, of the sort of a select's values (else bool); a select of a
        field naming members takes its domain."""
        name = f"@loop#{len(self.loops)}"
        src = self._values_field(like) if like is not None else None
        if like is None or like.sort == BOOL:
            pf = Field(name, "bool", 0, 1, 0)
        elif like.sort.kind == "mask":
            pf = Field(name, "mask", 0, (1 << like.sort.width) - 1, 0, width_bits=like.sort.width)
        elif src is not None:
            pf = Field(name, src.kind, src.lo, src.hi, src.init, names=src.names)
        else:
            pf = Field(name, "int", 0, 0, 0)
        if src is not None and src in self.slot_valued:
            self.slot_valued[pf] = self.slot_valued[src]
        self.loops[pf] = lp
        return pf

    def _value_field(self, v: int | str) -> Field:
        if v not in self._value_fields:
            pf = Field(f"@value:{v}", "int", 0, 0, 0)
            self._value_fields[v] = pf
            self.values[pf] = v
        return self._value_fields[v]

    def loop_term(self, lp: Loop, s: PState, binding: Mapping[int, z3.ExprRef]) -> z3.ExprRef:
        fixed = [binding[_mkey(j)] for j in sorted(lp.fixed) if _mkey(j) in binding]
        if len(fixed) != len(lp.fixed):
            raise LiftError("a loop inside a loop whose members are not bound")

        def outside(x: z3.ExprRef) -> z3.BoolRef:
            return z3.And(self.is_member(x), *[x != y for y in fixed])

        def body(x: z3.ExprRef) -> z3.BoolRef:
            return self.term(lp.body, s, {**binding, _mkey(lp.k): x})
        if lp.op == "select":
            assert lp.pointer is not None and lp.default is not None
            p = self.term(lp.pointer, s, binding)
            return z3.If(outside(p), body(p), self.term(lp.default, s, binding))
        if lp.op == "choose":
            assert lp.test is not None and lp.default is not None
            test = lp.test

            def passes(x: z3.ExprRef) -> z3.BoolRef:
                return self.term(test, s, {**binding, _mkey(lp.k): x})
            c = self._chosen_member(passes, s, test)
            return z3.If(passes(c), body(c), self.term(lp.default, s, binding))
        name = f"@x{len(fixed)}_{lp.k}"
        if lp.op == "and":
            return self.g_forall([name], lambda xs: z3.Implies(outside(xs[0]), body(xs[0])))
        return self.g_exists(name, lambda x: z3.And(outside(x), body(x)))

    def _chosen_member(self, passes: Callable[[z3.ExprRef], z3.BoolRef], s: PState, test: Expr) -> z3.ExprRef:
        """The member a find-first stops at. In an instance, the first passing in member order (the list's, as
        the explicit program walks it). Over the pool no order is known among the members: in a step, an element
        of the step that passes wherever some member does (one per test and state, so every read of one lookup
        in a step agrees), its constraint added to the step (``_side``); in an invariant, the member passing
        where at most one does (``PoolLifting.group`` quantifies it: the invariant claims nothing of a state where
        two pass, which the kernel's first-found reading would decide; no-double-assignment, proved, excludes
        them for an APQN's mdev)."""
        if self.members is not None:
            out: z3.ExprRef = z3.IntVal(0)
            for i in reversed(range(self.members)):
                out = z3.If(passes(z3.IntVal(i)), z3.IntVal(i), out)
            return out
        if self._inv_chosen is not None:
            if self.reads(test) & set(self.per_thread):
                raise LiftError("a find-first over the pool testing a thread's locals in an invariant: not read "
                                "over the pool")
            ikey = passes(self.gvar("@probe")).sexpr()
            if ikey not in self._inv_chosen:  # the one member passing, where at most one does (any if none does)
                c = self.gvar(f"@found{len(self._inv_chosen)}")
                self._inv_chosen[ikey] = (c, z3.And(self.is_member(c), self.g_forall(
                    ["@other"], lambda xs: z3.Implies(passes(xs[0]), xs[0] == c))))
            return self._inv_chosen[ikey][0]
        key = (passes(self.gvar("@probe")).sexpr(), s.tag)
        hit = self._chosen.get(key)
        if hit is None and self._side is None:
            raise LiftError("a find-first over the pool outside a step (an invariant naming one): not read "
                            "over the pool")
        if hit is None:
            c = self.gvar(f"@chosen{len(self._chosen)}@{s.tag}")
            hit = self._chosen[key] = (c, z3.And(self.is_member(c), self.g_forall(
                ["@other"], lambda xs: z3.Implies(passes(xs[0]), passes(c)))))
        if self._side is not None and not any(hit[1].eq(x) for x in self._side):
            self._side.append(hit[1])
        return hit[0]

    def term(self, prepared: Expr, s: PState, binding: Mapping[int, z3.ExprRef]) -> z3.BoolRef:
        try:
            return to_z3(prepared, _PoolEnv(self, s, binding))
        except ExprError as err:
            raise LiftError(f"cannot lift by renaming: {err}") from None

    def _fields(self, prepared: Expr, bodies: bool) -> Iterator[Field]:
        """The fields of a prepared expression, loop pseudo fields too, then each loop's pointer and default
        (and, with ``bodies``, its body)."""
        stack = [prepared]
        while stack:
            x = stack.pop()
            f = x.field if isinstance(x, Var) else None
            if isinstance(f, Field):
                yield f
                lp = self.loops.get(f)
                if lp is not None:
                    stack += [y for y in (lp.pointer, lp.default, *((lp.body, lp.test) if bodies else ()))
                              if y is not None]
            stack.extend(children(x))

    def members_named(self, prepared: Expr) -> set[int]:
        """The members a prepared expression names outside its loops (a loop names its fixed members)."""
        out: set[int] = set()
        for f in self._fields(prepared, bodies=False):
            if f in self.loops:
                out |= self.loops[f].fixed
            k = (self.family[f][0] if f in self.family else self.rw_bits[f][0] if f in self.rw_bits else
                 self.quant_member[f][0] if f in self.quant_member else self.values.get(f))
            if isinstance(k, int):
                out.add(k)
        return out

    def reads(self, prepared: Expr) -> set[Field]:
        """Fields read, loops' bodies included, a member's field as its family's."""
        out: set[Field] = set()
        for f in self._fields(prepared, bodies=True):
            if f in self.quant_member:
                out |= set(self.quant_member[f][1:])
            elif f not in self.loops:
                out.add(self._written_as(f))
        return out

    def _written_as(self, f: Field) -> Field:
        """The state component ``f`` is part of: its family, its semaphore function, or itself."""
        if f in self.family:
            return self.family[f][1]
        return self.rw_bits[f][1] if f in self.rw_bits else f

    def writes(self, a: Action) -> set[Field]:
        return {self._written_as(f) for f in a.updates}

