"""Masks as the kernel's numbers: real APIDs/APQIs, APQNs as 03.0005 (issue 10, point 2)."""

from __future__ import annotations

from pathlib import Path

from checker.lang.layout import MASK_LABELS, mask_field
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
