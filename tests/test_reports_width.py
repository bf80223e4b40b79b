"""--width N: a compact layout for mail (issue 10, point 3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from checker.cli.cli import main
from checker.report.report_text import render_trace
from checker.report.results import Trace, TraceStep

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
