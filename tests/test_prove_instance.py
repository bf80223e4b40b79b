"""The pre-state instance of a consecution check (``pprove.instance``): the broken group at fresh elements and the
same group of the pre-state there replace "the group broken" without changing a check's answer, and on the mask
stores they alone refute the checks that cost seconds on the quantified groups."""

from __future__ import annotations

import time
from typing import Any

import pytest
import z3

from checker.prove.goals import ownership_expr
from checker.prove.parametric import pprove
from checker.prove.parametric.poollift import PoolLifting
from checker.prove.parametric.pprove import Invariant, ParametricProver, instance
from checker.spec.registry import default_registry
from checker.spec.spec import load_spec

E = z3.DeclareSort("E")
P, P2 = z3.Function("P", E, z3.BoolSort()), z3.Function("P2", E, z3.BoolSort())
Q, Q2 = z3.Function("Q", E, E, z3.BoolSort()), z3.Function("Q2", E, E, z3.BoolSort())
x, y = z3.Const("x", E), z3.Const("y", E)


def _group(p: z3.FuncDeclRef, q: z3.FuncDeclRef) -> z3.BoolRef:
    """A group's shape over a pool: a chosen element, a premise, then every thread."""
    return z3.ForAll([x], z3.Implies(p(x), z3.ForAll([y], q(x, y))))


def _answer(*terms: z3.BoolRef) -> z3.CheckSatResult:
    sv = z3.Solver()
    sv.add(*terms)
    return sv.check()


def test_the_instance_opens_both_groups_at_the_same_fresh_elements() -> None:
    broken, pre = instance(_group(P, Q), _group(P2, Q2))
    assert not z3.is_quantifier(broken) and not z3.is_quantifier(pre)
    # broken: P2(a) and not Q2(a, b); pre: P(a) implies Q(a, b), at the same a and b
    assert z3.is_and(broken) and broken.arg(0).decl() == P2 and z3.is_not(broken.arg(1))
    q2 = broken.arg(1).arg(0)
    assert z3.is_implies(pre) and pre.arg(1).decl() == Q
    assert [pre.arg(1).arg(i).eq(q2.arg(i)) for i in range(2)] == [True, True]
    assert q2.arg(0).eq(broken.arg(0).arg(0)) and not q2.arg(0).eq(q2.arg(1))
    assert str(q2.arg(0)).startswith("@sk") and str(q2.arg(1)).startswith("@sk")


SAME_P = z3.ForAll([x], P2(x) == P(x))
SAME_Q = z3.ForAll([x, y], Q2(x, y) == Q(x, y))


@pytest.mark.parametrize(("frame", "answer"), [
    (z3.And(SAME_P, SAME_Q), z3.unsat),  # the step changed nothing: the group holds after it
    (SAME_P, z3.sat),  # Q2 is free: the step may break the group
    (z3.And(SAME_Q, z3.Exists([x], z3.And(P2(x), z3.Not(P(x))))), z3.sat),  # P2 wider: may break it
    (z3.And(SAME_Q, z3.ForAll([x], z3.Implies(P2(x), P(x)))), z3.unsat),  # P2 narrower: keeps it
])
def test_the_instance_keeps_the_answer_of_the_check(frame: z3.BoolRef, answer: z3.CheckSatResult) -> None:
    pre, post = _group(P, Q), _group(P2, Q2)
    assert _answer(pre, frame, z3.Not(post)) == answer
    assert _answer(pre, frame, *instance(pre, post)) == answer


def test_groups_of_another_shape_are_opened_as_far_as_they_agree() -> None:
    """A pre-state group bound otherwise is left quantified: its instance is then the group itself."""
    pre, post = z3.ForAll([x, y], Q(x, y)), _group(P2, Q2)
    broken, kept = instance(pre, post)
    assert kept.eq(z3.Implies(z3.And(), pre)) and broken.eq(z3.And(z3.Not(post)))


def _masks_over_guests() -> tuple[Any, PoolLifting, ParametricProver]:
    """The mask stores' program at three guests, its lifting over the guests and a prover on it."""
    loaded = load_spec("specs/parametric-mainline-masks.yaml", default_registry())
    d: Any = loaded.design
    constants, sized_ops, _ = d.sized_constants(3, 2, 1)
    ops = tuple(dict.fromkeys([c.name for t in loaded.scenario.threads for c in t.run] + list(sized_ops)))
    scenario = d.universal_scenario(constants, ops)
    once = [i for i, t in enumerate(scenario.threads) if any(c.name in d.universal_once() for c in t.run)]
    program = d.build(scenario)
    lift = PoolLifting(program, "guest", d.instance_owners(scenario), once, orbits=d.instance_orbits(scenario))
    return program, lift, ParametricProver(program, 30.0, lift=lift)


def test_on_the_mask_stores_the_instance_alone_refutes_a_lock_step() -> None:
    """pv_switch taking kvm0->lock, checked against the ownership facts of an aqmask store (which kvm->lock of
    the mdev its walk found it holds): the pre-state instance refutes it within 300,000 resource units, where the
    near groups used 40-200 million (docs/prove.md, "The cost of a check")."""
    program, lift, prover = _masks_over_guests()
    groups = lift.groups(ownership_expr(program, True))
    store = [(named, ps) for named, ps in groups
             if [program.threads[k].name for k in named] == ["aqmask_store.reserve5"]]
    assert len(store) == 1
    named, ps = store[0]
    step = next(a for a in program.actions
                if program.threads[a.thread].name == "pv_switch.vm0" and a.text == "mutex_lock(kvm0->lock)")
    ok, post = lift.step(step, prover.s, prover.me)
    assert {v for p in ps for v in lift.reads(p)} & lift.writes(step)  # the step may break the group
    sv = z3.Solver()
    sv.set("rlimit", 300_000)
    sv.add(lift.ranges(prover.s, every=False), ok,
           *instance(lift.group(named, ps, prover.s), prover.post.at(post)(prover.post.group(named, ps))))
    assert sv.check() == z3.unsat


def test_a_steps_own_group_over_the_guests_is_near(monkeypatch: pytest.MonkeyPatch) -> None:
    """A group about a thread and its own guest names the guest too (a key below 0): only the kinds count, so the
    step's own ownership facts are among the near groups (they were left out, and the checks that needed them went
    to every group)."""
    program, lift, prover = _masks_over_guests()
    own = Invariant("auto:lock-ownership", ownership_expr(program, True))
    first = program.actions[0]
    mine = [(named, ps) for named, ps in lift.groups(own.expr) if first.thread in named]
    assert [sorted(named) for named, _ in mine] == [[-1, first.thread]]  # the thread and its own guest
    seen: list[dict[str, list[z3.BoolRef]]] = []

    class Recorded:  # the first step's solvers: their hypotheses kept, no check made
        def __init__(self, prover: ParametricProver, hypotheses: dict[str, list[z3.BoolRef]]) -> None:
            seen.append(hypotheses)

        def decide(self, *args: object) -> tuple[None, str]:
            return None, pprove.NEAR

    monkeypatch.setattr(pprove, "_StepSolvers", Recorded)
    assert prover.inductive(own, [], time.monotonic() + 600) == (
        "UNKNOWN", "budget spent after 0 consecution checks")
    term = lift.group(*mine[0], prover.s)
    assert any(h.eq(term) for h in seen[0][pprove.NEAR])
