"""``apcheck prove --parametric --property check:KIND``: a check group as an invariant over any number of threads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from checker.cli.cli import main
from checker.cli.parametric_cli import _drop_check_caveat
from checker.prove.prove_results import CTI, PROVED, PropertyProof
from checker.search.run import build_program
from checker.spec.registry import default_registry
from checker.spec.spec import load_spec

KVM_RUN_ONLY = """name: kvm-run-only
design: final
constants: {vms: 1, mdevs: 1, domains: [5], matrix: ["mdev0: 3 x 5"], attached: ["mdev0 -> kvm0"]}
threads:
  - {name: vcpu0, run: [{kvm_run: {vm: 0}}]}
"""
KVM_RUN_AND_STORES = """name: kvm-run-and-stores
design: final
constants: {vms: 1, mdevs: 1, adapters: [3, 4], domains: [5], matrix: ["mdev0: 3 x 5"], attached: ["mdev0 -> kvm0"]}
threads:
  - {name: vcpu0, run: [{kvm_run: {vm: 0}}]}
  - {name: admin, run: [{assign_adapter: {mdev: 0, apid: 4}}, {unassign_adapter: {mdev: 0, apid: 4}}]}
"""
CAVEAT = "; runs up to the first failing check"


def _whole_runs(instances: str) -> str:
    """The scope of a PROVED row when every check group is PROVED too (no caveat)."""
    return ("all thread counts: any number of threads, each running any sequence of the operations any number of "
            f"times, an fd closed once, an mdev removed once ({instances})")


def _spec(tmp_path: Path, text: str = KVM_RUN_ONLY) -> str:
    path = tmp_path / "kvm-run.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_every_check_group_proves_for_any_number_of_vcpu_threads(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """KVM_RUN's PQAP intercept: vcpu->mutex, the hook's rwsem read-held, mdevs_lock when a hook is set; no
    copy ever unlocks what it does not hold, returns holding a lock, or reaches a freed kvm or mdev. Both
    check groups PROVED: the PROVED rows cover whole runs (no "up to the first failing check"). (Before
    heldsets followed the intercept's jumps, the held sets from handle_pqap on were unknown: CTI there.)"""
    rc = main(["prove", "--parametric", _spec(tmp_path), "--property", "check:lock-order", "--property",
               "check:memory-safety", "--property", "hook-safe", "--lemma", "lemma-mdev-state", "--lemma",
               "lemma-hook-target", "--lemma", "lemma-frame", "--crosscheck-states", "10", "--format", "json"])
    rows = json.loads(capsys.readouterr().out)["prove"]
    assert rc == 0
    assert [(r["property"], r["kind"], r["status"]) for r in rows] == [
        ("auto:lock-ownership", "derived", PROVED), ("check:lock-order", "check", PROVED),
        ("check:memory-safety", "check", PROVED), ("hook-safe", "always", PROVED)]
    assert {r["scope"] for r in rows} == {
        _whole_runs("1 operation instances; adapters [3, 4], domains [5], vms 1, vcpus 1, mdevs 1")}


def test_the_stores_state_chosen_kvm_lock_proves_for_any_number_of_threads(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The sysfs stores take the kvm->lock of ``matrix_mdev->kvm`` (get_update_locks_for_mdev): which kvm a copy
    holds is not a function of its pc, so the held sets there were unknown and check:lock-order had a CTI ("a
    step of any copy of assign_adapter.mdev0.apid3 breaks it"). ``auto:lock-ownership`` now says "held exactly
    when attached to that kvm" (heldsets.held_when): both check groups and the goals PROVED jointly, for whole
    runs."""
    rc = main(["prove", "--parametric", _spec(tmp_path, KVM_RUN_AND_STORES), "--property", "check:lock-order",
               "--property", "check:memory-safety", "--property", "hook-safe", "--property", "no-two-guests",
               "--lemma", "lemma-mdev-state", "--lemma", "lemma-hook-target", "--lemma", "lemma-frame",
               "--crosscheck-states", "10", "--format", "json"])
    rows = json.loads(capsys.readouterr().out)["prove"]
    assert rc == 0
    assert [(r["property"], r["status"]) for r in rows] == [
        ("auto:lock-ownership", PROVED), ("check:lock-order", PROVED), ("check:memory-safety", PROVED),
        ("hook-safe", PROVED), ("no-two-guests", PROVED)]
    assert all(r["detail"].endswith("jointly with every goal and lemma") for r in rows[1:])
    assert {r["scope"] for r in rows} == {
        _whole_runs("5 operation instances; adapters [3, 4], domains [5], vms 1, vcpus 1, mdevs 1")}


def test_a_check_group_is_named_only_as_a_goal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["prove", "--parametric", _spec(tmp_path), "--lemma", "check:lock-order"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "unknown always property 'check:lock-order'" in err
    assert "check groups (as --property): check:lock-order, check:memory-safety" in err


def test_every_check_group_proved_drops_the_caveat(tmp_path: Path) -> None:
    ld = load_spec(_spec(tmp_path), default_registry())
    program = build_program(ld.design, ld.scenario)
    scope = "all thread counts: ..." + CAVEAT

    def rows(memory_safety: str) -> list[PropertyProof]:
        return [PropertyProof(n, "check", s, "", 1, 0, scope=scope if s == PROVED else "")
                for n, s in (("check:lock-order", PROVED), ("check:memory-safety", memory_safety))]

    some, every = rows(CTI), rows(PROVED)
    _drop_check_caveat(program, some)
    _drop_check_caveat(program, every)
    assert [r.scope for r in some] == [scope, ""]
    assert [r.scope for r in every] == ["all thread counts: ..."] * 2


FIVE = ["no-host-guest-sharing", "no-two-guests", "no-double-assignment", "crycb-within-bounds", "hook-safe"]


@pytest.mark.slow  # about a minute
def test_mainline_goals_and_every_check_group_prove_for_whole_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """parametric-mainline's 34 operation instances: issue 11's five goals and every check group (memory-safety,
    lock-order, range) PROVED jointly for any number of threads, so the PROVED rows cover whole runs (no "up
    to the first failing check"). check:lock-order was 88 failing consecution pairs (the state-chosen kvm->lock:
    heldsets.held_when), check:memory-safety 98 (lemma-vm-ioctl-fd, lemma-store-active, the non-NULL local of
    lemma-close-local-kvm, and mdev_remove once per mdev)."""
    args = [a for g in [*FIVE, "check:memory-safety", "check:lock-order", "check:range"] for a in ("--property", g)]
    rc = main(["prove", "--parametric", "specs/parametric-mainline.yaml", *args, "--crosscheck-states", "5",
               "--format", "json"])
    rows = json.loads(capsys.readouterr().out)["prove"]
    assert rc == 0
    assert [(r["property"], r["status"]) for r in rows] == [
        ("auto:lock-ownership", PROVED), *[(g, PROVED) for g in FIVE], ("check:memory-safety", PROVED),
        ("check:lock-order", PROVED), ("check:range", PROVED)]
    assert all(r["detail"].endswith("jointly with every goal and lemma") for r in rows[1:])
    assert {r["scope"] for r in rows} == {
        _whole_runs("34 operation instances; adapters [3, 4], domains [5], vms 2, vcpus 1, mdevs 2")}
