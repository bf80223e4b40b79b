"""Scope said plainly (issue 11, item 4): what each PROVED covers; deadlock, leaks and
lock-order cycles as provable goals, each checked against the explicit engine's verdict;
BMC checks the lemmas at every depth.
"""

from __future__ import annotations

from pathlib import Path

from helpers_models import leak, use_after_free
from test_prove import twin_counter

from checker.prove.derived import AUTO_DEADLOCK, AUTO_LEAK, AUTO_LOCK_GRAPH
from checker.prove.prove import CTI, PROVED, VIOLATED, prove_program
from checker.search.run import build_program
from checker.spec.registry import default_registry
from checker.spec.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent


def program(path: str):  # type: ignore[no-untyped-def]
    spec = load_spec(str(ROOT / path), default_registry())
    return spec, build_program(spec.design, spec.scenario)


def test_scope_cyclic_scenario_and_this_scenario() -> None:
    res = prove_program(twin_counter())  # a cyclic thread; its only check group (range) is PROVED
    assert {p.property: p.scope for p in res.properties if p.status == PROVED} == dict.fromkeys(
        ["x_not_3", "same", "check:range", AUTO_DEADLOCK], "cyclic scenario (unbounded repetitions)")
    assert all(p.scope == "" for p in res.properties if p.status != PROVED)
    res = prove_program(leak(correct=True))
    assert {p.property: (p.status, p.scope) for p in res.properties} == {
        "check:memory-safety": (PROVED, "this scenario"), AUTO_DEADLOCK: (PROVED, "this scenario"),
        AUTO_LEAK: (PROVED, "this scenario")}


def test_scope_runs_up_to_the_first_failing_check() -> None:
    res = prove_program(use_after_free(), bmc_depth=3)
    by = res.by_name()
    assert by["check:memory-safety"].status == VIOLATED and by["check:memory-safety"].trace == [0, 1]
    # the relation has no successor after the use-after-free: deadlock freedom is proved for those runs only
    assert by[AUTO_DEADLOCK].status == PROVED
    assert by[AUTO_DEADLOCK].scope == "this scenario; runs up to the first failing check"


def test_leak_at_exit_is_a_goal() -> None:
    p = prove_program(leak(), bmc_depth=2).by_name()[AUTO_LEAK]
    assert p.status == VIOLATED and p.trace == [0] and p.bmc_depth == 1


def test_deadlock_and_lock_cycle_match_the_explicit_engine() -> None:
    """lockcycle3: the explicit engine reports a 3-step deadlock and a 3-class lock cycle."""
    _, prog = program("examples/lockcycle3.yaml")
    res = prove_program(prog, [AUTO_DEADLOCK, AUTO_LOCK_GRAPH], bmc_depth=7)
    dl, graph = res.by_name()[AUTO_DEADLOCK], res.by_name()[AUTO_LOCK_GRAPH]
    assert dl.status == VIOLATED and dl.trace is not None and len(dl.trace) == 3  # golden.json: deadlock, 3 steps
    assert graph.status == VIOLATED
    assert graph.detail.startswith("cycle ") and "every edge is reachable" in graph.detail


def test_lock_cycle_refuted_by_induction_on_final() -> None:
    """final-lockdep: lock-order HOLDS in the explicit search; the prover refutes the one
    candidate edge that would close a cycle and proves the graph acyclic."""
    spec, prog = program("specs/final-lockdep.yaml")
    p = prove_program(prog, [AUTO_LOCK_GRAPH], spec.prove["lemmas"]).by_name()[AUTO_LOCK_GRAPH]
    assert p.status == PROVED
    assert p.detail == ("no cycle in the lock-order graph: 15 candidate edges, 14 left after refuting 1 by "
                        "induction; the 14 left form no cycle")


def test_lock_cycle_of_v15_is_not_proved() -> None:
    """v15-lockdep: lock-order VIOLATED in the explicit search; never PROVED here. The cycle left is the
    splat's (vcpu->mutex -> matrix_dev->lock -> kvm->lock -> vcpu->mutex, the explicit search's); with the
    held sets of the state-chosen kvm->lock unknown it was an over-approximated ap_perms_mutex one."""
    _, prog = program("specs/v15-lockdep.yaml")
    p = prove_program(prog, [AUTO_LOCK_GRAPH]).by_name()[AUTO_LOCK_GRAPH]
    assert p.status == CTI
    assert p.detail.startswith("cycle kvm->lock -> vcpu->mutex -> matrix_dev->lock -> kvm->lock not excluded")


def test_bmc_checks_lemmas_at_every_depth() -> None:
    """x_not_2 is false at depth 2; with induction off, BMC names it instead of assuming it."""
    p = prove_program(twin_counter(), ["same"], ["x_not_2"], k=0, bmc_depth=3).by_name()["same"]
    assert p.status == CTI
    assert "lemma x_not_2 is false (violated at depth 2)" in p.detail
