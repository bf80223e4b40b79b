"""PROVED is cross-checked: the induction relation allows every explicit transition.

A proof by induction is only as good as the relation it quantifies over. A bug
that *removes* behaviour from the Z3 relation (an update dropped, a guard made
stronger) makes more invariants inductive and is never caught by replaying Z3's
answers: there is no answer to replay. So before ``apcheck prove`` reports
PROVED, this module walks the explicit engine's compiled successor function
over the reachable states (all of them up to ``max_states``; beyond that the
breadth-first prefix plus states sampled by seeded random walks) and checks, on
concrete values, that:

- the initial state satisfies ``Encoding.init``;
- every transition ``(s, a, s')`` the successor function takes satisfies both
  forms of the Z3 relation: ``action_trans(a)`` (consecution) and
  ``step_relation`` with the selector at ``a`` (k-induction, BMC, and BMC's
  "no run is longer" exhaustiveness argument);
- every step the successor function fails (a check fires) satisfies
  ``action_bad(a, s, [prop])`` (what ``check:`` goals are proved against).

Each check substitutes the concrete values into the Z3 formula and simplifies
it to ``True`` (about 0.6 ms a transition): no solver call. Any other result is a
``DisagreementError`` (exit 4), never a verdict.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import z3

from checker.lang.layout import Field
from checker.lang.program_types import Program
from checker.prove.symbolic import Encoding, StateVars
from checker.prove.z3expr import literal

# Measured on final-config (1,573 states, 3,416 transitions): 2 x 1.2 s for the two
# relation forms, unloaded. 2,000 states keeps the check within a few seconds on
# every final-* spec small enough to enumerate; bigger ones are sampled.
DEFAULT_MAX_STATES = 2_000
DEFAULT_SAMPLES = 300
SAMPLE_WALK = 60  # steps per random walk


class CrossCheckError(RuntimeError):
    """The Z3 relation disagrees with the compiled successor function (an apcheck bug)."""


@dataclass
class CrossCheckReport:
    states: int  # states whose every transition was checked
    transitions: int
    complete: bool  # every reachable state was checked
    sampled: int  # of ``states``, found by random walks beyond the BFS prefix

    def text(self) -> str:
        if self.complete:
            return f"relation checked on all {self.states} reachable states ({self.transitions} transitions)"
        return (f"relation checked on {self.states} reachable states ({self.transitions} transitions; "
                f"{self.states - self.sampled} breadth-first, {self.sampled} sampled beyond)")


class _Substituter:
    """Concrete values into Z3 formulas, with the literals cached."""

    def __init__(self, program: Program) -> None:
        self.layout = program.layout
        self._lits: dict[tuple[Field, int], z3.ExprRef] = {}

    def lit(self, f: Field, v: int) -> z3.ExprRef:
        key = (f, v)
        hit = self._lits.get(key)
        if hit is None:
            hit = self._lits[key] = literal(f.sort, v)
        return hit

    def pairs(self, vs: StateVars, state: int) -> list[tuple[z3.ExprRef, z3.ExprRef]]:
        values = self.layout.decode(state)
        return [(vs[f], self.lit(f, values[f.name])) for f in self.layout.fields]

    @staticmethod
    def true(formula: z3.ExprRef, pairs: list[tuple[z3.ExprRef, z3.ExprRef]]) -> bool:
        return bool(z3.is_true(z3.simplify(z3.substitute(formula, *pairs))))


def run_threads(program: Program, succ: Callable[[int], list[tuple[int, int]]], init: int,
                threads: Sequence[str]) -> list[int]:
    """The states along one path: each named thread in turn takes steps (its first enabled one) until it has none;
    a state a sample might never reach (an mdev assigned an APQN, then that queue unbound)."""
    index = {th.name: th.index for th in program.threads}
    out: list[int] = []
    s = init
    for name in threads:
        while True:
            nexts = sorted((aid, ns) for aid, ns in succ(s) if ns >= 0 and program.actions[aid].thread == index[name])
            if not nexts:
                break
            s = nexts[0][1]
            out.append(s)
    return out


def reachable_sample(succ: Callable[[int], list[tuple[int, int]]], init: int, max_states: int,
                     samples: int, seed: int = 0) -> tuple[list[int], bool, int]:
    """Breadth-first states up to ``max_states``; when that is not all of them, add up to
    ``samples`` states found by seeded random walks (deterministic). Returns
    (states, complete, sampled)."""
    order = [init]
    seen = {init}
    queue = deque([init])
    complete = True
    while queue:
        s = queue.popleft()
        for _, ns in succ(s):
            if ns >= 0 and ns not in seen:
                if len(order) >= max_states:
                    complete = False
                    queue.clear()
                    break
                seen.add(ns)
                order.append(ns)
                queue.append(ns)
    if complete:
        return order, True, 0
    rng = random.Random(seed)
    found = 0
    walks = 0
    while found < samples and walks < 20 * samples:
        walks += 1
        s = init
        for _ in range(SAMPLE_WALK):
            nexts = [ns for _, ns in succ(s) if ns >= 0]
            if not nexts:
                break
            s = rng.choice(nexts)
            if s not in seen:
                seen.add(s)
                order.append(s)
                found += 1
                if found >= samples:
                    break
    return order, False, found


def crosscheck_relation(program: Program, enc: Encoding, succ: Callable[[int], list[tuple[int, int]]],
                        violations: list[str], max_states: int = DEFAULT_MAX_STATES,
                        samples: int = DEFAULT_SAMPLES, seed: int = 0) -> CrossCheckReport:
    """Check that the Z3 relation allows every transition ``succ`` takes on the states visited.

    ``violations[k]`` is the check prop of the explicit engine's violation ``-1-k``.
    Raises ``CrossCheckError`` naming the first disagreement.
    """
    sub = _Substituter(program)
    s, t = enc.state("xc"), enc.state("xc'")
    init = program.layout.initial()
    if not sub.true(enc.init(s), sub.pairs(s, init)):
        raise CrossCheckError("the initial state of the explicit engine does not satisfy the Z3 init")
    sel = enc.selector("xc")
    step = enc.step_relation(s, t, sel)
    per_action = {a.aid: enc.action_trans(a, s, t) for a in program.actions}
    # step_relation with the selector fixed, simplified once per action (its If chains collapse)
    per_step = {a.aid: z3.simplify(z3.substitute(step, (sel, z3.IntVal(a.aid)))) for a in program.actions}
    bad: dict[tuple[int, str], z3.ExprRef] = {}
    states, complete, sampled = reachable_sample(succ, init, max_states, samples, seed)
    transitions = 0
    for st in states:
        pre = sub.pairs(s, st)
        for aid, ns in succ(st):
            a = program.actions[aid]
            where = f"{program.threads[a.thread].name}: {a.function}: {a.text}"
            transitions += 1
            if ns < 0:
                prop = violations[-1 - ns]
                key = (aid, prop)
                if key not in bad:
                    bad[key] = enc.action_bad(a, s, [prop])
                if not sub.true(bad[key], pre):
                    raise CrossCheckError(f"{where}: the explicit engine fails a {prop} check that the Z3 "
                                          f"relation does not (state {st:#x})")
                continue
            both = pre + sub.pairs(t, ns)
            if not sub.true(per_action[aid], both):
                raise CrossCheckError(f"{where}: the explicit engine takes a transition the Z3 relation "
                                      f"(action_trans) does not allow (state {st:#x} -> {ns:#x})")
            if not sub.true(per_step[aid], both):
                raise CrossCheckError(f"{where}: the explicit engine takes a transition the Z3 relation "
                                      f"(step_relation) does not allow (state {st:#x} -> {ns:#x})")
    return CrossCheckReport(len(states), transitions, complete, sampled)


__all__ = ["DEFAULT_MAX_STATES", "DEFAULT_SAMPLES", "CrossCheckError", "CrossCheckReport", "crosscheck_relation",
           "reachable_sample"]
