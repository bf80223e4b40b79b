"""The pool lifting at the built size, against the explicit engine: the reading back checked on states.

``PoolLifting`` reads a program built with N members (N >= 3) as a relation over any number of them.
Instantiated at N (members and threads as integers, every quantifier over the pool a finite
conjunction: ``members_at``), it must be that very program again: on every reachable state of the
explicit program (the compiled successor function; a breadth-first prefix, then random walks), the
same steps are enabled, they lead to the same states, and the same steps fail a check. A loop read as
a quantifier that misses or adds a member, a select read at the wrong element, a store through a
pointer that writes the wrong member: each is a difference, raised as ``InstanceMismatch``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import z3

from checker.lang.layout import Field, Layout
from checker.lang.program import Program
from checker.prove.crosscheck import reachable_sample, run_threads
from checker.prove.parametric.instance import InstanceMismatch, InstanceReport, Substitution
from checker.prove.parametric.lift import PState
from checker.prove.parametric.poollift import PoolLifting
from checker.prove.parametric.pools import Owners
from checker.prove.z3expr import from_z3_value, literal


class _Nested(Substitution):
    """Values substituted until none is left: a member's field read through a pointer, ``f(p)``, is ``f`` at
    ``p``'s value, matched only once ``p`` is (one substitution matches the original subterms only)."""

    def value(self, term: z3.ExprRef) -> z3.ExprRef:
        for _ in range(8):
            nxt = super().value(term)
            if nxt.eq(term):
                return nxt
            term = nxt
        return term


class _Encoding:
    """The explicit program's fields as terms of a lifted state, and their values both ways."""

    def __init__(self, lf: PoolLifting) -> None:
        self.lf = lf
        self.fields = lf.program.layout.fields

    def term(self, s: PState, f: Field) -> z3.ExprRef:
        lf = self.lf
        if f in lf.family:
            k, f0 = lf.family[f]
            return s.member[f0](z3.IntVal(k))
        if f in lf.rw_bits:
            k, fn, t = lf.rw_bits[f]
            return s.member2[fn](z3.IntVal(k), z3.IntVal(t + 1))
        if f in lf.thread_of:
            return s.thread[f](z3.IntVal(lf.thread_of[f] + 1))
        return s.shared[f]

    def value(self, f: Field, v: int) -> z3.ExprRef:
        lf = self.lf
        if f in lf.slot_valued:
            x = lf.slot_valued[f].get(v, "?")
            return lf.special(x) if isinstance(x, str) else z3.IntVal(x)
        if f.kind == "owner":
            return z3.IntVal(v)  # 0: nobody, else thread index + 1 in both
        return literal(f.sort, v)

    def decode(self, f: Field, term: z3.ExprRef) -> int:
        v = from_z3_value(term)
        lf = self.lf
        if f in lf.slot_valued:
            name: int | str = v if v >= 0 else lf.special_names[-1 - v]
            back = [x for x, y in lf.slot_valued[f].items() if y == name]
            if len(back) != 1:
                raise InstanceMismatch(f"{f.name}: lifted value {name!r} names no value of the field")
            return back[0]
        return v

    def written(self, s: PState, post: PState) -> list[Field]:
        """The fields whose term in ``post`` is not the one in ``s`` (a component the step rebuilt: the step may
        write them, at any member or thread); every other field keeps its value."""
        lf, out = self.lf, []
        for f in self.fields:
            if f in lf.family:
                moved = post.member[lf.family[f][1]] is not s.member[lf.family[f][1]]
            elif f in lf.rw_bits:
                moved = post.member2[lf.rw_bits[f][1]] is not s.member2[lf.rw_bits[f][1]]
            elif f in lf.thread_of:
                moved = post.thread[f] is not s.thread[f]
            else:
                moved = post.shared[f] is not s.shared[f]
            if moved:
                out.append(f)
        return out

    def pairs(self, s: PState, values: dict[str, int]) -> list[tuple[z3.ExprRef, z3.ExprRef]]:
        out = [(self.term(s, f), self.value(f, values[f.name])) for f in self.fields]
        # a (member semaphore, thread) with no bit in the program: that thread never takes it
        lf = self.lf
        bits = {(fn, k, t) for k, fn, t in lf.rw_bits.values()}
        members = len(lf.program.instance_pools[lf.pool])
        out += [(s.member2[fn](z3.IntVal(k), z3.IntVal(t + 1)), z3.BoolVal(False)) for fn in lf.rw_functions
                for k in range(members) for t in range(len(lf.program.threads)) if (fn, k, t) not in bits]
        return out


Written = list[tuple[Field, z3.ExprRef]]  # a step's post-state: the fields it may write, their terms there


def lifted_steps(sub: _Nested, forms: list[tuple[int, z3.BoolRef, z3.BoolRef, Written]], values: dict[str, int],
                 decode: Callable[[Field, z3.ExprRef], int], layout: Layout) -> tuple[set[tuple[int, int]], set[int]]:
    """At one state (``sub``, its fields' ``values``): the lifted steps enabled there, as (key, encoded post-state:
    the fields the step may write read back with ``decode``, the others as they were), and the keys of those
    failing a check; ``forms``: (key, enabled and fine, enabled and failing, the post-state's written fields)."""
    lifted: set[tuple[int, int]] = set()
    lifted_bad: set[int] = set()
    for key, ok, failing, written in forms:
        if z3.is_true(sub.value(ok)):
            post = dict(values)
            post.update({f.name: decode(f, sub.value(term)) for f, term in written})
            lifted.add((key, layout.encode(post)))
        if z3.is_true(sub.value(failing)):
            lifted_bad.add(key)
    return lifted, lifted_bad


def first_difference(explicit: set[tuple[int, int]], explicit_bad: set[int], lifted: set[tuple[int, int]],
                     lifted_bad: set[int]) -> tuple[int, str] | None:
    """Where the explicit and the lifted steps of one state differ: (the step's key, which side has it), or None.
    A step is (key, post-state); a failing step its key."""
    if explicit == lifted and explicit_bad == lifted_bad:
        return None
    diff = sorted(explicit ^ lifted)[:1] or [(x, -1) for x in sorted(explicit_bad ^ lifted_bad)[:1]]
    key = diff[0][0]
    return key, "explicit only" if diff[0] in explicit or key in explicit_bad - lifted_bad else "lifted only"


def check_pool_instance(program: Program, pool: str, owners: Owners, max_states: int = 2_000,
                        samples: int = 300, path: Sequence[str] = ()) -> InstanceReport:
    """The pool lifting of ``program`` instantiated at its own size against its explicit successor function."""
    from checker.search.codegen import compile_program

    n_members = len(program.instance_pools[pool])
    lf = PoolLifting(program, pool, owners, members_at=n_members)
    enc = _Encoding(lf)
    succ: Callable[[int], list[tuple[int, int]]] = compile_program(program).succ
    s = lf.state("i")
    init = program.layout.initial()
    if not z3.is_true(_Nested(enc.pairs(s, program.layout.decode(init))).value(lf.init(s))):
        raise InstanceMismatch(f"pool {pool}: the explicit initial state is not the lifted initial state")
    by_pick = {(rep, k): aid for aid, (rep, k) in lf.action_class.items()}
    forms = []  # (explicit action id, thread id, enabled and fine, enabled and failing, written fields)
    for a in program.actions:
        cls = lf.action_class.get(a.aid)
        if cls is not None and cls[0] != a.aid:
            continue
        me = z3.IntVal(a.thread + 1)
        picks: list[int | None] = [None]
        if cls is not None:  # the class's first step at each member it has a copy for
            picks = [k for k in range(n_members) if (a.aid, k) in by_pick]
        for pick in picks:
            ok, post = lf.step(a, s, me, pick)
            failing = z3.And(lf.guard(a, s, me, pick), lf.bad(a, s, me, None, pick))
            aid = a.aid if pick is None else by_pick[(a.aid, pick)]
            forms.append((aid, a.thread, ok, failing, [(f, enc.term(post, f)) for f in enc.written(s, post)]))
    states, complete, sampled = reachable_sample(succ, init, max_states, samples)
    known = set(states)
    along = [st for st in dict.fromkeys(run_threads(program, succ, init, path)) if st not in known]
    states += along
    pcs = [th.pc.name for th in program.threads]
    transitions = 0
    for st in states:
        values = program.layout.decode(st)
        sub = _Nested(enc.pairs(s, values))
        explicit = {(aid, ns) for aid, ns in succ(st) if ns >= 0}
        explicit_bad = {aid for aid, ns in succ(st) if ns < 0}
        active = [(aid, ok, failing, written) for aid, t, ok, failing, written in forms
                  if program.actions[aid].label == values[pcs[t]]]
        lifted, lifted_bad = lifted_steps(sub, active, values, enc.decode, program.layout)
        transitions += len(explicit) + len(explicit_bad)
        diff = first_difference(explicit, explicit_bad, lifted, lifted_bad)
        if diff is not None:
            a = program.actions[diff[0]]
            raise InstanceMismatch(f"pool {pool} at {n_members} members: state {st:#x}: "
                                   f"{program.threads[a.thread].name}: {a.function}: {a.text}: {diff[1]}")
    return InstanceReport([1] * len(program.threads), len(states), transitions, complete, sampled, len(along))


__all__ = ["check_pool_instance", "first_difference", "lifted_steps"]
