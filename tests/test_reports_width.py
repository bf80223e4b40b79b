"""--width N: a compact layout for mail (issue 10, point 3)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

from checker.cli.cli import build, main, resolve_options
from checker.report.lockdep import lockdep_name
from checker.report.report_text import render_result, render_trace
from checker.report.results import CheckResult, Trace, TraceStep
from checker.search.run import check_program
from checker.spec.registry import default_registry
from checker.spec.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent


def trace() -> Trace:
    long_change = [(f"mdev0.field{i}", "0", "1") for i in range(12)]
    return Trace(["vcpu0", "admin", "idle"], [
        TraceStep(1, "vcpu0", "kvm_vcpu_ioctl", "KVM_RUN", "mutex_lock(kvm0.vcpu0->mutex)", ["kvm0.vcpu0->mutex"], []),
        TraceStep(2, "admin", "ap_apqn_in_matrix_owned_by_def_drv", "assign_adapter_store",
                  "mutex_lock(ap_perms_mutex)", ["ap_perms_mutex"], long_change),
    ], [0, 1])


def test_default_layout_unchanged_keeps_idle_columns_and_cuts_changes() -> None:
    text = render_trace(trace())
    assert "idle" in text.splitlines()[0] and "..." in text


def test_compact_table_drops_idle_threads_and_cuts_nothing() -> None:
    text = render_trace(trace(), width=160)
    assert all(len(line) <= 160 for line in text.splitlines())
    header = text.splitlines()[0].split()
    assert header[:3] == ["#", "vcpu0", "(KVM_RUN)"] and "admin" in header and "idle" not in text
    assert "..." not in text and "mdev0.field11: 0 -> 1" in " ".join(text.split())


def test_narrow_width_falls_back_to_one_block_per_step() -> None:
    text = render_trace(trace(), width=72)
    lines = text.splitlines()
    assert all(len(line) <= 72 for line in lines)
    assert lines[0] == "1  vcpu0  (KVM_RUN) kvm_vcpu_ioctl: mutex_lock(kvm0.vcpu0->mutex)"
    assert lines[1] == "          held: kvm0.vcpu0->mutex"
    assert lines[2].startswith("2  admin  (assign_adapter_store) ap_apqn_in_matrix_owned_by_def_drv:")
    assert "ap_apqn_in_matrix_owned_by_def_drv" in text  # long names stay whole
    assert "mdev0.field11: 0 -> 1" in " ".join(text.split()) and "..." not in text


def test_cli_width_100_on_the_v15_report(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(ROOT / "specs/v15-lockdep.yaml"), "--width", "100"]) == 1
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 100
    assert "...\n" not in out
    assert "7  admin  (assign_adapter_store) assign_adapter_store: set bit; link; vfio_ap_mdev_filter_matrix;" in out
    assert main(["check", str(ROOT / "specs/v15-lockdep.yaml"), "--width", "39"]) == 2


def _lock_specs() -> list[str]:
    """Every quick spec under specs/ whose golden record has a deadlock or lock-order violation."""
    golden = json.loads((ROOT / "specs/golden.json").read_text(encoding="utf-8"))["specs"]
    return sorted(name for name, rec in golden.items() if name.startswith("specs/") and not rec["slow"]
                  and "VIOLATED" in (rec["properties"]["deadlock"][0], rec["properties"]["lock-order"][0]))


@functools.cache
def _result(spec: str) -> CheckResult:
    loaded = load_spec(str(ROOT / spec), default_registry(plugins=False))
    program = build(loaded)
    return check_program(program, resolve_options(loaded, program, quiet=True), spec, loaded.design.name)


def _words(text: str) -> str:
    return " ".join(text.split())


def test_lock_specs_are_the_known_ones() -> None:  # the parametrization below is not empty by accident
    assert "specs/v15-lockdep.yaml" in _lock_specs() and "specs/history/in-use-deadlock-v18.yaml" in _lock_specs()
    assert len(_lock_specs()) >= 12  # the 12 of this writing; new specs join the parametrization


@pytest.mark.parametrize("width", [60, 100])
@pytest.mark.parametrize("spec", _lock_specs())
def test_width_holds_for_lockdep_and_hung_task_lines(spec: str, width: int) -> None:
    """--width N bounds every line, the lockdep splats and hung-task lines included; wrapping only
    moves words to indented continuation lines, so no word of them is lost or split."""
    result = _result(spec)
    wide, narrow = render_result(result), render_result(result, width=width)
    assert max(len(line) for line in narrow.splitlines()) <= width
    tail = "== lock-order:"
    assert (tail in wide) == bool(result.cycles) and (tail in narrow) == bool(result.cycles)
    if result.cycles:  # the splats: the same words in the same order
        assert _words(narrow[narrow.index(tail):]) == _words(wide[wide.index(tail):])
    hung = [line for line in wide.splitlines() if line.startswith("INFO: task ")]
    assert hung or not any(p.name == "deadlock" and p.status == "VIOLATED" for p in result.properties)
    for line in hung + [p.trace.final for p in result.properties if p.trace and p.trace.final]:
        assert _words(line) in _words(narrow)
    locks = {lockdep_name(lk) for c in result.cycles for lk in c.locks}
    locks |= {call[call.index("(") + 1: call.rindex(")")] for p in result.properties if p.trace
              for _, _, call, _ in p.trace.blocked if "(" in call}
    assert locks and all(_words(lk) in _words(narrow) for lk in locks), locks  # no name split inside a word
