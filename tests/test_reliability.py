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
    spec = write(tmp_path, V17_ONE_THREAD)
    code, full = run_json(capsys, ["check", spec, "--strategy", strategy])
    assert code == EXIT_VIOLATION and len(next(p for p in full["properties"]
                                               if p["name"] == "memory-safety")["trace"]["steps"]) == 9
    code, cut = run_json(capsys, ["check", spec, "--strategy", strategy, "--max-depth", "8"])
    assert code == EXIT_VIOLATION and status(cut, "memory-safety") == VIOLATED
    ms = next(p for p in cut["properties"] if p["name"] == "memory-safety")
    assert ms["trace"]["length"] == 9 and ms["detail"].startswith("use after free of kvm")
    assert cut["stats"]["max_depth"] == 8


def test_max_depth_in_the_spec_and_in_compare(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = write(tmp_path, V17_ONE_THREAD + "check:\n  max_depth: 8\n")
    code, rep = run_json(capsys, ["check", spec])
    assert code == EXIT_VIOLATION and status(rep, "memory-safety") == VIOLATED
    other = write(tmp_path, V17_ONE_THREAD.replace("v17", "final"), "final.yaml")
    code = main(["compare", spec, other, "--max-depth", "8", "--format", "json"])
    data = json.loads(capsys.readouterr()[0])
    assert code == EXIT_INCONCLUSIVE  # a bounded search is never a complete comparison
    assert data["designs"][0]["result"] == VIOLATED
    ms = next(r for r in data["rows"] if r["property"] == "memory-safety")
    assert ms["verdicts"]["v17"] == VIOLATED and ms["trace_lengths"]["v17"] == 9


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
    assert (dr["status"], dr["detail"]) == (NOT_APPLICABLE, "no shared fields declared in this model: "
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
    ("vms: 0", "3:8: error: constants.vms: vms must be 1..3"),
    ("vcpus: 0", "3:10: error: constants.vcpus: vcpus must be 1..2"),
    ("mdevs: 0", "3:10: error: constants.mdevs: mdevs must be 1..3"),
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
