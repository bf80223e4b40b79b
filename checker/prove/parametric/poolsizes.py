"""The pool lifting at a size it was not built at, against the program the design builds at that size.

``poolinstance`` checks the lifting of the program built with N members at N: the reading back is the
program again. The lifting claims more, the same relation with the pool of any size, and that rests on
the builder being uniform in the pool: what it builds for a fourth guest is a third one's renamed. Here
that is checked at another size M (four guests where the design built three): the lifting instantiated at
M members (integers 0..M-1, every quantifier over the pool a finite conjunction) against the explicit
program the design builds at M, on its reachable states.

The two are matched by name. A thread of the M program runs an operation on one member (an orbit: the
design's ``instance_orbits``) or on none: its lifted kind is the built program's kind of that operation on
member 0, its own member the one it names, or the built program's thread of the same name. A member's field,
lock and semaphore bit is its family at that member (the members list their parts in one order at every
size), a thread's local is its kind's local at its id, every other field the built program's field of the
same name; a value naming a member (a slot of the pool) is that member's integer. Anything the M program has
and the reading does not foresee (a field, a thread, a value) is a ``InstanceMismatch``, as is any state where
the two differ: the same threads step, to the same states, and the same threads fail a check.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import z3

from checker.lang.layout import Field
from checker.lang.program import Program, RwSem
from checker.prove.crosscheck import reachable_sample, run_threads
from checker.prove.parametric.instance import InstanceMismatch, InstanceReport, field_map
from checker.prove.parametric.lift import PState
from checker.prove.parametric.poolinstance import _Nested, first_difference, lifted_steps
from checker.prove.parametric.poollift import PoolLifting
from checker.prove.parametric.pools import Owners, pool_shape
from checker.prove.z3expr import from_z3_value, literal
from checker.search.reduce.renaming import domain_of, lock_fields


@dataclass
class Sized:
    """The program the design builds at one size, with its threads' own members and operations."""

    program: Program
    owners: Owners
    orbits: Mapping[str, str]  # thread name -> its operation without the member it names


def _kinds(built: Sized, other: Sized, pool: str) -> dict[int, tuple[int, int | None]]:
    """Each thread of ``other`` (by id: index + 1) -> (its kind in ``built``, its own member or None)."""
    by_name = {th.name: th.index for th in built.program.threads}
    reps: dict[str, int] = {}  # an operation on a member -> the built program's kind of it on member 0
    for th in built.program.threads:
        if built.owners.get(th.name, {}).get(pool) == 0:
            reps[built.orbits.get(th.name, th.name)] = th.index
    out: dict[int, tuple[int, int | None]] = {}
    for th in other.program.threads:
        own = other.owners.get(th.name, {}).get(pool)
        kind = by_name.get(th.name) if own is None else reps.get(other.orbits.get(th.name, th.name))
        if kind is None:
            raise InstanceMismatch(f"thread {th.name}: no kind of the program built with "
                                   f"{len(built.program.instance_pools[pool])} members runs its operation")
        out[th.index + 1] = (kind, own)
    return out


class _SizeEncoding:
    """The M program's fields as terms of a lifted state of the built program, their values both ways."""

    def __init__(self, lf: PoolLifting, other: Program, kinds: Mapping[int, tuple[int, int | None]]) -> None:
        self.lf, self.other = lf, other
        built = lf.program
        pool = lf.pool
        self.slots = pool_shape(other).slots[pool]
        self.where: dict[Field, Callable[[PState], z3.ExprRef]] = {}
        self.counterpart: dict[Field, Field] = {}  # an M field -> the built field (family, local) it is read as
        self.thread_ids: dict[Field, int] = {}  # a per-thread M field -> its thread's id
        members0 = built.instance_pools[pool][0]
        rw_at: dict[int, tuple[Field, Field]] = {}  # a member lock's position -> its semaphore functions
        for pos, lk0 in enumerate(members0.locks):
            if id(lk0) in lf.rw_of:
                _, readers, queued = lf.rw_of[id(lk0)]
                rw_at[pos] = (readers, queued)
        self.bits: set[tuple[Field, int, int]] = set()
        for k, m in enumerate(other.instance_pools[pool]):  # member 0's parts name their families
            for f, f0 in zip(m.fields, members0.fields):
                self._member(f, f0, k)
            for pos, (lk, lk0) in enumerate(zip(m.locks, members0.locks)):
                for f, f0 in zip(lock_fields(lk), lock_fields(lk0)):
                    self._member(f, f0, k)
                if isinstance(lk, RwSem) and pos in rw_at:
                    for bits, fn in ((lk.readers, rw_at[pos][0]), (lk.queued, rw_at[pos][1])):
                        for t, f in bits.items():
                            self._bit(f, fn, k, t + 1)
        threads = range(len(other.threads))
        rest = field_map(built, other, [kinds[t + 1][0] for t in threads], [t + 1 for t in threads], set(self.where))
        for f, (g, n) in rest.items():
            if n is not None:
                self._thread(f, g, n)
            elif g in lf.shared:
                self._shared(f, g)
            else:
                raise InstanceMismatch(f"{f.name}: read as {g.name}, a part of a member of the program built with "
                                       f"{len(built.instance_pools[pool])} members")

    def _shared(self, f: Field, g: Field) -> None:
        self.where[f] = lambda s: s.shared[g]
        self.counterpart[f] = g

    def _member(self, f: Field, family: Field, k: int) -> None:
        self.where[f] = lambda s: s.member[family](z3.IntVal(k))
        self.counterpart[f] = family

    def _bit(self, f: Field, fn: Field, k: int, n: int) -> None:
        """A member semaphore's bit of thread ``n``: the (member, thread) relation there."""
        self.where[f] = lambda s: s.member2[fn](z3.IntVal(k), z3.IntVal(n))
        self.counterpart[f] = fn
        self.thread_ids[f] = n
        self.bits.add((fn, k, n))

    def _thread(self, f: Field, g: Field, n: int) -> None:
        self.where[f] = lambda s: s.thread[g](z3.IntVal(n))
        self.counterpart[f] = g
        self.thread_ids[f] = n

    # ---- values
    def value(self, f: Field, v: int) -> z3.ExprRef:
        lf, g = self.lf, self.counterpart[f]
        if g in lf.slot_valued:
            return self._named(f, v)
        if f.kind == "owner":
            return z3.IntVal(v)  # 0: nobody, else the thread's index + 1 in both
        return literal(f.sort, v)

    def _named(self, f: Field, v: int) -> z3.ExprRef:
        d = domain_of(f)
        if v == -1 and f.kind == "ref":
            return self.lf.special("NULL")
        assert d is not None
        name = d[1][v - d[0]]
        k = self.slots.get(name)
        return z3.IntVal(k) if k is not None else self.lf.special(name)

    def decode(self, f: Field, term: z3.ExprRef) -> int:
        v = from_z3_value(term)
        if self.counterpart[f] not in self.lf.slot_valued:
            return v
        d = domain_of(f)
        assert d is not None
        back = [i + d[0] for i, name in enumerate(d[1])
                if (self.slots.get(name) == v if v >= 0 else name == self.lf.special_names[-1 - v])]
        if v < 0 and self.lf.special_names[-1 - v] == "NULL" and f.kind == "ref":
            back = [-1]
        if len(back) != 1:
            raise InstanceMismatch(f"{f.name}: lifted value {v} names no value of the field")
        return back[0]

    def written(self, s: PState, post: PState, n: int) -> list[Field]:
        """The M program's fields a step of thread ``n`` from ``s`` to ``post`` may change: where the post-state's
        component is not the pre-state's (a per-thread one, or a semaphore bit, at ``n`` only)."""
        out = []
        for f, g in self.counterpart.items():
            if g in s.shared:
                moved = post.shared[g] is not s.shared[g]
            elif g in s.member:
                moved = post.member[g] is not s.member[g]
            elif g in s.member2:
                moved = post.member2[g] is not s.member2[g] and self._thread_of(f) == n
            else:
                moved = post.thread[g] is not s.thread[g] and self._thread_of(f) == n
            if moved:
                out.append(f)
        return out

    def _thread_of(self, f: Field) -> int:
        return self.thread_ids[f]

    def pairs(self, s: PState, values: dict[str, int], threads: int, members: int) -> list[tuple[z3.ExprRef,
                                                                                                 z3.ExprRef]]:
        out = [(self.where[f](s), self.value(f, values[f.name])) for f in self.other.layout.fields]
        out += [(s.member2[fn](z3.IntVal(k), z3.IntVal(n)), z3.BoolVal(False)) for fn in self.lf.rw_functions
                for k in range(members) for n in range(1, threads + 1) if (fn, k, n) not in self.bits]
        return out


def check_pool_size(built: Sized, other: Sized, pool: str, singletons: list[int], max_states: int = 2_000,
                    samples: int = 300, path: Sequence[str] = ()) -> InstanceReport:
    """The lifting of ``built`` instantiated at the size of ``other`` against ``other``'s successor function."""
    from checker.search.codegen import compile_program

    members = len(other.program.instance_pools[pool])
    kinds = _kinds(built, other, pool)
    lf = PoolLifting(built.program, pool, built.owners, singletons, members_at=members, threads_at=kinds)
    enc = _SizeEncoding(lf, other.program, kinds)
    program = other.program
    threads = len(program.threads)
    succ = compile_program(program).succ
    s = lf.state("m")
    init = program.layout.initial()
    if not z3.is_true(_Nested(enc.pairs(s, program.layout.decode(init), threads, members)).value(lf.init(s))):
        raise InstanceMismatch(f"pool {pool} at {members} members: the explicit initial state is not the lifted "
                               "initial state")
    forms = []  # (thread id, the built action's label, enabled and fine, enabled and failing, written fields)
    for n, (kind, own) in sorted(kinds.items()):
        for a in lf.program.actions:
            if a.thread != kind:
                continue
            cls = lf.action_class.get(a.aid)
            if cls is not None and cls[0] != a.aid:
                continue
            me = z3.IntVal(n)
            picks: list[int | None] = [None] if cls is None else [k for k in range(members) if k != own]
            for pick in picks:
                ok, post = lf.step(a, s, me, pick)
                failing = z3.And(lf.guard(a, s, me, pick), lf.bad(a, s, me, None, pick))
                forms.append((n, a.label, ok, failing, [(f, enc.where[f](post)) for f in enc.written(s, post, n)]))
    states, complete, sampled = reachable_sample(succ, init, max_states, samples)
    known = set(states)
    along = [st for st in dict.fromkeys(run_threads(program, succ, init, path)) if st not in known]
    states += along
    transitions = 0
    for st in states:
        values = program.layout.decode(st)
        sub = _Nested(enc.pairs(s, values, threads, members))
        explicit = {(program.actions[aid].thread + 1, ns) for aid, ns in succ(st) if ns >= 0}
        explicit_bad = {program.actions[aid].thread + 1 for aid, ns in succ(st) if ns < 0}
        active = [(n, ok, failing, written) for n, label, ok, failing, written in forms
                  if values[program.threads[n - 1].pc.name] == label]
        lifted, lifted_bad = lifted_steps(sub, active, values, enc.decode, program.layout)
        transitions += len(explicit) + len(explicit_bad)
        diff = first_difference(explicit, explicit_bad, lifted, lifted_bad)
        if diff is not None:
            th = program.threads[diff[0] - 1]
            raise InstanceMismatch(f"pool {pool} at {members} members: state {st:#x}: {th.name} at "
                                   f"{th.labels[values[th.pc.name]]}: {diff[1]}")
    return InstanceReport([1] * threads, len(states), transitions, complete, sampled, len(along))


__all__ = ["Sized", "check_pool_size"]
