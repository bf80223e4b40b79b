"""apcheck repro SPEC TRACE.json: the s390 reproduction script (issue 10, point 14)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from checker.cli.cli import main
from tests.test_reports_values import HEX_SPEC  # masks in hex or decimal: the same spec the traces are tested with

ROOT = Path(__file__).resolve().parent.parent


def report(tmp_path: Path, spec: str) -> Path:
    out = tmp_path / "trace.json"
    main(["check", str(ROOT / spec), "--format", "json", "-o", str(out), "--quiet"])
    return out


def test_v15_deadlock_script(tmp_path: Path) -> None:
    trace = report(tmp_path, "specs/v15-lockdep.yaml")
    script = tmp_path / "repro.sh"
    assert main(["repro", str(ROOT / "specs/v15-lockdep.yaml"), str(trace), "-o", str(script)]) == 0
    text = script.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash"
    assert "# apcheck repro: design v15, spec " in lines[1] and lines[1].endswith("property deadlock (deadlock)")
    # the initial state: the mdev with 03.0005, a guest using it
    assert "echo 0x3 > /sys/bus/mdev/devices/$UUID0/assign_adapter" in lines
    assert "start_guest kvm0 1 -device vfio-ap,id=ap0,sysfsdev=/sys/bus/mdev/devices/$UUID0" in lines
    # the threads, started in trace order, with the kernel-side windows marked
    body = lines[lines.index('for run in $(seq "$REPEAT"); do'):]
    assert [x.strip() for x in body if x.strip().startswith("thread_")] == [
        "thread_vcpu0 &", "thread_admin &", "thread_pv &"]
    assert sum("TIMING" in x for x in body) == 3
    assert "    echo 0x4 > /sys/bus/mdev/devices/$UUID0/assign_adapter" in lines
    assert "#   pv blocked in kvm_s390_cpus_to_pv: mutex_lock(&kvm0.vcpu0->mutex), held by vcpu0" in lines
    assert "CONFIG_DETECT_HUNG_TASK=y" in text
    if shutil.which("bash"):
        assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0


def test_lock_order_and_use_after_free_say_what_to_look_for(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    trace = report(tmp_path, "specs/history/c1-stale-hook-before.yaml")
    capsys.readouterr()
    assert main(["repro", str(ROOT / "specs/history/c1-stale-hook-before.yaml"), str(trace), "--property",
                 "memory-safety"]) == 0
    out = capsys.readouterr().out
    assert "CONFIG_KASAN=y" in out and "BUG: KASAN: use-after-free" in out
    assert "memory-safety: use after free of struct ap_matrix_mdev mdev1" in out


def test_null_dereference_says_oops_not_kasan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = report(tmp_path, "specs/history/c2-null-kvm-before.yaml")
    capsys.readouterr()
    assert main(["repro", str(ROOT / "specs/history/c2-null-kvm-before.yaml"), str(trace), "--property",
                 "memory-safety"]) == 0
    out = capsys.readouterr().out
    assert "KASAN" not in out
    assert "# Unable to handle kernel pointer dereference in virtual kernel address space, in the function " \
           "named below" in out
    assert "# the violating step: bus in vfio_ap_on_cfg_changed: memory-safety: NULL dereference of struct kvm " \
           "pointer: matrix_mdev->kvm->lock" in out


def test_design_without_a_mapping_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = report(tmp_path, "examples/lockcycle3.yaml")
    capsys.readouterr()
    assert main(["repro", str(ROOT / "examples/lockcycle3.yaml"), str(trace)]) == 2
    assert "design 'lock-program' has no reproduction mapping (no repro_script)" in capsys.readouterr().err


def _mask_lines(tmp_path: Path, apmask: str, reserve: str) -> list[str]:
    """The apmask/aqmask writes of the script for the witness of HEX_SPEC."""
    spec = tmp_path / "hex.yaml"
    spec.write_text(HEX_SPEC % (apmask, reserve), encoding="utf-8")
    trace = report(tmp_path, str(spec))
    script = tmp_path / "repro.sh"
    assert main(["repro", str(spec), str(trace), "-o", str(script)]) == 0
    return [x for x in script.read_text(encoding="utf-8").splitlines() if "/sys/bus/ap/a" in x]


@pytest.mark.parametrize(("apmask", "reserve", "ap"), [
    ("0x3", "4", ("+0x3,-0x4", "+0x4")),  # apmask in hex (the constant is enough): its edits in hex
    ("3", "0x04", ("+0x3,-0x4", "+0x4")),  # or an apmask_store argument in hex
    ("3", "4", ("+3,-4", "+4")),  # decimal: decimal
])
def test_masks_are_edited_as_the_spec_wrote_them(tmp_path: Path, apmask: str, reserve: str,
                                                 ap: tuple[str, str]) -> None:
    # aqmask, written in decimal, stays decimal either way
    assert _mask_lines(tmp_path, apmask, reserve) == [
        f"echo {ap[0]} > /sys/bus/ap/apmask   # + : left to zcrypt, - : free for vfio_ap",
        "echo +5,+6 > /sys/bus/ap/aqmask   # + : left to zcrypt, - : free for vfio_ap",
        f"    echo {ap[1]} > /sys/bus/ap/apmask   # relative edit: +N sets bit N",
        "    echo -6 > /sys/bus/ap/aqmask   # relative edit: +N sets bit N",
    ]
