"""The lifted relation instantiated at a size, against the explicit engine at that size.

A size is a number of copies of each thread of the spec. The explicit side is the design's own
program for the scenario with every thread repeated that many times (``copies_scenario``); the
lifted side is ``Lifting`` with a finite universe of thread ids. On every reachable state of the
explicit program (the compiled successor function), the two must agree exactly:

- every explicit transition (thread copy, step, successor) is a lifted transition of the same
  step by the same thread id, to the same state, and vice versa;
- every step the explicit engine fails (a check fires) is enabled with a failing check in
  the lifted relation, and vice versa.

Any difference raises ``InstanceMismatch`` (an apcheck bug: exit 4 where ``prove`` runs it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import z3

from checker.lang.design import Design, Scenario, ThreadSpec
from checker.lang.layout import THREAD_LOCAL, Field
from checker.lang.program import Program, RwSem
from checker.prove.crosscheck import reachable_sample
from checker.prove.parametric.lift import Lifting, PState
from checker.prove.z3expr import from_z3_value, literal


class InstanceMismatch(RuntimeError):
    """The lifted relation at a size disagrees with the explicit engine at that size."""


def copy_name(name: str, c: int) -> str:
    """The spec name of copy ``c`` (0-based) of thread ``name``."""
    return name if c == 0 else f"{name}-copy{c + 1}"


def copies_scenario(scenario: Scenario, copies: list[int]) -> Scenario:
    threads: list[ThreadSpec] = []
    for ts, n in zip(scenario.threads, copies):
        threads += [dataclasses.replace(ts, name=copy_name(ts.name, c)) for c in range(n)]
    return dataclasses.replace(scenario, threads=threads)


@dataclass
class InstanceReport:
    copies: list[int]
    states: int
    transitions: int
    complete: bool
    sampled: int = 0  # of ``states``, found by random walks beyond the breadth-first prefix
    along: int = 0  # of ``states``, on a path the caller named (threads run in turn: crosscheck.run_threads)

    def text(self) -> str:
        bfs = self.states - self.sampled - self.along
        where = (f"all {self.states} reachable states" if self.complete else
                 f"{bfs} breadth-first and {self.sampled} sampled reachable states")
        path = f" and {self.along} along a path" if self.along else ""
        return f"on {where}{path} ({self.transitions} transitions)"


class Substitution:
    """Concrete values for a state's terms, substituted many times: the arrays are built once (``z3.substitute``
    re-checks the sort of every pair in Python on each call, which was most of the cross-check's time)."""

    def __init__(self, pairs: list[tuple[z3.ExprRef, z3.ExprRef]]) -> None:
        self.pairs = pairs  # keeps the terms (and so the ASTs in the arrays) alive
        self.n = len(pairs)
        self.src = (z3.Ast * max(1, self.n))()
        self.dst = (z3.Ast * max(1, self.n))()
        for i, (a, b) in enumerate(pairs):
            if not a.sort().eq(b.sort()):
                raise InstanceMismatch(f"substitution of {a} by a value of sort {b.sort()}")
            self.src[i], self.dst[i] = a.as_ast(), b.as_ast()

    def value(self, term: z3.ExprRef) -> z3.ExprRef:
        """``term`` with the values substituted, simplified."""
        ctx = term.ctx
        ast = z3.Z3_substitute(ctx.ref(), term.as_ast(), self.n, self.src, self.dst)
        return z3.simplify(z3.z3._to_expr_ref(ast, ctx))


def field_map(small: Program, big: Program, kind_of: Sequence[int], id_of: Sequence[int],
              done: Collection[Field] = ()) -> dict[Field, tuple[Field, int | None]]:
    """Each field of ``big`` (a program with more threads, or more members) but those ``done`` -> (the field of
    ``small`` it is, the lifted thread id it is at, or None for a shared one): a thread's pc, rw-semaphore bits
    and locals are its kind's (``kind_of``: big thread -> small thread; ``id_of``: -> its id), every other field
    the one of the same name. A field ``small`` lacks is an ``InstanceMismatch``."""
    by_name = {f.name: f for f in small.layout.fields}
    small_locks = {lk.name: lk for lk in small.locks}
    index = {th.name: th.index for th in big.threads}
    out: dict[Field, tuple[Field, int | None]] = {}
    for th in big.threads:
        out[th.pc] = (small.threads[kind_of[th.index]].pc, id_of[th.index])
    for lk in big.locks:
        if isinstance(lk, RwSem) and any(f not in done for f in [*lk.readers.values(), *lk.queued.values()]):
            slk = small_locks.get(lk.name)
            if not isinstance(slk, RwSem):
                raise InstanceMismatch(f"{lk.name}: no such rw-semaphore in the smaller program")
            for bits, small_bits in ((lk.readers, slk.readers), (lk.queued, slk.queued)):
                for t, f in bits.items():
                    out[f] = (small_bits[kind_of[t]], id_of[t])
    for f in big.layout.fields:
        if f in out or f in done:
            continue
        owner = f.meta.get(THREAD_LOCAL)
        if isinstance(owner, str):
            t = index[owner]
            kind = small.threads[kind_of[t]].name
            g = by_name.get(f.name.replace(owner, kind, 1))
            if g is None:
                raise InstanceMismatch(f"{f.name}: a local of {owner} that {kind} does not have")
            out[f] = (g, id_of[t])
        elif f.name in by_name:
            out[f] = (by_name[f.name], None)
        else:
            raise InstanceMismatch(f"{f.name}: no counterpart in the smaller program")
    return out


class _Instance:
    """Thread ids, field correspondence and value conversion between the two programs."""

    def __init__(self, small: Program, big: Program, copies: list[int]) -> None:
        self.small, self.big = small, big
        self.kind_of: list[int] = []  # big thread -> kind
        self.id_of: list[int] = []  # big thread -> lifted thread id
        universe: dict[int, list[int]] = {}
        n = 0
        for k, c in enumerate(copies):
            for _ in range(c):
                n += 1
                self.kind_of.append(k)
                self.id_of.append(n)
                universe.setdefault(k, []).append(n)
        self.universe = universe
        self.lift = Lifting(small, universe)
        # big field -> (small field, thread id or None for shared)
        self.fmap = field_map(small, big, self.kind_of, self.id_of)
        if len({v for v in self.fmap.values()}) != len(big.layout.fields):
            raise InstanceMismatch("the copies' fields do not correspond one to one to the lifted fields")
        # big action -> (template action id, thread id)
        per_thread: dict[int, list[int]] = {}
        for a in small.actions:
            per_thread.setdefault(a.thread, []).append(a.aid)
        self.amap: dict[int, tuple[int, int]] = {}
        seen: dict[int, int] = {}
        for a in big.actions:
            i = seen.get(a.thread, 0)
            seen[a.thread] = i + 1
            tmpl = per_thread[self.kind_of[a.thread]][i]
            if small.actions[tmpl].label != a.label or small.actions[tmpl].text != a.text:
                raise InstanceMismatch(f"{a.function}: the copy's steps differ from its thread's")
            self.amap[a.aid] = (tmpl, self.id_of[a.thread])
        self.id_to_owner = {n: b + 1 for b, n in enumerate(self.id_of)}

    def pairs(self, s: PState, values: dict[str, int]) -> list[tuple[z3.ExprRef, z3.ExprRef]]:
        """Substitution of the lifted state ``s`` by the big program's concrete ``values``."""
        out: list[tuple[z3.ExprRef, z3.ExprRef]] = []
        lf = self.lift
        for bf, (sf, n) in self.fmap.items():
            v = values[bf.name]
            if n is None:
                if sf.kind == "owner" and v:
                    v = self.id_of[v - 1]
                out.append((s.shared[sf], lf.literal(sf, v)))
            else:
                out.append((s.thread[sf](z3.IntVal(n)), literal(sf.sort, v)))
        return out

    def values(self, st: PState, sub: Substitution, pre: PState | None = None,
               at_pre: dict[str, int] | None = None) -> dict[str, int]:
        """The big program's field values of the lifted state ``st``; given ``pre`` and its values ``at_pre``,
        a field whose term ``st`` shares with ``pre`` (a step left it alone) keeps that value, the very one
        the substitution gives it (the cross-check evaluates each state's terms once, not once per step)."""
        values: dict[str, int] = {}
        for bf, (sf, n) in self.fmap.items():
            if pre is not None and at_pre is not None and (
                    st.shared[sf] is pre.shared[sf] if n is None else st.thread[sf] is pre.thread[sf]):
                values[bf.name] = at_pre[bf.name]
                continue
            term = st.shared[sf] if n is None else st.thread[sf](z3.IntVal(n))
            v = from_z3_value(sub.value(term))
            if n is None and sf.kind == "owner" and v:
                if v not in self.id_to_owner:
                    raise InstanceMismatch(f"{bf.name}: lifted owner {v} is no thread of the instance")
                v = self.id_to_owner[v]
            values[bf.name] = v
        return values


def check_instance(design: Design, scenario: Scenario, small: Program, copies: list[int],
                   max_states: int = 5_000, samples: int = 300) -> InstanceReport:
    """Instantiate the lifted relation of ``small`` at ``copies`` and compare it with the explicit
    successor function of the design's program for that many copies, on every reachable state
    (up to ``max_states``, then a sample)."""
    from checker.search.codegen import compile_program

    big = design.build(copies_scenario(scenario, copies))
    inst = _Instance(small, big, copies)
    lf = inst.lift
    compiled = compile_program(big)
    succ: Callable[[int], list[tuple[int, int]]] = compiled.succ
    s = lf.state("i")
    init = big.layout.initial()
    if not z3.is_true(z3.simplify(z3.substitute(lf.init(s), *inst.pairs(s, big.layout.decode(init))))):
        raise InstanceMismatch("the explicit initial state is not the lifted initial state")
    forms = []
    for a in small.actions:
        for n in inst.universe.get(a.thread, ()):
            me = z3.IntVal(n)
            ok, post = lf.step(a, s, me)
            failing = z3.And(lf.guard(a, s, me), lf.bad(a, s, me))
            forms.append((a.aid, n, ok, failing, post))
    states, complete, sampled = reachable_sample(succ, init, max_states, samples)
    transitions = 0
    pcs = [(inst.id_of[th.index], th.pc.name) for th in big.threads]
    for st in states:
        values = big.layout.decode(st)
        sub = Substitution(inst.pairs(s, values))
        at_pre = inst.values(s, sub)
        at = {n: values[pc] for n, pc in pcs}  # the lifted guard starts with pc(me) == label: skip the others
        explicit: set[tuple[int, int, int]] = set()
        explicit_bad: set[tuple[int, int]] = set()
        for aid, ns in succ(st):
            tmpl, n = inst.amap[aid]
            if ns < 0:
                explicit_bad.add((tmpl, n))
            else:
                explicit.add((tmpl, n, ns))
        lifted: set[tuple[int, int, int]] = set()
        lifted_bad: set[tuple[int, int]] = set()
        for aid, n, ok, failing, post in forms:
            if small.actions[aid].label != at[n]:
                continue
            if z3.is_true(sub.value(ok)):
                lifted.add((aid, n, big.layout.encode(inst.values(post, sub, s, at_pre))))
            if z3.is_true(sub.value(failing)):
                lifted_bad.add((aid, n))
        transitions += len(explicit) + len(explicit_bad)
        if explicit != lifted or explicit_bad != lifted_bad:
            diff = sorted(explicit ^ lifted)[:1] or sorted(explicit_bad ^ lifted_bad)[:1]
            aid = diff[0][0]
            a = small.actions[aid]
            side = "explicit only" if diff[0] in explicit or diff[0] in explicit_bad else "lifted only"
            raise InstanceMismatch(f"copies {copies}: state {st:#x}: {small.threads[a.thread].name}: {a.function}: "
                                   f"{a.text} (thread id {diff[0][1]}): {side}")
    return InstanceReport(copies, len(states), transitions, complete, sampled)


__all__ = ["InstanceMismatch", "InstanceReport", "check_instance", "copies_scenario", "copy_name"]
