"""A built program's instance pools read back as quantifiers: which steps are pool-parametric as built.

The prover's road to "all sizes" (docs/prove.md): a step of a thread working on mdev o may name
o's fields directly (its own member), and every other member only through a loop the builder
unrolled ("no other mdev has the queue", a lock or a value chosen by a pointer, a check per lock).
An unrolled loop is a *class of copies*: sibling items (conjuncts of one ``and``, disjuncts of one
``or``, cases of one pointer select, or a step's updates, checks, lock operations) naming one
member each, every copy the others renamed (their fields, locks and slot names swapped, the own
member fixed; checker.search.reduce.renaming compares the forms). A class with a copy for every
member but the own one reads back as a quantifier over the pool. A list walk to the first member
passing a test (``choice``: a case per member, each the others renamed) is compared as a set of
cases, its order left out: the lifting reads it as some member passing.

That reading is ambiguous with two members, where "every other mdev" is a single copy, so this
analysis runs on a program built with three or more (the design's ``sized_constants``): there a
copy left alone names a particular other member, which no pool-parametric step can do.
``liftability`` reports, per pool, every step naming a member outside its own and outside
complete classes: the steps to rewrite before a lifting can quantify over the pool.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from checker.lang.expr import Bin, Const, Expr, Ite, Nary, Var, children
from checker.lang.layout import Field
from checker.lang.program_types import Action, AnyLock, Program, RwSem
from checker.search.reduce.renaming import Domain, Refused, Renaming, domain_of, identity, lock_fields


@dataclass
class PoolShape:
    """Per pool, where each member's parts are: field, lock id or slot name -> member. A field may
    belong to several pools (a guest is a VM with its mdev)."""

    fields: dict[str, dict[Field, int]] = field(default_factory=dict)
    locks: dict[str, dict[int, int]] = field(default_factory=dict)
    slots: dict[str, dict[str, int]] = field(default_factory=dict)
    size: dict[str, int] = field(default_factory=dict)
    uniform: dict[str, bool] = field(default_factory=dict)


def pool_shape(program: Program) -> PoolShape:
    shape = PoolShape()
    for pool, members in program.instance_pools.items():
        shape.size[pool] = len(members)
        shape.uniform[pool] = len({(len(m.fields), len(m.locks), len(m.slots)) for m in members}) == 1
        fields: dict[Field, int] = {}
        locks: dict[int, int] = {}
        slots: dict[str, int] = {}
        shape.fields[pool], shape.locks[pool], shape.slots[pool] = fields, locks, slots
        for k, m in enumerate(members):
            for f in m.fields:
                fields[f] = k
            for lk in m.locks:
                locks[id(lk)] = k
                bits = [*lk.readers.values(), *lk.queued.values()] if isinstance(lk, RwSem) else []
                for f in [*lock_fields(lk), *bits]:
                    fields.setdefault(f, k)
            for s in m.slots:
                slots[s] = k
    return shape


@dataclass
class Item:
    """A unit that may be one copy of an unrolled loop: an expression list, plus the field it
    stores into or the lock it takes or releases (renamed with the copy). ``domains``: the value
    domain of each expression's position (a stored value is the target's; None: none known), which
    renames its constants (``kvm1`` stored into a queue's data owner)."""

    kind: str
    exprs: list[Expr]
    target: Field | None = None
    lock: AnyLock | None = None
    domains: list[Domain] | None = None

    def domain(self, k: int) -> Domain:
        return self.domains[k] if self.domains is not None else None


def action_items(a: Action) -> list[Item]:
    """A step's items: the guard's conjuncts, each update, check, acquisition and release."""
    guard = list(a.guard.args) if isinstance(a.guard, Nary) and a.guard.op == "and" else [a.guard]
    items = [Item("guard", [g]) for g in guard]
    items += [Item("update", [e], target=f, domains=[domain_of(f)]) for f, e in a.updates.items()]
    items += [Item("check " + c.prop, [c.bad]) for c in a.checks]
    items += [Item("acquire " + acq.mode, [acq.cond], lock=acq.lock) for acq in a.acquires]
    items += [Item("release", [cond], lock=lk) for lk, cond in a.releases]
    return items


class Pools:
    """The analysis over one program (renamings and forms cached)."""

    def __init__(self, program: Program) -> None:
        self.program = program
        self.shape = pool_shape(program)
        self._swaps: dict[tuple[str, int, int], Renaming] = {}
        # by id, with the expression kept alive: a transient node's id is reused once it is freed
        self._residue: dict[tuple[int, str, frozenset[int], Domain], tuple[Expr, set[int]]] = {}
        self._choices: dict[tuple[int, str], tuple[Expr, dict[int, int] | None]] = {}
        self._identity = identity(program)

    # ---- what an expression names
    def _slot_value(self, pool: str, d: Domain, value: int) -> set[int]:
        """The member of ``pool`` whose slot ``value`` of value domain ``d`` names, if any."""
        if d is None or d[0] < 0:
            return set()
        i = value - d[0]
        k = self.shape.slots[pool].get(d[1][i]) if 0 <= i < len(d[1]) else None
        return {k} if k is not None else set()

    def item_named(self, it: Item, pool: str, fixed: frozenset[int]) -> set[int]:
        """The members ``it`` names outside ``fixed`` and outside the complete classes within it."""
        out = {k for n, e in enumerate(it.exprs) for k in self.residue(e, pool, fixed, it.domain(n))}
        return out | self.item_anchor(it, pool, fixed)

    def item_anchor(self, it: Item, pool: str, fixed: frozenset[int]) -> set[int]:
        """The member whose field ``it`` stores into (or whose slot it stores) or whose lock it takes."""
        out: set[int] = set()
        if it.target is not None:
            k = self.shape.fields[pool].get(it.target)
            if k is not None:
                out.add(k)
            if it.exprs and isinstance(it.exprs[0], Const):
                out |= self._slot_value(pool, domain_of(it.target), int(it.exprs[0].value))
        if it.lock is not None:
            k = self.shape.locks[pool].get(id(it.lock))
            if k is not None:
                out.add(k)
        return out - fixed

    # ---- copies
    def _swap(self, pool: str, j: int, k: int) -> Renaming:
        key = (pool, min(j, k), max(j, k))
        if key not in self._swaps:
            members = self.program.instance_pools[pool]
            image = list(range(len(members)))
            image[j], image[k] = k, j
            r = self._swaps[key] = Renaming.of_members(self.program, members, image)
            r.free_chains = lambda e: self.choice(e, pool) is not None
        return self._swaps[key]

    def choice(self, e: Ite, pool: str) -> dict[int, int] | None:
        """``e`` as a find-first over the pool (``list_for_each_entry`` to the first object that passes a test):
        one case per member, each the others renamed, its default naming none: member -> case index, else
        None. Such a chain's copies are compared as sets of cases (renaming permutes the list's order), and
        the lifting reads it as *some* member passing the test (checker.prove.parametric.poolread): the first
        one is among them, so the reading allows every step the kernel takes (and is exact where at most one
        member passes, as ``no-double-assignment`` gives for an APQN's mdev)."""
        key = (id(e), pool)
        hit = self._choices.get(key)
        if hit is None:
            hit = self._choices[key] = (e, self._choice_of(e, pool))
        return hit[1]

    def _choice_of(self, e: Ite, pool: str) -> dict[int, int] | None:
        cases, default = if_chain(e)
        if len(cases) != self.shape.size[pool]:
            return None
        d = self._identity.dom(e)
        items = [Item("case", [c, a], domains=[None, d]) for c, a in cases]
        groups = self.class_groups(items, pool, frozenset())
        if len(groups) != 1 or len(groups[0]) != len(cases) or self.residue(default, pool, frozenset(), d):
            return None
        return groups[0]

    def form(self, it: Item, pool: str, j: int, k: int) -> str | None:
        """``it`` with members j and k swapped (j == k: as it is); None where renaming refuses."""
        r = self._swap(pool, j, k)
        try:
            parts = [it.kind, r.field(it.target).name if it.target is not None else "",
                     r.lock(it.lock).name if it.lock is not None else ""]
            return "\x00".join(parts + [r.render(e, it.domain(n)) for n, e in enumerate(it.exprs)])
        except Refused:
            return None

    def action_form(self, a: Action, pool: str, j: int, k: int) -> str | None:
        """A whole step with members j and k swapped; None where renaming refuses."""
        try:
            return repr(self._swap(pool, j, k).action(a))
        except Refused:
            return None

    def classes(self, items: list[Item], pool: str, fixed: frozenset[int]) -> dict[int, int]:
        """Item index -> the member it is the copy for, over the items that belong to a complete
        class (a copy for every member outside ``fixed``, each the first one renamed)."""
        return {idx: k for per in self.class_groups(items, pool, fixed) for k, idx in per.items()}

    def class_groups(self, items: list[Item], pool: str, fixed: frozenset[int]) -> list[dict[int, int]]:
        """The complete classes among ``items``, each as member -> item index (several loops may sit side by
        side in one ``and``: each is its own quantifier)."""
        return self._classes(len(items), pool, fixed, lambda i, fx: self.item_named(items[i], pool, fx),
                             lambda i, j, k: self.form(items[i], pool, j, k))

    def sibling_classes(self, acts: list[Action], pool: str, fixed: frozenset[int]) -> list[dict[int, int]]:
        """``class_groups`` over the actions of one step (one pc): the builder splits a step into one action
        per instance where it has to (``rwsem_down_write_slowpath`` of a lock chosen by a pointer:
        queueing as the waiting writer of kvm k's rwsem is its own action, one per VM)."""
        return self._classes(len(acts), pool, fixed, lambda i, fx: self.step_named(acts[i], pool, fx),
                             lambda i, j, k: self.action_form(acts[i], pool, j, k))

    def _classes(self, n_items: int, pool: str, fixed: frozenset[int],
                 named: Callable[[int, frozenset[int]], set[int]],
                 form: Callable[[int, int, int], str | None]) -> list[dict[int, int]]:
        free = self.shape.size[pool] - len(fixed)
        if free < 1 or not self.shape.uniform[pool]:
            return []
        groups: list[tuple[int, int, dict[int, int]]] = []  # (rep item, rep member, member -> item)
        for idx in range(n_items):
            ks = named(idx, fixed)
            # a copy for k may hold a loop over the members other than k (kvm k's CRYCB written from the mdev
            # a pointer names, when that mdev's kvm is k): what it names beyond k, with k fixed, is in classes
            ks = next(({k} for k in sorted(ks) if len(ks) > 1 and not named(idx, fixed | {k})), ks)
            if len(ks) != 1:
                continue
            (k,) = ks
            mine = form(idx, k, k)
            if mine is None:
                continue
            for rep, k0, per in groups:
                if k not in per and form(rep, k0, k) == mine:
                    per[k] = idx
                    break
            else:
                groups.append((idx, k, {k: idx}))
        return [per for _, _, per in groups if len(per) == free]

    # ---- residue: members named outside the own ones and complete classes
    def residue(self, e: Expr, pool: str, fixed: frozenset[int], ctx: Domain = None) -> set[int]:
        """The members ``e`` names outside ``fixed`` and complete classes; ``ctx``: the value domain of
        its position (the values of an ``if`` are stored where the ``if`` is)."""
        key = (id(e), pool, fixed, ctx)
        got = self._residue.get(key)
        if got is None:
            got = self._residue[key] = (e, self._residue_of(e, pool, fixed, ctx))
        return got[1]

    def _residue_of(self, e: Expr, pool: str, fixed: frozenset[int], ctx: Domain) -> set[int]:
        if isinstance(e, Nary):
            return self.items_residue([Item(e.op, [x]) for x in e.args], pool, fixed)
        out: set[int] = set()
        if isinstance(e, Ite):
            d = self._identity.dom(e) if ctx is None else ctx
            cases, default = if_chain(e)
            if len(cases) > 1:
                items = [Item("case", [c, a], domains=[None, d]) for c, a in cases]
                return self.items_residue(items, pool, fixed) | self.residue(default, pool, fixed, d)
            return (self.residue(e.c, pool, fixed) | self.residue(e.a, pool, fixed, d)
                    | self.residue(e.b, pool, fixed, d))
        if isinstance(e, Const):
            out |= self._slot_value(pool, ctx, int(e.value))
        elif isinstance(e, Var):
            k = self.shape.fields[pool].get(e.field) if isinstance(e.field, Field) else None
            if k is not None:
                out.add(k)
        elif isinstance(e, Bin) and e.op in ("==", "!="):
            for x, y in ((e.a, e.b), (e.b, e.a)):
                if isinstance(x, Const) and not isinstance(y, Const):  # the domain of a pointer or of a lookup
                    out |= self._slot_value(pool, self._identity.dom(y), int(x.value))
        for c in children(e):
            out |= self.residue(c, pool, fixed)
        return out - fixed

    def items_residue(self, items: list[Item], pool: str, fixed: frozenset[int]) -> set[int]:
        copies = self.classes(items, pool, fixed)
        out: set[int] = set()
        for idx, it in enumerate(items):
            inner = fixed | {copies[idx]} if idx in copies else fixed
            for n, e in enumerate(it.exprs):
                out |= self.residue(e, pool, inner, it.domain(n))
            if idx not in copies:
                out |= self.item_anchor(it, pool, fixed)
        return out

    def step_residue(self, a: Action, pool: str, own: int | None) -> set[int]:
        """What the step names of ``pool`` beyond its thread's own member, outside complete classes
        (within the action, and among the actions of its pc)."""
        fixed = frozenset() if own is None else frozenset({own})
        acts = self.program.by_label[a.thread][a.label] if self.program.by_label else [a]
        if len(acts) > 1:
            i = next(i for i, x in enumerate(acts) if x is a)
            copy = next((k for per in self.sibling_classes(acts, pool, fixed) for k, j in per.items() if j == i), None)
            if copy is not None:
                fixed = fixed | {copy}
        return self.step_named(a, pool, fixed)

    def step_named(self, a: Action, pool: str, fixed: frozenset[int]) -> set[int]:
        return self.items_residue(action_items(a), pool, fixed)


def if_chain(e: Ite) -> tuple[list[tuple[Expr, Expr]], Expr]:
    cases: list[tuple[Expr, Expr]] = []
    x: Expr = e
    while isinstance(x, Ite):
        cases.append((x.c, x.a))
        x = x.b
    return cases, x


@dataclass
class StepReach:
    where: str
    function: str
    own: int | None  # the thread's own member
    members: set[int]  # named beyond it, outside complete classes


def where(program: Program, a: Action) -> str:
    th = program.threads[a.thread]
    return f"{th.name}@{th.labels[a.label]}"


Owners = dict[str, dict[str, int]]  # thread name -> pool -> the thread's own member


def liftability(program: Program, owners: Owners) -> dict[str, list[StepReach]]:
    """Per pool: the steps that name a member beyond their thread's own (``owners``; none if absent)
    outside complete classes of copies."""
    pools = Pools(program)
    out: dict[str, list[StepReach]] = {p: [] for p in program.instance_pools}
    for a in program.actions:
        mine = owners.get(program.threads[a.thread].name, {})
        for pool in program.instance_pools:
            rest = pools.step_residue(a, pool, mine.get(pool))
            if rest:
                out[pool].append(StepReach(where(program, a), a.function, mine.get(pool), rest))
    return out


def property_residue(program: Program) -> Iterator[tuple[str, str, set[int]]]:
    """(property, pool, members named outside complete classes) for every always property."""
    pools = Pools(program)
    for p in program.properties:
        for pool in program.instance_pools:
            rest = pools.residue(p.expr, pool, frozenset())
            if rest:
                yield p.name, pool, rest
