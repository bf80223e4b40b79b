"""Masks as the kernel's numbers: real APIDs/APQIs, APQNs as 03.0005 (issue 10, point 2)."""

from __future__ import annotations

from pathlib import Path

from checker.cli.cli import build, resolve_options
from checker.lang.layout import MASK_BITMAP, MASK_LABELS, mask_field
from checker.report.report_text import render_result
from checker.search.run import build_program, check_program
from checker.spec.options import Options
from checker.spec.registry import default_registry
from checker.spec.spec import load_spec
from checker.spec.userprops import compile_property

ROOT = Path(__file__).resolve().parent.parent


def test_mask_labels_name_the_elements() -> None:
    plain = mask_field("m.apm", 3)
    assert plain.show(0b101) == "{0,2}"  # no labels: bit indices
    labelled = mask_field("m.apm", 3)
    labelled.meta[MASK_LABELS] = ("3", "4", "10")
    assert labelled.show(0b101) == "{3,10}" and labelled.show(0) == "{}"
    compile_property("m.apm == {3, 10}", {"m.apm": labelled})  # literals use the same names


def test_v15_trace_shows_real_apids_and_apqns() -> None:
    loaded = load_spec(str(ROOT / "specs/v15-lockdep.yaml"), default_registry())
    program = build_program(loaded.design, loaded.scenario)
    result = check_program(program, Options(), "s", "v15")
    witness = next(p for p in result.properties if p.name == "guest-apcb-changed").trace
    assert witness is not None
    changes = [c for s in witness.steps for c in s.changes]
    assert ("mdev0.matrix.apm", "{3}", "{3,4}") in changes  # adapters [3, 4]: bit 1 is adapter 4
    assert ("kvm0.crycb.apm", "{3}", "{3,4}") in changes
    assert ("ap_queue[04.0005].data", "clean", "kvm0") in changes
    assert dict(witness.initial)["mdev0.matrix.aqm"] == "{5}"


def test_bitmap_meta_prints_the_sysfs_hex_form() -> None:
    f = mask_field("ap_perms.apm", 3)
    f.meta[MASK_LABELS] = ("0", "4", "255")
    f.meta[MASK_BITMAP] = 256
    assert f.show(0) == "0x" + "0" * 64  # apmask_show: "0x%016lx%016lx%016lx%016lx"
    assert f.show(0b001) == "0x8" + "0" * 63  # APID 0 is the leftmost bit (hex2bitmap, set_bit_inv)
    assert f.show(0b110) == "0x08" + "0" * 61 + "1"


HEX_SPEC = """\
design: final
constants: {adapters: [3, 4], domains: [5, 6], apmask: [%s], aqmask: [5, 6]}
threads:
  - {name: bus, run: [{apmask_store: {reserve: [%s]}}, {aqmask_store: {release: [6]}}]}
properties:
  only: [both]
  sometimes:
    - {name: both, expr: "4 in ap_perms.apm && !(6 in ap_perms.aqm)"}
"""


def _mask_changes(tmp_path: Path, apmask: str, reserve: str) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    """The witness's initial ap_perms masks and their changes; the text report shows the same strings."""
    spec = tmp_path / "hex.yaml"
    spec.write_text(HEX_SPEC % (apmask, reserve), encoding="utf-8")
    loaded = load_spec(str(spec), default_registry())
    program = build(loaded)  # with the spec's own sometimes
    result = check_program(program, resolve_options(loaded, program, quiet=True), "s", "final")
    both = next(p for p in result.properties if p.name == "both")
    trace = both.trace
    assert both.status == "WITNESSED" and trace is not None
    text = " ".join(render_result(result, width=100).split())
    changes = [c for s in trace.steps for c in s.changes if c[0].startswith("ap_perms.")]
    assert all(f"{f}: {old} -> {new}" in text for f, old, new in changes)
    return dict(trace.initial), [c for s in trace.steps for c in s.changes if c[0].startswith("ap_perms.")]


def test_apmask_written_in_hex_shows_hex_in_the_trace(tmp_path: Path) -> None:
    zeros = "0" * 60
    initial, changes = _mask_changes(tmp_path, "3", "0x04")  # one hex value: apmask as sysfs shows it
    assert initial["ap_perms.apm"] == "0x1" + "0" * 63  # APID 3
    assert changes == [("ap_perms.apm", "0x1" + "0" * 63, "0x18" + "0" * 62),  # APIDs 3, 4
                       ("ap_perms.aqm", "{5,6}", "{5}")]  # aqmask written in decimal: a set
    assert zeros in "".join(c[2] for c in changes)
    initial, changes = _mask_changes(tmp_path, "0x3", "4")  # the constant in hex is enough
    assert changes[0] == ("ap_perms.apm", "0x1" + "0" * 63, "0x18" + "0" * 62)


def test_apmask_written_in_decimal_shows_the_set(tmp_path: Path) -> None:
    initial, changes = _mask_changes(tmp_path, "3", "4")
    assert initial["ap_perms.apm"] == "{3}"
    assert changes == [("ap_perms.apm", "{3}", "{3,4}"), ("ap_perms.aqm", "{5,6}", "{5}")]


def test_the_loader_keeps_the_written_text(tmp_path: Path) -> None:
    spec = tmp_path / "hex.yaml"
    spec.write_text(HEX_SPEC % ("0x03", "0o4"), encoding="utf-8")
    written = load_spec(str(spec), default_registry()).scenario.written
    assert written == {"constants.apmask[0]": "0x03", "threads[0].run[0].apmask_store.reserve[0]": "0o4"}
