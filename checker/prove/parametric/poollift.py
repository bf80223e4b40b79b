"""The lifted relation for any number of instances of one pool: the members become a sort.

``Lifting`` lifts threads; ``PoolLifting`` also lifts one instance pool (``Program.instance_pools``,
say the guests): the program, built with three or more members, is read back with the pool as an
uninterpreted sort ``G`` of any size.

- Each member's fields are one *family*: the fields at one position of every member's list become
  one function ``G -> value`` (named after member 0's field). A field whose values name member
  slots (``matrix_mdev->kvm``, a queue's data owner, a thread's ``kvm`` local) takes values in
  ``G``: a value naming member k's slot is that member's element, the other names of its domain
  (``NULL``, ``clean``, ``host``) are distinct elements that are no member (``@member`` is false).
- A thread whose operation names a member (``instance_owners``) has it as its *own* member:
  ``own(n)``, rigid, any member. Its steps read and write their own member's fields at ``own(me)``.
- Every other member a step names must be a copy in a complete class (checker.prove.parametric.pools:
  "no other mdev has the queue", a lock or value chosen by a pointer, a store through one): the
  class reads back as a quantifier over the members outside the ones already fixed, its body the
  copy of one member with that member's parts at the bound element. A select whose cases pin one
  pointer to each member reads the case at the pointer's element.
- An invariant's conjunct naming members (outside classes) holds for all distinct members (a
  thread's own member, where the conjunct names its thread, is ``own(n)``).

Anything else (a step naming a particular other member, a member's field in arithmetic with another
member's, a shared field whose initial value names a member) is a ``LiftError``: no guess.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import z3

from checker.lang.expr import BOOL, Expr, Or, Slot, children
from checker.lang.layout import THREAD_LOCAL, Field
from checker.lang.program import Program, RwSem
from checker.lang.program_types import Action, Member
from checker.prove.parametric.lift import Access, Access2, LiftError, Lifting, PState, _kind_table
from checker.prove.parametric.poolread import Loop, PoolReading, _mkey
from checker.prove.parametric.pools import Item, Owners, Pools, action_items
from checker.search.reduce.renaming import Refused, Renaming, domain_of, identity, lock_fields


def _slot_domains(program: Program) -> list[tuple[str, ...]]:
    """The pointer domains of the ``Slot`` constants in the program's steps and properties."""
    out: dict[tuple[str, ...], None] = {}
    seen: set[int] = set()
    stack: list[Expr] = [p.expr for p in program.properties]
    for a in program.actions:
        stack += [it for item in action_items(a) for it in item.exprs]
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, Slot):
            out[e.names] = None
        stack.extend(children(e))
    return list(out)


def _renamed_init(r: Renaming, f: Field) -> int:
    """``f``'s initial value with the renaming applied (a local naming member 0 starts naming member k)."""
    table = r.table(f)
    return f.init if table is None else table[f.init - f.lo] + f.lo


class PoolLifting(PoolReading):
    def __init__(self, program: Program, pool: str, owners: Owners, singletons: Sequence[int] = (),
                 members_at: int | None = None, orbits: Mapping[str, str] | None = None,
                 threads_at: Mapping[int, tuple[int, int | None]] | None = None) -> None:
        """``members_at``: an instance of that many members (integers for members, every thread of the program
        one id: checker.prove.parametric.poolinstance); None: any number of members. An instance of another
        size than the built one names its threads (``threads_at``: thread id -> its kind and own member or
        None: checker.prove.parametric.poolsizes).
        ``singletons``: kinds of an operation run once; one with an own member runs once *per member*, counted
        over its ``orbits`` (the kinds of one operation on different members: thread name -> label)."""
        members = program.instance_pools.get(pool)
        if not members or len(members) < 3:
            raise LiftError(f"pool {pool!r}: a program built with at least three members is needed")
        self.pool = pool
        self.pools = Pools(program)
        if not self.pools.shape.uniform[pool]:
            raise LiftError(f"pool {pool!r}: its members differ in shape")
        self.members = members_at
        if members_at is not None and members_at != len(members) and threads_at is None:
            raise LiftError(f"pool {pool!r}: an instance of another size than the built one ({len(members)} "
                            "members) names its threads")
        self.gsort = z3.IntSort() if members_at is not None else z3.DeclareSort(f"Pool:{pool}")
        self.member_fn = None if members_at is not None else z3.Function(f"@member:{pool}", self.gsort, z3.BoolSort())
        self.family: dict[Field, tuple[int, Field]] = {}  # member field -> (member, the family: member 0's field)
        # a member's rw-semaphore: thread t's reader (queued) bit is one function of (member, thread) per
        # position, "thread n holds member g's semaphore for reading": bit field -> (member, function, kind)
        self.rw_bits: dict[Field, tuple[int, Field, int]] = {}
        self.rw_of: dict[int, tuple[int, Field, Field]] = {}  # id(member rwsem) -> (member, readers, queued)
        rw_funcs: dict[int, tuple[Field, Field]] = {}  # a position's two functions
        for k, m in enumerate(members):
            for f, f0 in zip(m.fields, members[0].fields):
                self.family[f] = (k, f0)
            for pos, (lk, lk0) in enumerate(zip(m.locks, members[0].locks)):
                for f, f0 in zip(lock_fields(lk), lock_fields(lk0)):
                    self.family[f] = (k, f0)
                if isinstance(lk, RwSem):
                    readers, queued = rw_funcs.setdefault(pos, (Field(f"{lk0.name}.reader[*]", "bool", 0, 1, 0),
                                                                Field(f"{lk0.name}.queued[*]", "bool", 0, 1, 0)))
                    self.rw_of[id(lk)] = (k, readers, queued)
                    for bits, fn in ((lk.readers, readers), (lk.queued, queued)):
                        for t, f in bits.items():
                            self.rw_bits[f] = (k, fn, t)
        slots = self.pools.shape.slots[pool]
        self.slot_valued: dict[Field, dict[int, int | str]] = {}  # value -> member, or a name no member has
        for f in program.layout.fields:
            d = domain_of(f)
            if d is None or d[0] < 0 or not any(n in slots for n in d[1]):
                continue
            table: dict[int, int | str] = {i + d[0]: slots.get(n, n) for i, n in enumerate(d[1])}
            if f.kind == "ref":
                table[-1] = "NULL"
            self.slot_valued[f] = table
        self._slot_fields = {}
        for names in _slot_domains(program):  # what lookups return: their values are known from the start
            values: dict[int, int | str] = {-1: "NULL", **{i: slots.get(n, n) for i, n in enumerate(names)}}
            self.slot_valued[self._slot_field(names)] = values
        self.special_names = sorted({x for t in self.slot_valued.values() for x in t.values() if isinstance(x, str)})
        self.loops: dict[Field, Loop] = {}
        self.values: dict[Field, int | str] = {}  # value pseudo field -> the member or name it stands for
        self._value_fields: dict[int | str, Field] = {}
        self._prep = {}
        self._chosen = {}
        universe: dict[int, list[int]] | None = None
        if threads_at is not None:
            universe = {}
            for n, (kind, _) in sorted(threads_at.items()):
                universe.setdefault(kind, []).append(n)
        elif members_at is not None:
            universe = {th.index: [th.index + 1] for th in program.threads}
        self._index = {th.name: th.index for th in program.threads}
        owner = {th.index: owners[th.name][pool] for th in program.threads if pool in owners.get(th.name, {})}
        super().__init__(program, universe, [t for t in singletons if t not in owner])
        self.owner = owner
        labels = orbits or {}
        self.once_per_member: dict[str, list[int]] = {}
        for t in singletons:
            if t in owner:
                name = program.threads[t].name
                self.once_per_member.setdefault(labels.get(name, name), []).append(t)
        own_ids = ({n: k for n, (_, k) in threads_at.items() if k is not None} if threads_at is not None else
                   {t + 1: k for t, k in self.owner.items()})
        self.own_fn = (z3.Function(f"@own:{pool}", self.tsort, self.gsort).__call__ if members_at is None else
                       _kind_table(own_ids))
        self.shared = [f for f in self.shared if f not in self.family]
        self.per_thread = [f for f in self.per_thread if f not in self.family and f not in self.rw_bits]
        self.families = list(dict.fromkeys(f0 for _, f0 in self.family.values()))
        self.rw_functions = list(dict.fromkeys(fn for _, r, q in self.rw_of.values() for fn in (r, q)))
        # "no reader holds it" / "a writer is queued" of a member's semaphore: over every thread, at the member
        self.quant_member = {pf: self.rw_of[id(rw)] for pf, (_, rw) in self.quant_fields.items()
                             if id(rw) in self.rw_of}
        self._check_symmetric_init()
        self.action_class = self._action_classes()
        self.orbit_swaps: dict[int, Renaming] = {}  # member k -> members 0 and k swapped, orbit threads too
        self.dropped = self._orbit_copies(labels) if members_at is None else set()
        self._forms: dict[int, tuple[Expr, set[str]]] = {}

    def _orbit_copies(self, labels: Mapping[str, str]) -> set[int]:
        """Kinds of an orbit (one operation on each member) other than member 0's, where each is member 0's
        renamed (the two members swapped, threads and their locals with them; checker.search.reduce.renaming):
        member 0's kind, its own member any element, stands for them; they have no thread."""
        program = self.program
        n = len(program.instance_pools[self.pool])
        per: dict[str, dict[int, int]] = {}
        for t, k in self.owner.items():
            per.setdefault(labels.get(program.threads[t].name, program.threads[t].name), {})[k] = t
        full = sorted(label for label, kinds in per.items() if sorted(kinds) == list(range(n)))
        locals_of: dict[int, dict[str, Field]] = {}
        for f in program.layout.fields:
            owner = f.meta.get(THREAD_LOCAL)
            if isinstance(owner, str):
                locals_of.setdefault(self._index[owner], {})[f.name.replace(owner, "@", 1)] = f
        keys = {label: sorted(locals_of.get(per[label][0], {})) for label in full}
        if any(sorted(locals_of.get(per[label][k], {})) != keys[label] for label in full for k in range(n)):
            return set()
        members = [Member([program.threads[per[label][k]].name for label in full],
                          [*m.fields, *[locals_of[per[label][k]][x] for label in full for x in keys[label]]],
                          list(m.locks), list(m.slots))
                   for k, m in enumerate(program.instance_pools[self.pool])]
        same = identity(program)
        dropped: set[int] = set()
        for k in range(1, n):
            swap = list(range(n))
            swap[0], swap[k] = k, 0
            r = self.orbit_swaps[k] = Renaming.of_members(program, members, swap)
            for label in full:
                rep, other = per[label][0], per[label][k]
                try:
                    mine = sorted(repr(r.action(a)) for a in program.actions if a.thread == rep)
                except Refused:
                    continue
                theirs = sorted(repr(same.action(a)) for a in program.actions if a.thread == other)
                starts = all(_renamed_init(r, locals_of[rep][x]) == locals_of[other][x].init for x in keys[label])
                if mine == theirs and starts:
                    dropped.add(other)
        return dropped

    def _check_symmetric_init(self) -> None:
        for f, (k, f0) in self.family.items():
            if f in self.slot_valued:
                a, b = self.slot_valued[f].get(f.init), self.slot_valued[f0].get(f0.init)
                same = (a == k and b == 0) or (isinstance(a, str) and a == b)
            else:
                same = f.init == f0.init
            if not same:
                raise LiftError(f"{f.name}: member {k} starts unlike member 0 ({f0.name}): no initial state "
                                "for every size")

    def axioms(self) -> z3.BoolRef:
        """Specials are distinct non-members; every thread's own member is a member."""
        specials = [self.special(x) for x in self.special_names]
        terms = [z3.Not(self.is_member(x)) for x in specials]
        if len(specials) > 1:
            terms.append(z3.Distinct(*specials))
        if self.members is None:
            n, n2 = self.var("@own-n"), self.var("@own-n2")
            terms.append(z3.ForAll([n], self.is_member(self.own_fn(n))))
            terms += [z3.ForAll([n], self.kind(n) != d) for d in sorted(self.dropped)]  # member 0's kind runs them
            for kinds in self.once_per_member.values():  # at most one thread of the operation per member
                of = [z3.Or(*[self.is_kind(x, t) for t in kinds]) for x in (n, n2)]
                terms.append(z3.ForAll([n, n2], z3.Implies(z3.And(*of, self.own_fn(n) == self.own_fn(n2)), n == n2)))
        return z3.And(super().axioms(), *terms)

    # ------------------------------------------------------------ states
    def state(self, tag: str) -> PState:
        shared = {f: z3.Const(f"{f.name}@{tag}", self.value_sort(f)) for f in self.shared}
        thread = {f: z3.Function(f"{f.name}@{tag}", self.tsort, self.value_sort(f)).__call__ for f in self.per_thread}
        member = {f: z3.Function(f"{f.name}[*]@{tag}", self.gsort, self.value_sort(f)).__call__ for f in self.families}
        member2 = {f: z3.Function(f"{f.name}@{tag}", self.gsort, self.tsort, z3.BoolSort()).__call__
                   for f in self.rw_functions}
        return PState(tag, shared, thread, member, member2)

    def _own_binding(self, t: int, n: z3.ExprRef) -> dict[int, z3.ExprRef]:
        return {t: n, _mkey(self.owner[t]): self.own_fn(n)} if t in self.owner else {t: n}

    def init(self, s: PState) -> z3.BoolRef:
        terms = [v == self.value_literal(f, f.init, {}) for f, v in s.shared.items()]
        n = self.var("@i")
        per_kind = []
        for t in range(self.kinds):
            b = self._own_binding(t, n)
            mine = [at(n) == self.value_literal(f, f.init, b) for f, at in s.thread.items() if self.thread_of[f] == t]
            if mine:
                per_kind.append(z3.Implies(self.is_kind(n, t), z3.And(*mine)))
        if per_kind:
            terms.append(self._forall_one(n, z3.And(*per_kind)))
        if s.member:
            terms.append(self.g_forall(["@ix"], lambda xs: z3.And(*[
                at(xs[0]) == self.value_literal(f, f.init, {_mkey(0): xs[0]}) for f, at in s.member.items()])))
        rn = self.var("@in")
        for at2 in s.member2.values():  # no member's semaphore held
            terms.append(self.g_forall(["@ix"], self._none_held(at2, rn)))
        return z3.And(self.axioms(), *terms)

    def _none_held(self, at2: Access2, n: z3.ExprRef) -> Callable[[list[z3.ExprRef]], z3.BoolRef]:
        def body(xs: list[z3.ExprRef]) -> z3.BoolRef:
            return self._forall_one(n, z3.Not(at2(xs[0], n)))
        return body

    def ranges(self, s: PState, every: bool = True) -> z3.BoolRef:
        terms = [self.typed(f, v) for f, v in s.shared.items()]
        n = self.var("@r")
        per = [z3.Implies(self.is_kind(n, self.thread_of[f]), self.typed(f, at(n)))
               for f, at in s.thread.items() if f.sort != BOOL]
        if per and every:
            terms.append(self._forall_one(n, z3.And(*per)))
        fam = [(f, at) for f, at in s.member.items() if f.sort != BOOL]
        if fam and every:
            terms.append(self.g_forall(["@rx"], lambda xs: z3.And(*[self.typed(f, at(xs[0])) for f, at in fam])))
        return z3.And(self.axioms(), *[t for t in terms if not z3.is_true(t)])

    # ------------------------------------------------------------ actions
    def _action_classes(self) -> dict[int, tuple[int, int]]:
        """Sibling steps (one thread, one label) that are copies, one per member outside the thread's own
        (``Pools.sibling_classes``): action id -> (its class's first step, the member it is the copy for)."""
        out: dict[int, tuple[int, int]] = {}
        for t, per_pc in enumerate(self.program.by_label):
            fixed = frozenset({self.owner[t]}) if t in self.owner else frozenset()
            for acts in per_pc:
                if len(acts) < 2:
                    continue
                for per in self.pools.sibling_classes(acts, self.pool, fixed):
                    rep = acts[min(per.values())].aid
                    out |= {acts[i].aid: (rep, k) for k, i in per.items()}
        return out

    def context(self, a: Action, me: z3.ExprRef,
                pick: int | None = None) -> tuple[dict[int, z3.ExprRef], frozenset[int], list[z3.BoolRef]]:
        """(binding, fixed members, constraints) of a step by ``me``: its own member at ``own(me)``; a step
        of a class of sibling copies at a member picked among the others (one fresh element per step)."""
        b = self._own_binding(a.thread, me)
        fixed = {self.owner[a.thread]} if a.thread in self.owner else set()
        extra: list[z3.BoolRef] = []
        cls = self.action_class.get(a.aid)
        if cls is not None:
            _, k = cls
            x = self.gvar(f"@pick{a.aid}") if pick is None else z3.IntVal(pick)
            extra += [self.is_member(x), *[x != b[_mkey(o)] for o in sorted(fixed)]]
            b[_mkey(k)] = x
            fixed.add(k)
        return b, frozenset(fixed), extra

    def guard(self, a: Action, s: PState, me: z3.ExprRef, pick: int | None = None) -> z3.BoolRef:
        b, fixed, extra = self.context(a, me, pick)
        pc = self.program.threads[a.thread].pc
        return z3.And(self.is_kind(me, a.thread), s.thread[pc](me) == a.label, *extra,
                      self.term(self.prepare(a.guard, fixed=fixed), s, b))

    def bad(self, a: Action, s: PState, me: z3.ExprRef, props: set[str] | None = None,
            pick: int | None = None) -> z3.BoolRef:
        bads = [c.bad for c in a.checks if props is None or c.prop in props]
        if not bads:
            return z3.BoolVal(False)
        b, fixed, _ = self.context(a, me, pick)
        return self.term(self.prepare(Or(*bads), fixed=fixed), s, b)

    def updated(self, a: Action, s: PState, me: z3.ExprRef) -> tuple[dict[Field, z3.ExprRef], dict[Field, z3.ExprRef]]:
        shared, own, _, _ = self.updated_all(a, s, me)
        return shared, own

    def updated_all(self, a: Action, s: PState, me: z3.ExprRef, pick: int | None = None) -> tuple[
            dict[Field, z3.ExprRef], dict[Field, z3.ExprRef], dict[Field, Access], dict[Field, Access2]]:
        b, fixed, _ = self.context(a, me, pick)
        items = [Item("update", [e], target=f, domains=[domain_of(f)]) for f, e in a.updates.items()]
        copies = self.pools.classes(items, self.pool, fixed)
        shared: dict[Field, z3.ExprRef] = {}
        own: dict[Field, z3.ExprRef] = {}
        at_fixed: dict[Field, dict[int, z3.ExprRef]] = {}  # family (or semaphore function) -> member -> value
        looped: dict[Field, tuple[int, Expr]] = {}
        for i, (f, e) in enumerate(a.updates.items()):
            owner_value = f.kind == "owner"
            if f in self.rw_bits or f in self.family:
                k, f0 = self.family[f] if f in self.family else self.rw_bits[f][:2]
                if f in self.rw_bits and self.rw_bits[f][2] != a.thread:
                    raise LiftError(f"{a.function}: {a.text}: writes {f.name} of another thread")
                if i in copies:
                    looped.setdefault(f0, (k, self.prepare(e, owner_value, fixed | {k})))
                elif k in fixed:
                    prepared = self.prepare_stored(e, owner_value, fixed, f)
                    at_fixed.setdefault(f0, {})[k] = self.term(prepared, s, b)
                else:
                    raise LiftError(f"{a.function}: {a.text}: writes {f.name}, a member's part beyond its own, "
                                    "outside a loop")
                continue
            self.place(a, s, f, self.term(self.prepare_stored(e, owner_value, fixed, f), s, b), shared, own)
        members: dict[Field, Access] = {}
        bits: dict[Field, Access2] = {}
        for f0 in dict.fromkeys([*at_fixed, *looped]):
            vals = {b[_mkey(k)]: v for k, v in at_fixed.get(f0, {}).items()}
            if f0 in s.member:
                members[f0] = self._member_view(s.member[f0], b, fixed, vals, looped.get(f0), s)
            else:
                bits[f0] = self._bits_view(s.member2[f0], me, b, fixed, vals, looped.get(f0), s)
        return shared, own, members, bits

    def _bits_view(self, old: Access2, me: z3.ExprRef, b: Mapping[int, z3.ExprRef], fixed: frozenset[int],
                   vals: dict[z3.ExprRef, z3.ExprRef], loop: tuple[int, Expr] | None, s: PState) -> Access2:
        """A step's own bits in members' semaphores: ``me``'s row of the (member, thread) function replaced."""
        mine = self._member_view(lambda g: old(g, me), b, fixed, vals, loop, s)

        def at(g: z3.ExprRef, n: z3.ExprRef) -> z3.ExprRef:
            return z3.If(n == me, mine(g), old(g, n))
        return at

    def prepare_stored(self, e: Expr, owner_value: bool, fixed: frozenset[int], f: Field) -> Expr:
        """A value stored into ``f``: its constants in ``f``'s domain."""
        return self._pp(Lifting.prepare(self, e, True) if owner_value else e, fixed, f)

    def _member_view(self, old: Access, b: Mapping[int, z3.ExprRef], fixed: frozenset[int],
                     vals: dict[z3.ExprRef, z3.ExprRef], loop: tuple[int, Expr] | None, s: PState) -> Access:
        """A family after a step: the fixed members' new values (``vals``), the loop's at every other member."""
        fixed_terms = [b[_mkey(j)] for j in sorted(fixed)]

        def at(x: z3.ExprRef) -> z3.ExprRef:
            out = old(x)
            if loop is not None:
                k, body = loop
                val = self.term(body, s, {**b, _mkey(k): x})
                out = z3.If(z3.And(self.is_member(x), *[x != y for y in fixed_terms]), val, out)
            for term, val in vals.items():
                out = z3.If(x == term, val, out)
            return out
        return at

    def step(self, a: Action, s: PState, me: z3.ExprRef, pick: int | None = None) -> tuple[z3.BoolRef, PState]:
        """As ``Lifting.step``; a step of a class of sibling copies at a member picked among the others (``pick``:
        that member, in an instance), the class's other steps disabled (the first, at any member, stands for them)."""
        cls = self.action_class.get(a.aid)
        if (cls is not None and cls[0] != a.aid) or a.thread in self.dropped:
            return z3.BoolVal(False), s
        self._side = []
        try:
            shared, own, members, bits = self.updated_all(a, s, me, pick)
            typed = [self.typed(f, v) for f, v in shared.items()]
            typed += [self.typed(f, v) for f, v in own.items() if f.sort != BOOL]
            ok = z3.And(self.guard(a, s, me, pick), z3.Not(self.bad(a, s, me, None, pick)),
                        *[t for t in typed if not z3.is_true(t)])
            if self.members is None:  # a member's new value is read later, at a bound element: its lookups are
                probe = self.gvar("@probe-update")  # registered now (they name no element beyond their own)
                for fn in members.values():
                    fn(probe)
                for fn2 in bits.values():
                    fn2(probe, me)
            ok = z3.And(ok, *self._side) if self._side else ok
        finally:
            self._side = None
        thread = dict(s.thread)
        for f, v in own.items():
            at_me = s.thread[f]
            thread[f] = (lambda old, val: (lambda n: z3.If(n == me, val, old(n))))(at_me, v)
        return ok, PState(s.tag + "'", {**s.shared, **shared}, thread, {**s.member, **members}, {**s.member2, **bits})

    def successor(self, *args: object, **kw: object) -> tuple[z3.BoolRef, PState]:
        raise LiftError("BMC over a pool of any size is not supported: refute at a concrete size")

    # ------------------------------------------------------------ invariants
    def groups(self, e: Expr) -> list[tuple[tuple[int, ...], list[Expr]]]:
        """Conjuncts grouped by the kinds and the members (as ``-1 - k``) they name. A conjunct about a kind that
        has no thread (an orbit copy of member 0's) is left out where it is one about member 0's kind renamed;
        else the invariant is not read over the pool (``LiftError``): leaving it out would prove less."""
        from checker.prove.parametric.lift import conjuncts

        groups: dict[tuple[int, ...], list[Expr]] = {}
        for c in conjuncts(e):
            base = Lifting.prepare(self, c)  # a named thread's own member is fixed: its loops are over the others
            gone = set(self.threads_named(base)) & self.dropped
            if gone:
                self._check_counterpart(e, c, gone)
                continue
            fixed = frozenset(self.owner[t] for t in self.threads_named(base) if t in self.owner)
            p = self._existential(self._pp(c, fixed, None))
            key = tuple(self.threads_named(p)) + tuple(sorted(_mkey(k) for k in self.members_named(p)))
            groups.setdefault(key, []).append(p)
        return list(groups.items())

    def _check_counterpart(self, e: Expr, c: Expr, gone: set[int]) -> None:
        from checker.prove.parametric.lift import conjuncts

        hit = self._forms.get(id(e))
        if hit is None or hit[0] is not e:
            ident = identity(self.program)
            kept = {ident.render(x) for x in conjuncts(e)
                    if not set(self.threads_named(Lifting.prepare(self, x))) & self.dropped}
            hit = self._forms[id(e)] = (e, kept)
        owners = {self.owner[t] for t in gone}
        if len(owners) == 1:
            try:
                if self.orbit_swaps[owners.pop()].render(c) in hit[1]:
                    return
            except Refused:
                pass
        raise LiftError(f"an invariant conjunct about {', '.join(self.program.threads[t].name for t in sorted(gone))} "
                        "is no conjunct about member 0's thread renamed: not read over the pool")

    def group(self, named: tuple[int, ...], ps: list[Expr], s: PState) -> z3.BoolRef:
        """The conjuncts for every thread of each named kind and all distinct members: a member that is a named
        thread's own is ``own(n)``; the members the program names are distinct (member 1 is not member 0,
        even where the conjunct names only one of them beside a thread owning the other)."""
        kinds = [t for t in named if t >= 0]
        members = [-1 - m for m in named if m < 0]
        relevant = list(dict.fromkeys([*members, *[self.owner[t] for t in kinds if t in self.owner]]))

        def body(b: Mapping[int, z3.ExprRef]) -> z3.BoolRef:
            bound = dict(b)
            same: list[z3.BoolRef] = []
            for t in kinds:
                k = self.owner.get(t)
                if k is None:
                    continue
                if _mkey(k) in bound:
                    same.append(bound[_mkey(k)] == self.own_fn(b[t]))
                else:
                    bound[_mkey(k)] = self.own_fn(b[t])
            free = [k for k in relevant if _mkey(k) not in bound]

            def inner(xs: list[z3.ExprRef]) -> z3.BoolRef:
                full = {**bound, **{_mkey(k): x for k, x in zip(free, xs)}}
                terms = [full[_mkey(k)] for k in relevant]
                distinct = [z3.Distinct(*terms)] if len(terms) > 1 else []
                return z3.Implies(z3.And(*distinct, *same), z3.And(*[self.term(p, s, full) for p in ps]))
            return self.g_forall([f"@g{k}" for k in free], inner) if free else inner([])
        def whole() -> z3.BoolRef:
            return body({}) if not kinds else self.forall({t: self.var(f"@n{t}") for t in kinds}, body)
        if self.members is not None:
            return whole()
        self._inv_chosen = {}  # the find-firsts it reads: each a bound element (``_chosen_member``)
        try:
            out = whole()
            found = list(self._inv_chosen.values())
        finally:
            self._inv_chosen = None
        if not found:
            return out
        return z3.ForAll([c for c, _ in found], z3.Implies(z3.And(*[ok for _, ok in found]), out))

    def invariant(self, e: Expr, s: PState) -> z3.BoolRef:
        return z3.And(*[self.group(named, ps, s) for named, ps in self.groups(e)])

    def conjunct(self, c: Expr, s: PState) -> z3.BoolRef:
        return self.invariant(c, s)
