"""Parametric proofs (checker.prove.parametric): the lifted relation for any number of copies of each
thread, instantiated at small sizes against the explicit engine, and what it proves."""

from __future__ import annotations

import pytest

from checker.lang.program import Program
from checker.prove.parametric.instance import InstanceMismatch, check_instance, copies_scenario
from checker.prove.parametric.lift import Lifting
from checker.prove.parametric.pprove import SCOPE, Invariant, ParametricProver
from checker.search.run import build_program
from checker.spec.registry import default_registry
from checker.spec.spec import LoadedSpec, load_spec


def _load(path: str) -> tuple[LoadedSpec, Program]:
    ld = load_spec(path, default_registry())
    return ld, build_program(ld.design, ld.scenario)


def test_per_thread_fields_are_the_pcs_rwsem_bits_and_locals() -> None:
    _, p = _load("specs/final-ownership.yaml")
    names = sorted(f.name for f in Lifting(p).per_thread)
    assert names == sorted(["ghost.vcpu0.in_handle_pqap", "admin.ret", "vcpu0.pc", "admin.pc", "unbind.pc",
                            "kvm0->arch.crypto.pqap_hook_rwsem.reader[0]",
                            "kvm0->arch.crypto.pqap_hook_rwsem.reader[1]",
                            "kvm0->arch.crypto.pqap_hook_rwsem.reader[2]"])


def test_instance_of_one_copy_each_agrees_with_the_explicit_engine() -> None:
    ld, p = _load("specs/final-lockdep.yaml")
    r = check_instance(ld.design, ld.scenario, p, [1, 1, 1])
    assert (r.states, r.transitions, r.complete) == (146, 286, True)


@pytest.mark.slow
def test_instance_of_two_vcpu_threads_agrees_with_the_explicit_engine() -> None:
    ld, p = _load("specs/final-lockdep.yaml")
    r = check_instance(ld.design, ld.scenario, p, [2, 1, 1])
    assert (r.states, r.transitions, r.complete) == (488, 1016, True)


def test_a_relation_that_drops_behaviour_disagrees_with_the_explicit_engine() -> None:
    ld, p = _load("specs/final-lockdep.yaml")
    orig = Lifting.updated

    def broken(self: Lifting, a, s, me):  # type: ignore[no-untyped-def]
        shared, own = orig(self, a, s, me)
        if a.function == "assign_adapter_store":
            return {}, own  # the assign body dropped: only the pc moves
        return shared, own

    Lifting.updated = broken  # type: ignore[method-assign]
    try:
        with pytest.raises(InstanceMismatch, match="assign"):
            check_instance(ld.design, ld.scenario, p, [1, 1, 1])
    finally:
        Lifting.updated = orig  # type: ignore[method-assign]


def test_copies_scenario_names_the_copies() -> None:
    ld, _ = _load("specs/final-lockdep.yaml")
    sc = copies_scenario(ld.scenario, [2, 1, 0])
    assert [t.name for t in sc.threads] == ["vcpu0", "vcpu0-copy2", "admin"]


def test_goals_with_no_step_writing_them_prove_for_every_thread_count() -> None:
    _, p = _load("specs/final-ownership.yaml")
    props = {x.name: x.expr for x in p.properties}
    res = ParametricProver(p, 30).prove([Invariant(n, props[n]) for n in ("no-two-guests", "no-host-guest-sharing")],
                                        [])
    assert [(r.property, r.status) for r in res] == [("auto:lock-ownership", "PROVED"), ("no-two-guests", "PROVED"),
                                                     ("no-host-guest-sharing", "CTI")]
    assert res[1].scope == SCOPE and res[2].scope == ""
    assert res[1].assumed == ["auto:lock-ownership"]
    assert "apmask_commit" in res[2].detail
