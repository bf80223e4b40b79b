"""The lifted relation over an instance pool of any size (checker.prove.parametric.poollift)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import pytest
import z3

from checker.lang.expr import INT, And, Expr, If, Implies, Not, Or, Select, Slot, lift
from checker.lang.layout import bool_field
from checker.lang.program import ProgramBuilder
from checker.lang.program_types import Member, Program
from checker.prove.parametric.instance import InstanceMismatch
from checker.prove.parametric.lift import LiftError, PState
from checker.prove.parametric.poolinstance import check_pool_instance
from checker.prove.parametric.poollift import PoolLifting
from checker.prove.parametric.poolread import Loop, PoolReading
from checker.prove.parametric.poolsizes import Sized, check_pool_size
from checker.prove.parametric.pprove import Invariant, ParametricProver
from checker.prove.prove_results import CTI, PROVED


def _claims(n: int, locked: bool, next_device: bool = False, busy_at_start: int = -1,
            skip_last: bool = False) -> tuple[Program, list[Invariant]]:
    """``n`` devices with a ``busy`` flag; thread kind ``claim.devK`` (own member: device K, any number of
    threads, each looping): [take claim_lock;] wait until no other device is busy; mark K busy;
    [release the lock;] mark K free. Goal: at most one device busy; lemma: a thread past the wait finds
    no other device busy. ``skip_last``: the wait's loop misses the last device (a loop bound off by one)."""
    pb = ProgramBuilder("claim")
    g = pb.mutex("claim_lock")
    busy = [bool_field(f"dev{k}.busy", init=k == busy_at_start) for k in range(n)]
    for f in busy:
        pb.var(f)
    for k in range(n):
        t = pb.thread(f"claim.dev{k}", cyclic=True)
        if locked:
            t.lock(g, "claim")
        others = And(*[Not(b.var) for j, b in enumerate(busy) if j != k and not (skip_last and j == n - 1)])
        if next_device:  # "and the next device is not busy": names one particular other member
            others = And(others, Not(busy[(k + 1) % n].var))
        t.step("claim", "no other device busy", guard=others)
        t.step("claim", "mark mine busy", updates={busy[k]: True})
        if locked:
            t.unlock(g, "claim")
        t.step("release", "mark mine free", updates={busy[k]: False})
    pb.instance_pool("dev", [Member([], [busy[k]], [], [f"dev{k}"]) for k in range(n)])
    program = pb.build()
    at_set = 2 if locked else 1
    goal = Invariant("at-most-one-busy", And(*[Not(And(busy[j].var, busy[k].var))
                                               for j in range(n) for k in range(j + 1, n)]))
    lemma = Invariant("checked-then-none-busy", And(*[
        Implies(program.threads[k].pc.var == at_set, And(*[Not(b.var) for j, b in enumerate(busy) if j != k]))
        for k in range(n)]))
    return program, [goal, lemma]


def _prove(program: Program, invariants: list[Invariant]) -> dict[str, str]:
    lift = PoolLifting(program, "dev", {th.name: {"dev": th.index} for th in program.threads})
    goal, lemma = invariants
    prover = ParametricProver(program, timeout_s=30, lift=lift)
    return {row.property: row.status for row in prover.prove([goal], [lemma])}


def test_at_most_one_device_busy_is_proved_for_every_number_of_devices_and_threads() -> None:
    assert _prove(*_claims(3, locked=True)) == {"auto:lock-ownership": PROVED, "at-most-one-busy": PROVED}


def test_the_race_without_the_lock_is_a_cti_for_some_size() -> None:
    assert _prove(*_claims(3, locked=False))["at-most-one-busy"] == CTI


def test_a_step_naming_one_particular_other_member_is_refused() -> None:
    program, invariants = _claims(3, locked=True, next_device=True)
    lift = PoolLifting(program, "dev", {th.name: {"dev": th.index} for th in program.threads})
    with pytest.raises(LiftError, match="dev1.busy: names member 1 of the pool outside its own member and its loops"):
        lift.check_liftable()


def test_a_member_starting_unlike_the_others_is_refused() -> None:
    program, _ = _claims(3, locked=True, busy_at_start=2)
    with pytest.raises(LiftError, match="dev2.busy: member 2 starts unlike member 0"):
        PoolLifting(program, "dev", {})


def test_two_members_are_too_few_to_tell_a_loop_from_one_member() -> None:
    program, _ = _claims(2, locked=True)
    with pytest.raises(LiftError, match="at least three members"):
        PoolLifting(program, "dev", {})


def test_an_or_over_the_other_members_reads_as_exists() -> None:
    program, _ = _claims(3, locked=True)
    lift = PoolLifting(program, "dev", {})
    busy = [f for f in program.layout.fields if f.name.endswith(".busy")]
    groups = lift.groups(Or(*[b.var for b in busy]))
    assert [named for named, _ in groups] == [()]  # one conjunct, no member left outside the loop
    assert "Exists" in str(lift.group((), groups[0][1], lift.state("s")))


def _owners(program: Program) -> dict[str, dict[str, int]]:
    return {th.name: {"dev": th.index} for th in program.threads}


def test_the_lifting_at_the_built_size_agrees_with_the_explicit_engine_on_every_reachable_state() -> None:
    locked, _ = _claims(3, locked=True)
    racy, _ = _claims(3, locked=False)
    assert check_pool_instance(locked, "dev", _owners(locked)).text() == "on all 19 reachable states (27 transitions)"
    assert check_pool_instance(racy, "dev", _owners(racy)).text() == "on all 27 reachable states (66 transitions)"


def test_the_cross_check_catches_a_loop_read_with_the_wrong_quantifier(monkeypatch: pytest.MonkeyPatch) -> None:
    # "no other device busy" read as "some other device not busy": more steps enabled than the program has
    real = PoolReading.loop_term

    def exists_for_forall(self: PoolReading, lp: Loop, s: PState, binding: Mapping[int, z3.ExprRef]) -> z3.ExprRef:
        return real(self, dataclasses.replace(lp, op="or" if lp.op == "and" else lp.op), s, binding)
    monkeypatch.setattr(PoolReading, "loop_term", exists_for_forall)
    program, _ = _claims(3, locked=True)
    with pytest.raises(InstanceMismatch, match="claim.dev1: claim: no other device busy: lifted only"):
        check_pool_instance(program, "dev", _owners(program))


def test_orbit_copies_run_as_member_0s_kind_and_a_lone_conjunct_about_one_is_refused() -> None:
    program, (goal, lemma) = _claims(3, locked=True)
    orbits = {th.name: "claim" for th in program.threads}
    lift = PoolLifting(program, "dev", _owners(program), orbits=orbits)
    assert lift.dropped == {1, 2}  # claim.dev1 and claim.dev2: claim.dev0's steps renamed
    prover = ParametricProver(program, timeout_s=30, lift=lift)
    assert {r.property: r.status for r in prover.prove([goal], [lemma])} == {
        "auto:lock-ownership": PROVED, "at-most-one-busy": PROVED}
    busy = [f for f in program.layout.fields if f.name.endswith(".busy")]
    lone = Implies(program.threads[1].pc.var == 2, Not(busy[0].var))  # about claim.dev1 only
    with pytest.raises(LiftError, match="about claim.dev1 is no conjunct about member 0's thread renamed"):
        lift.groups(lone)


def test_two_loops_side_by_side_are_two_quantifiers() -> None:
    """``no other device busy and no other device flagged``: two classes of copies in one ``and``; reading only
    the first as a loop would drop the second (more steps enabled: the cross-check finds them)."""
    n = 3
    pb = ProgramBuilder("two-loops")
    busy = [bool_field(f"dev{k}.busy", init=False) for k in range(n)]
    flag = [bool_field(f"dev{k}.flag", init=False) for k in range(n)]
    for f in busy + flag:
        pb.var(f)
    for k in range(n):
        t = pb.thread(f"claim.dev{k}", cyclic=True)
        t.step("flag", "flag mine", updates={flag[k]: True})
        t.step("claim", "no other busy or flagged", guard=And(*[Not(busy[j].var) for j in range(n) if j != k],
                                                             *[Not(flag[j].var) for j in range(n) if j != k]),
               updates={busy[k]: True})
        t.step("release", "mine free, unflagged", updates={busy[k]: False, flag[k]: False})
    pb.instance_pool("dev", [Member([], [busy[k], flag[k]], [], [f"dev{k}"]) for k in range(n)])
    program = pb.build()
    report = check_pool_instance(program, "dev", _owners(program))
    assert report.complete and report.transitions > 0


def _offers(n: int) -> tuple[Program, list[Invariant]]:
    """``n`` devices, each ``ready`` (offered) or ``busy`` (taken). ``offer.devK`` offers device K when it is not
    busy; ``put.devK`` gives it back; ``take`` (no device of its own), under the pool lock, walks the list to the
    first ready device and takes it (busy, no longer ready). Goal: no device both ready and busy; lemma: the
    first ready device is not busy (a find-first in an invariant)."""
    pb = ProgramBuilder("offers")
    lk = pb.mutex("pool_lock")
    slots = tuple(f"dev{k}" for k in range(n))
    ready = [bool_field(f"dev{k}.ready", init=False) for k in range(n)]
    busy = [bool_field(f"dev{k}.busy", init=False) for k in range(n)]
    for f in ready + busy:
        pb.var(f)

    def first_ready() -> Expr:
        out: Expr = lift(-1, INT)
        for j in reversed(range(n)):
            out = If(ready[j].var, Slot(j, slots), out)
        return out
    for k in range(n):
        pb.thread(f"offer.dev{k}", cyclic=True).step("offer", "offer mine", guard=Not(busy[k].var),
                                                    updates={ready[k]: True})
        pb.thread(f"put.dev{k}", cyclic=True).step("put", "give mine back", guard=busy[k].var,
                                                  updates={busy[k]: False})
    t = pb.thread("take", cyclic=True)
    t.lock(lk, "take")
    found = first_ready()
    t.step("take", "take the first ready device", updates={
        **{busy[j]: If(found == j, True, busy[j].var) for j in range(n)},
        **{ready[j]: If(found == j, False, ready[j].var) for j in range(n)}})
    t.unlock(lk, "take")
    pb.instance_pool("dev", [Member([], [ready[k], busy[k]], [], [slots[k]]) for k in range(n)])
    program = pb.build()
    goal = Invariant("never-ready-and-busy", And(*[Not(And(ready[k].var, busy[k].var)) for k in range(n)]))
    lemma = Invariant("first-ready-not-busy", Not(Select([b.var for b in busy], first_ready(), False)))
    return program, [goal, lemma]


def _offer_owners(program: Program) -> dict[str, dict[str, int]]:
    return {th.name: {"dev": int(th.name[-1])} for th in program.threads if th.name != "take"}


def test_a_find_first_over_the_pool_is_read_as_some_member_passing_and_proved_for_every_size() -> None:
    program, (goal, lemma) = _offers(3)
    lift = PoolLifting(program, "dev", _offer_owners(program))
    lift.check_liftable()
    rows = ParametricProver(program, timeout_s=30, lift=lift).prove([goal, lemma], [])
    assert {r.property: r.status for r in rows} == {
        "auto:lock-ownership": PROVED, "never-ready-and-busy": PROVED, "first-ready-not-busy": PROVED}
    # in an invariant, the lookup is every member it may stop at: a quantified element
    (named, ps), = lift.groups(lemma.expr)
    assert "ForAll(@found0" in str(lift.group(named, ps, lift.state("s")))


def test_at_the_built_size_the_find_first_stops_at_the_first_in_list_order() -> None:
    # several devices may be ready at once: only the list's order gives the explicit engine's successor
    program, _ = _offers(3)
    report = check_pool_instance(program, "dev", _offer_owners(program))
    assert report.text() == "on all 81 reachable states (324 transitions)"


def test_the_cross_check_catches_a_find_first_stopping_at_the_wrong_member(monkeypatch: pytest.MonkeyPatch) -> None:
    def last_first(self: PoolReading, passes: Callable[[z3.ExprRef], z3.BoolRef], s: PState,
                   test: Expr) -> z3.ExprRef:
        assert self.members is not None
        out: z3.ExprRef = z3.IntVal(0)
        for i in range(self.members):  # the walk from the list's tail
            out = z3.If(passes(z3.IntVal(i)), z3.IntVal(i), out)
        return out
    monkeypatch.setattr(PoolReading, "_chosen_member", last_first)
    program, _ = _offers(3)
    with pytest.raises(InstanceMismatch, match="take: take the first ready device"):
        check_pool_instance(program, "dev", _offer_owners(program))


def _sized(n: int, **kw: object) -> Sized:
    program, _ = _claims(n, locked=True, **kw)  # type: ignore[arg-type]
    return Sized(program, _owners(program), {th.name: "claim" for th in program.threads})


def test_the_lifting_of_three_devices_at_four_agrees_with_the_program_built_with_four() -> None:
    report = check_pool_size(_sized(3), _sized(4), "dev", [])
    assert report.text() == "on all 29 reachable states (44 transitions)"


def test_a_builder_not_uniform_in_the_pool_is_caught_at_the_other_size() -> None:
    # built with four, the claim's wait misses the last device: three devices read back cannot foresee it
    with pytest.raises(InstanceMismatch, match="pool dev at 4 members: state .*: claim.dev0 at .*: explicit only"):
        check_pool_size(_sized(3), _sized(4, skip_last=True), "dev", [])
    with pytest.raises(InstanceMismatch, match="the explicit initial state is not the lifted initial state"):
        check_pool_size(_sized(3), _sized(4, busy_at_start=3), "dev", [])
