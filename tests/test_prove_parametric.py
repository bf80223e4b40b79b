"""Parametric proofs (checker.prove.parametric): the lifted relation for any number of copies of each
thread, instantiated at small sizes against the explicit engine, and what it proves."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from checker.cli.cli import main
from checker.lang.expr import Expr
from checker.lang.program import Program
from checker.prove.goals import ownership_expr
from checker.prove.parametric.instance import InstanceMismatch, check_instance, copies_scenario
from checker.prove.parametric.lift import Lifting
from checker.prove.parametric.pprove import PER_CHECK_S, SCOPE, Invariant, ParametricProver
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


@pytest.mark.slow
def test_instance_of_two_assigning_threads_agrees_with_the_explicit_engine() -> None:
    """Two copies of final-hotplug's assign_adapter(mdev1, 3) against one unassign and one vCPU."""
    ld, p = _load("specs/final-hotplug.yaml")
    r = check_instance(ld.design, ld.scenario, p, [1, 1, 2])
    assert (r.states, r.transitions, r.complete) == (521, 1044, True)


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


def test_universal_scenario_has_one_thread_per_operation_instance() -> None:
    d = default_registry().get("final")
    sc = d.universal_scenario({"vms": 2, "mdevs": 2}, ["kvm_run", "assign_adapter", "close_vm_fd"])
    assert [(t.name, t.cyclic) for t in sc.threads] == [
        ("kvm_run.vm0.vcpu0", False), ("kvm_run.vm1.vcpu0", False),
        ("close_vm_fd.vm0", False), ("close_vm_fd.vm1", False),
        ("assign_adapter.mdev0.apid3", False), ("assign_adapter.mdev0.apid4", False),
        ("assign_adapter.mdev1.apid3", False), ("assign_adapter.mdev1.apid4", False)]
    assert d.universal_once() == ("close_vm_fd", "close_vcpu_fd", "mdev_remove")


def test_v16_hook_stale_hook_refuted_with_a_replayed_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """5.15's -EPERM path leaves the PQAP hook naming the mdev. The open does not fail (the group notifier
    drops set_kvm's -EPERM), so the fd is closed before the remove: 17 steps (14 when the model failed the
    open). The explicit engine finds it at one thread per operation instance (BMC on the lifted relation did
    not reach depth 17 in 55 CPU minutes), the counterexample is a spec the explicit engine replays and
    checks. (A 10-step path through an mdev remove that passed its wait during an open in progress was found
    before that wait was made faithful: tests/test_false_reports.py::test_9.)"""
    rc = main(["prove", "--parametric", "specs/parametric-hook-5.15.yaml", "--property", "hook-safe", "--bmc", "17",
               "--counterexample-dir", str(tmp_path), "--crosscheck-states", "0", "--no-auto-lemmas",
               "--format", "json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 1
    (row,) = out["prove"]
    assert (row["property"], row["status"], row["bmc_depth"], row["scope"]) == ("hook-safe", "VIOLATED", 17, None)
    written = tmp_path / "parametric-v16-hook-hook-safe.yaml"
    doc = yaml.safe_load(written.read_text())
    assert [t["name"] for t in doc["threads"]] == ["kvm_run.vm0.vcpu0", "open_device.mdev1.vm0", "close_device.mdev1",
                                                   "mdev_remove.mdev1"]
    assert row["detail"] == ("violated in 17 steps with 4 thread(s) (found by the explicit engine, one thread per "
                             "operation instance); replayed by the explicit engine; "
                             f"written to {written} (apcheck check {written})")
    assert main(["check", str(written), "--format", "json"]) == 1
    checked = json.loads(capsys.readouterr().out)
    assert {p["name"]: p["status"] for p in checked["properties"]}["hook-safe"] == "VIOLATED"
    # too short a bound: neither the explicit engine's 17 steps nor a BMC trace fits; the row says so
    rc = main(["prove", "--parametric", "specs/parametric-hook-5.15.yaml", "--property", "hook-safe", "--bmc", "3",
               "--counterexample-dir", str(tmp_path / "short"), "--crosscheck-states", "0", "--no-auto-lemmas",
               "--format", "json"])
    (row,) = json.loads(capsys.readouterr().out)["prove"]
    assert (rc, row["status"]) == (3, "CTI")
    assert row["detail"].endswith("; BMC: no violation up to depth 3 for any number of threads")


def test_parametric_unknown_design_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prove", "--parametric", "no-such-design"]) == 2
    assert "unknown design 'no-such-design'" in capsys.readouterr().err


@pytest.mark.slow  # 34 operation instances: 15-20 s (auto:lock-ownership); the quick suite proves the five
# goals on this spec's operations at 1-VM sizes (test_prove_parametric_sizes.py, small grid)
def test_mainline_five_goals_proved_for_every_thread_count(capsys: pytest.CaptureFixture[str]) -> None:
    """KVM_RUN on two VMs, assign/unassign of two adapters, the domain and the control domain on their two mdevs,
    closing and removing them (lemma-mdev-removed), unbinding either queue, by any number of threads."""
    out = _five_goals_proved("specs/parametric-mainline.yaml", capsys)
    rows = {r["property"]: r for r in out["prove"]}
    assert rows["auto:lock-ownership"]["kind"] == "derived"
    assert rows["hook-safe"]["scope"] == (
        "all thread counts: any number of threads, each running any sequence of the operations any number of "
        "times, an fd closed once, an mdev removed once "
        "(34 operation instances; adapters [3, 4], domains [5], vms 2, vcpus 1, mdevs 2); "
        "runs up to the first failing check")
    assert rows["hook-safe"]["detail"].endswith("jointly with every goal and lemma")
    assert out["crosscheck"].startswith("lifted relation at one thread per operation instance agrees exactly")


@pytest.mark.slow  # 40 operation instances: about 40 s under load
@pytest.mark.long
def test_mainline_goals_with_apmask_aqmask_stores(capsys: pytest.CaptureFixture[str]) -> None:
    """The same with a host writing apmask and aqmask (reserve and release): any number of stores, reprobes
    and assigns at once. Provable since the reprobe detaches the driver bound when it runs and re-reads the
    reservation under the queue's device lock, and lemma-binding-steps says the binding thread holds it."""
    out = _five_goals_proved("specs/parametric-mainline-masks.yaml", capsys)
    assert "(40 operation instances;" in {r["property"]: r for r in out["prove"]}["hook-safe"]["scope"]


def _five_goals_proved(spec: str, capsys: pytest.CaptureFixture[str]) -> Any:
    """``prove --parametric SPEC`` of issue 11's five goals: exit 0, each PROVED with auto:lock-ownership."""
    goals = ["no-host-guest-sharing", "no-two-guests", "no-double-assignment", "crycb-within-bounds", "hook-safe"]
    rc = main(["prove", "--parametric", spec, *[x for g in goals for x in ("--property", g)], "--crosscheck-states",
               "5", "--format", "json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert [r["status"] for r in out["prove"]] == ["PROVED"] * 6
    return out


def test_parametric_refuses_what_it_does_not_do(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prove", "--parametric", "final", "--engine", "spacer"]) == 2
    assert "--parametric proves by 1-induction" in capsys.readouterr().err


def _remove_scenario() -> tuple[Program, dict[str, Expr], list[str]]:
    """KVM_RUN, close and remove of mdev0 on mainline, any number of each: the program, its always properties and
    the lemmas hook-safe needs but lemma-mdev-removed."""
    design = default_registry().get("mainline")
    constants = {"vms": 1, "mdevs": 1, "domains": [5], "matrix": ["mdev0: 3 x 5"], "attached": ["mdev0 -> kvm0"]}
    p = design.build(design.universal_scenario(constants, ("kvm_run", "close_device", "mdev_remove")))
    always = {x.name: x.expr for x in p.properties if x.kind == "always"}
    return p, always, ["no-double-assignment", "no-two-guests", "lemma-mdev-state", "lemma-hook-target",
                       "lemma-guest-is-shadow", "lemma-shadow-within-bounds", "lemma-assigned-not-reserved",
                       "lemma-binding-steps", "lemma-queue-data", "lemma-kvm-refs", "lemma-close-local-kvm",
                       "lemma-frame"]


def test_mdev_remove_needs_the_removed_mdev_lemma() -> None:
    """KVM_RUN, close and remove of one mdev, any number of each: without lemma-mdev-removed a freed mdev may
    still be named by the KVM's PQAP hook in the induction, and hook-safe is a CTI at handle_pqap; with it,
    PROVED."""
    p, always, lemmas = _remove_scenario()
    out = []
    for extra in ([], ["lemma-mdev-removed"]):
        rows = ParametricProver(p, 30.0).prove([Invariant("hook-safe", always["hook-safe"])],
                                               [Invariant(n, always[n]) for n in lemmas + extra])
        out.append([(r.property, r.status) for r in rows])
        assert rows[1].detail == ("not inductive: a step of any copy of kvm_run.vm0.vcpu0: handle_pqap: "
                                  "mutex_lock(matrix_dev->mdevs_lock) breaks it" if not extra else
                                  "inductive for every number of threads (49 consecution checks)")
    assert out == [[("auto:lock-ownership", "PROVED"), ("hook-safe", "CTI")],
                   [("auto:lock-ownership", "PROVED"), ("hook-safe", "PROVED")]]


def test_a_check_refuted_under_fewer_hypotheses_is_not_solved_again() -> None:
    """ParametricProver keeps each refuted consecution check with the formulas it assumed: a later attempt
    assuming at least those reuses it (all 49 here), one assuming fewer solves it again (the CTI without
    lemma-mdev-removed is found as on a fresh prover)."""
    p, always, names = _remove_scenario()
    goal, removed = Invariant("hook-safe", always["hook-safe"]), Invariant("lemma-mdev-removed",
                                                                           always["lemma-mdev-removed"])
    lemmas = [Invariant(n, always[n]) for n in names]
    prover = ParametricProver(p, 30.0)
    prover.assumed.append(Invariant("auto:lock-ownership", ownership_expr(p)))
    far = time.monotonic() + 600
    assert prover.inductive(goal, [*lemmas, removed], far) == (
        "PROVED", "inductive for every number of threads (49 consecution checks)")
    assert prover.inductive(goal, [removed, *lemmas], far) == (
        "PROVED", "inductive for every number of threads (49 consecution checks, 49 of them refuted in an earlier "
        "attempt)")
    assert prover.inductive(goal, lemmas, far) == (
        "CTI", "not inductive: a step of any copy of kvm_run.vm0.vcpu0: handle_pqap: "
        "mutex_lock(matrix_dev->mdevs_lock) breaks it")


def test_the_budget_allows_each_check_the_proof_may_make() -> None:
    """A proof's budget is the caller's, or PER_CHECK_S for each consecution check where that is more: the proof
    below makes 49 checks, the count the budget is computed from; out of budget, the row says how far it got."""
    p, always, names = _remove_scenario()
    formulas = [Invariant(n, always[n]) for n in ["hook-safe", *names, "lemma-mdev-removed"]]
    prover = ParametricProver(p, 30.0)
    prover.assumed.append(Invariant("auto:lock-ownership", ownership_expr(p)))
    assert prover.budget(formulas, 0.0) == pytest.approx(49 * PER_CHECK_S)
    assert prover.budget(formulas, 600.0) == 600.0
    assert prover.inductive(formulas[0], formulas[1:], time.monotonic()) == (
        "UNKNOWN", "budget spent after 0 consecution checks")
