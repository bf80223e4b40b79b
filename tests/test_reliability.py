"""Issue 9: verdicts that say no more than was checked, and scenarios never silently changed.

Each test is a reproduction case of the issue (it failed before the fix).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from checker.cli.cli import main
from checker.report.results import (
    BOUNDED,
    EXIT_INCONCLUSIVE,
    EXIT_OK,
    EXIT_USAGE,
    EXIT_VIOLATION,
    HOLDS,
    NOT_APPLICABLE,
    NOT_WITNESSED,
    VIOLATED,
)

ROOT = Path(__file__).resolve().parent.parent

# one thread on v17: the VM fd, the vCPU fd, then the vfio device are closed: kvm is freed under
# vfio_ap_mdev_unset_kvm's feet, found at step 9 (docs/designs/v17.md)
V17_ONE_THREAD = """\
design: v17
constants:
  matrix: ["mdev0: 3 x 5"]
  attached: ["mdev0 -> kvm0"]
threads:
  - name: t
    run: [close_vm_fd, close_vcpu_fd, close_device]
"""
# kernel-facts §5 C2 on 6.8: adapter 4 leaves the host configuration while mdev1 (no guest) has it assigned;
# vfio_ap_mdev_cfg_remove locks matrix_mdev->kvm->lock through a NULL kvm at step 7 (after the scan took its
# serialisation and fetched QCI). Fixed in mainline.
C2_NULL_KVM = """\
design: "6.8"
constants: {vms: 1, mdevs: 2, adapters: [3, 4], domains: [5, 6], matrix: ["mdev0: 3,4 x 5", "mdev1: 4 x 6"],
            attached: ["mdev0 -> kvm0"]}
threads:
  - name: bus
    run: [{adapter_standby: {apid: 4}}]
"""
C2_DETAIL = "NULL dereference of struct kvm pointer: matrix_mdev->kvm->lock"


def run_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, dict]:  # type: ignore[type-arg]
    code = main(argv + ["--format", "json"])
    out, _ = capsys.readouterr()
    return code, json.loads(out)


def status(report: dict, name: str) -> str:  # type: ignore[type-arg]
    return next(p["status"] for p in report["properties"] if p["name"] == name)


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> str:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return str(p)


# ------------------------------------------------------------------ 1. a depth bound is never a pass


@pytest.mark.parametrize("strategy", ["bfs", "dfs"])
def test_violation_one_step_past_max_depth_is_found(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                      strategy: str) -> None:
    spec = write(tmp_path, C2_NULL_KVM)
    code, full = run_json(capsys, ["check", spec, "--strategy", strategy])
    assert code == EXIT_VIOLATION and len(next(p for p in full["properties"]
                                               if p["name"] == "memory-safety")["trace"]["steps"]) == 7
    code, cut = run_json(capsys, ["check", spec, "--strategy", strategy, "--max-depth", "6"])
    assert code == EXIT_VIOLATION and status(cut, "memory-safety") == VIOLATED
    ms = next(p for p in cut["properties"] if p["name"] == "memory-safety")
    assert ms["trace"]["length"] == 7 and ms["detail"] == C2_DETAIL
    assert cut["stats"]["max_depth"] == 6


def test_max_depth_in_the_spec_and_in_compare(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = write(tmp_path, C2_NULL_KVM + "check:\n  max_depth: 6\n")
    code, rep = run_json(capsys, ["check", spec])
    assert code == EXIT_VIOLATION and status(rep, "memory-safety") == VIOLATED
    other = write(tmp_path, C2_NULL_KVM.replace('design: "6.8"', "design: mainline"), "mainline.yaml")
    code = main(["compare", spec, other, "--max-depth", "6", "--format", "json"])
    data = json.loads(capsys.readouterr()[0])
    assert code == EXIT_INCONCLUSIVE  # a bounded search is never a complete comparison
    assert data["designs"][0]["result"] == VIOLATED
    ms = next(r for r in data["rows"] if r["property"] == "memory-safety")
    assert ms["verdicts"]["6.8"] == VIOLATED and ms["trace_lengths"]["6.8"] == 7


def test_lock_program_cut_by_max_depth_is_bounded(capsys: pytest.CaptureFixture[str]) -> None:
    # the deadlock is 3 steps deep; before the fix: HOLDS, complete, exit 0
    code, rep = run_json(capsys, ["check", str(ROOT / "examples/phil_N3.yaml"), "--max-depth", "1",
                                  "--only", "deadlock"])
    assert code == EXIT_INCONCLUSIVE
    assert rep["result"] == BOUNDED and rep["stats"]["complete"] is False and rep["stats"]["limit"] == "max-depth"
    assert status(rep, "deadlock") == BOUNDED


# ------------------------------------------------------------------ 3. N/A, not a vacuous HOLDS


def test_nothing_to_check_is_not_applicable(capsys: pytest.CaptureFixture[str]) -> None:
    code, rep = run_json(capsys, ["check", str(ROOT / "examples/phil_N3.yaml")])
    assert code == EXIT_VIOLATION  # the deadlock
    ms = next(p for p in rep["properties"] if p["name"] == "memory-safety")
    dr = next(p for p in rep["properties"] if p["name"] == "data-race")
    assert (ms["status"], ms["detail"]) == (NOT_APPLICABLE, "the model has no objects (no pool, no freed lock): "
                                                            "nothing to check")
    assert (dr["status"], dr["detail"]) == (NOT_APPLICABLE, "no field is accessed by two threads: "
                                                            "nothing to check")


# ------------------------------------------------------------------ 5. only selected witnesses decide


def test_unselected_design_witness_does_not_decide_the_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    spec = str(ROOT / "specs/v16-hook-lockdep.yaml")
    code, rep = run_json(capsys, ["check", spec])
    assert status(rep, "guest-apcb-changed") == NOT_WITNESSED
    assert (code, rep["result"]) == (EXIT_OK, HOLDS)
    code, rep = run_json(capsys, ["check", spec, "--only", "guest-apcb-changed"])
    assert (code, rep["result"]) == (EXIT_INCONCLUSIVE, NOT_WITNESSED)


def test_compare_prove_all_unknown_is_inconclusive(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    specs = []
    for name in ("v17-hotplug", "final-hotplug"):
        text = (ROOT / "specs" / f"{name}.yaml").read_text(encoding="utf-8").split("\nprove:")[0]
        specs.append(write(tmp_path, text + "\nprove:\n  timeout: 0.000001\n", f"{name}.yaml"))
    code = main(["compare", *specs, "--prove", "--format", "json"])
    data = json.loads(capsys.readouterr()[0])
    statuses = {r["status"] for rows in data["prove"].values() for r in rows}
    assert statuses == {"UNKNOWN"} and code == EXIT_INCONCLUSIVE


# ------------------------------------------------------------------ 6. scenarios never silently changed


@pytest.mark.parametrize(("line", "message"), [
    ("vms: 0", "3:8: error: constants.vms: vms must be 1..4"),
    ("vcpus: 0", "3:10: error: constants.vcpus: vcpus must be 1..2"),
    ("mdevs: 0", "3:10: error: constants.mdevs: mdevs must be 1..4"),
    ("adapters: []", "3:13: error: constants.adapters: 1 to 4 distinct adapter numbers"),
    ("domains: []", "3:12: error: constants.domains: 1 to 4 distinct domain numbers"),
])
def test_zero_and_empty_constants_are_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                             line: str, message: str) -> None:
    spec = write(tmp_path, f"design: v17\nconstants:\n  {line}\nthreads:\n  - name: t\n    run: [close_vm_fd]\n")
    assert main(["validate", spec]) == EXIT_USAGE
    assert capsys.readouterr()[1] == f"{spec}:{message}\n"


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "0"])
def test_non_finite_timeouts_in_a_spec_are_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                  value: str) -> None:
    spec = write(tmp_path, V17_ONE_THREAD + f"check:\n  timeout: {value}\nprove:\n  timeout: {value}\n")
    assert main(["validate", spec]) == EXIT_USAGE
    shown = value.replace(".", "") if value != "0" else "0.0"
    assert capsys.readouterr()[1] == (
        f"{spec}:9:12: error: check.timeout: expected a positive finite number, got {shown}\n"
        f"{spec}:11:12: error: prove.timeout: expected a positive finite number, got {shown}\n")


@pytest.mark.parametrize("command", ["check", "prove", "compare"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_timeouts_on_the_command_line_are_errors(capsys: pytest.CaptureFixture[str], command: str,
                                                            value: str) -> None:
    specs = [str(ROOT / "examples/phil_N3.yaml")] * (2 if command == "compare" else 1)
    assert main([command, *specs, "--timeout", value]) == EXIT_USAGE
    err = capsys.readouterr()[1]
    assert "Invalid value for '--timeout'" in err and value in err


# ------------------------------------------------------------------ 2. replay re-checks


def _report(capsys: pytest.CaptureFixture[str], tmp_path: Path, spec: str, name: str = "report.json") -> Path:
    out = tmp_path / name
    main(["check", spec, "--format", "json", "-o", str(out), "--quiet"])
    capsys.readouterr()
    return out


def _edit_trace(report: Path, prop: str, edit) -> Path:  # type: ignore[no-untyped-def]
    data = json.loads(report.read_text(encoding="utf-8"))
    tr = next(p for p in data["properties"] if p["name"] == prop)["trace"]
    edit(tr)
    out = report.with_name("edited.json")
    out.write_text(json.dumps(data), encoding="utf-8")
    return out


def _phil3(tmp_path: Path, programs: dict[str, list[list[str]]] | None = None, where: str = "") -> str:
    model = json.loads((ROOT / "examples/models/phil_N3.json").read_text(encoding="utf-8"))
    for t in model["threads"]:
        t["program"] = (programs or {}).get(t["name"], t["program"])
    d = tmp_path / where if where else tmp_path
    d.mkdir(exist_ok=True)
    (d / "model.json").write_text(json.dumps(model), encoding="utf-8")
    return write(d, "design: lock-program\nprogram: model.json\n", "phil_N3.yaml")


def test_replay_says_the_violation_still_happens(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = write(tmp_path, C2_NULL_KVM)
    report = _report(capsys, tmp_path, spec)
    code = main(["replay", spec, str(report), "--property", "memory-safety"])
    out = capsys.readouterr()[0]
    assert code == EXIT_VIOLATION
    assert out.splitlines()[-1] == f"memory-safety: the violation still happens (step 7 fires it again: {C2_DETAIL})"


def test_replay_after_a_fix_no_longer_reproduces(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from ap_model.eras.mainline import MAINLINE
    from checker.spec.registry import Registry

    spec = write(tmp_path, C2_NULL_KVM)
    report = _report(capsys, tmp_path, spec)
    fixed = Registry()
    fixed.register(MAINLINE.alias("6.8"))  # the reviewer's fix (the NULL check), applied to design 6.8 itself
    code = main(["replay", spec, str(report), "--property", "memory-safety"], registry=fixed)
    assert code == EXIT_OK
    assert capsys.readouterr()[0].splitlines()[-1] == (
        "memory-safety: no longer reproduces (all 7 steps apply, and memory-safety holds in the state they reach)")


def test_replay_of_a_fixed_lock_program(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = _phil3(tmp_path)
    report = _report(capsys, tmp_path, spec)
    assert main(["replay", spec, str(report), "--property", "deadlock"]) == EXIT_VIOLATION
    assert capsys.readouterr()[0].splitlines()[-1].startswith("deadlock: the violation still happens (the steps "
                                                              "end in a deadlock again: phil_0 waits for fork[1]")
    # phil_2 never holds two forks: the same three steps apply, and nobody is stuck
    fixed = _phil3(tmp_path, {"phil_2": [["acq", "fork[2]"], ["rel", "fork[2]"], ["acq", "fork[0]"],
                                         ["rel", "fork[0]"]]}, "fixed")
    assert main(["replay", fixed, str(report), "--property", "deadlock"]) == EXIT_OK
    assert capsys.readouterr()[0].splitlines()[-1] == (
        "deadlock: no longer reproduces (all 3 steps apply, and deadlock holds in the state they reach)")
    # the classic fix (phil_2 takes fork[0] first): step 3 no longer applies
    ordered = _phil3(tmp_path, {"phil_2": [["acq", "fork[0]"], ["acq", "fork[2]"], ["rel", "fork[2]"],
                                           ["rel", "fork[0]"]]}, "ordered")
    assert main(["replay", ordered, str(report), "--property", "deadlock"]) == EXIT_USAGE
    assert capsys.readouterr()[1] == (
        f"{report}: error: trace of 'deadlock' does not apply to {ordered}: step 3 (phil_2: phil_2, label "
        "'phil_2#0'): not enabled in this state\n")


@pytest.mark.parametrize(("edit", "why"), [
    (lambda t: (t["steps"].pop(), t.update(length=t["length"] - 1)), "digest: does not match the steps"),
    (lambda t: (t["steps"].clear(), t.update(length=0)), "digest: does not match the steps"),
    (lambda t: t["steps"].reverse(), "digest: does not match the steps"),
    (lambda t: t.update(threads=["x"]), "digest: does not match the steps"),
    (lambda t: t.update(length=2), "length: says 2 but there are 3 steps"),
    (lambda t: t["steps"][0].update(label="phil_1#0"), "digest: does not match the steps"),
    (lambda t: t.pop("digest"), "missing key 'digest'"),
])
def test_replay_refuses_an_edited_trace(capsys: pytest.CaptureFixture[str], tmp_path: Path, edit, why: str) -> None:  # type: ignore[no-untyped-def]
    spec = _phil3(tmp_path)
    report = _edit_trace(_report(capsys, tmp_path, spec), "deadlock", edit)
    assert main(["replay", spec, str(report), "--property", "deadlock"]) == EXIT_USAGE
    err = capsys.readouterr()[1]
    assert err.startswith(f"{report}: error: cannot replay: property 'deadlock': trace") and why in err, err


def test_replay_refuses_a_trace_of_another_spec_or_design(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    n4, n5 = str(ROOT / "examples/phil_N4.yaml"), str(ROOT / "examples/phil_N5.yaml")
    report = _report(capsys, tmp_path, n4)
    assert main(["replay", n5, str(report)]) == EXIT_USAGE
    assert capsys.readouterr()[1] == (f"{report}: error: trace of 'deadlock' does not apply to {n5}: the trace "
                                      f"was produced by spec {n4!r}, not {n5!r}\n")
    spec = write(tmp_path, C2_NULL_KVM)
    other = write(tmp_path / "..", C2_NULL_KVM.replace('design: "6.8"', "design: mainline"),
                  Path(spec).name)  # same file name, another design
    report = _report(capsys, tmp_path, spec)
    assert main(["replay", other, str(report), "--property", "memory-safety"]) == EXIT_USAGE
    assert "the trace was produced by design '6.8', not 'mainline'" in capsys.readouterr()[1]
