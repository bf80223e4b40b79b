"""A trace step shows the branch that ran, not every branch (issue 10, point 1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers_models import check, prop

from checker.cli.cli import main
from checker.lang.layout import bool_field
from checker.lang.program import ProgramBuilder


def two_openers():  # type: ignore[no-untyped-def]
    """Two threads open a device that admits one owner: the second gets -EPERM."""
    pb = ProgramBuilder("branches")
    taken = pb.var(bool_field("dev.taken"))
    failed = pb.var(bool_field("ghost.eperm"))
    for name in ("qemu0", "qemu1"):
        t = pb.thread(name)
        t.step("vfio_ap_mdev_set_kvm", "if taken: -EPERM; else take it; return",
               updates={pb.field("dev.taken"): True, pb.field("ghost.eperm"): taken},
               branches=[(taken, "another mdev has this kvm: -EPERM"), (taken == 0, "take it"),
                         (None, "return")])
    pb.sometimes("eperm", failed, "the second open fails")
    return pb.build()


def test_each_step_shows_only_its_branch() -> None:
    r = check(two_openers())
    witness = prop(r, "eperm").trace
    assert witness is not None
    assert [(s.thread, s.action) for s in witness.steps] == [
        ("qemu0", "take it; return"), ("qemu1", "another mdev has this kvm: -EPERM; return")]


def test_action_keeps_the_whole_text_for_other_views() -> None:
    program = two_openers()
    assert program.actions[0].text == "if taken: -EPERM; else take it; return"
    assert program.actions[0].shown_text(lambda cond: False) == "return"


SPEC = """\
design: final
constants: {adapters: [3], domains: [5], vms: 1, mdevs: 2}
threads:
  - {name: q0, run: [open_device: {mdev: 0, vm: 0}]}
  - {name: q1, run: [open_device: {mdev: 1, vm: 0}]}
properties:
  only: [second-open-eperm]
  sometimes:
    - {name: second-open-eperm, expr: q1.ret == EPERM}
"""


def test_vfio_ap_open_shows_the_eperm_branch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "open.yaml"
    spec.write_text(SPEC, encoding="utf-8")
    assert main(["check", str(spec), "--format", "json", "--quiet"]) == 0
    steps = json.loads(capsys.readouterr().out)["properties"][0]["trace"]["steps"]
    shown = [(s["thread"], s["action"]) for s in steps if s["function"] == "vfio_ap_mdev_set_kvm"
             and "kvm" in s["action"] and "pqap_hook" not in s["action"]]
    assert shown == [
        ("q0", "kvm_get_kvm; matrix_mdev->kvm = kvm; vfio_ap_mdev_update_guest_apcb; release_update_locks_for_kvm"),
        ("q1", "another mdev has this kvm: -EPERM; release_update_locks_for_kvm")]


def test_v15_assign_shows_which_check_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "assign.yaml"
    spec.write_text("""\
design: v15
constants: {adapters: [3], domains: [5], mdevs: 2, matrix: ["mdev1: 3 x 5"]}
threads:
  - {name: a, run: [assign_domain: {mdev: 0, apqi: 5}, assign_adapter: {mdev: 0, apid: 3}]}
properties:
  only: [refused]
  sometimes:
    - {name: refused, expr: a.ret == EADDRINUSE}
""", encoding="utf-8")
    assert main(["check", str(spec), "--format", "json", "--quiet"]) == 0
    steps = json.loads(capsys.readouterr().out)["properties"][0]["trace"]["steps"]
    assert [s["action"] for s in steps if s["function"] == "assign_adapter_store"][-1] == (
        "validate: APQN assigned to another mdev: -EADDRINUSE; "
        "mutex_unlock(ap_perms_mutex); mutex_unlock(matrix_dev->lock)")


@pytest.mark.parametrize(("design", "ok", "eperm"), [
    ("5.15", "kvm_get_kvm; matrix_mdev->kvm = kvm; kvm_arch_crypto_set_masks(matrix); unlock",
     "another mdev has this kvm: -EPERM; unlock"),
    ("v17", "add ap_guest; kvm_get_kvm; kvm->arch.crypto.data = matrix_mdev; set masks; unlock",
     "another guest has this kvm: -EPERM; unlock"),
])
def test_older_set_kvm_shows_the_branch_that_ran(design: str, ok: str, eperm: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "open.yaml"
    spec.write_text(SPEC.replace("design: final", f"design: \"{design}\""), encoding="utf-8")
    assert main(["check", str(spec), "--format", "json", "--quiet"]) == 0
    steps = json.loads(capsys.readouterr().out)["properties"][0]["trace"]["steps"]
    shown = [(s["thread"], s["action"]) for s in steps
             if s["function"] == "vfio_ap_mdev_set_kvm" and s["action"] in (ok, eperm)]
    assert shown == [("q0", ok), ("q1", eperm)]
