"""apcheck prove on the vfio_ap designs: the final design's invariants PROVED with the specs' lemmas,
broken designs VIOLATED by BMC at the explicit search's depth, lemma typos, and ``--masks``.

About 15 s in all (measured on the 2-core machine).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from checker.cli.cli import main
from checker.report.results import VIOLATED as EXPLICIT_VIOLATED
from checker.search.run import build_program, check_program
from checker.spec.options import Options
from checker.spec.registry import default_registry
from checker.spec.spec import load_spec

SPECS = Path(__file__).resolve().parent.parent / "specs"
SHARING_AND_FILTERING = ["no-two-guests", "no-double-assignment", "no-host-guest-sharing", "crycb-within-bounds"]
FINAL = ["final-hotplug", "final-ownership", "final-config", "final-lockdep"]


def prove_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = main(["prove", *args, "--format", "json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


@pytest.mark.parametrize("spec", [pytest.param(s, marks=[pytest.mark.slow] if s == "final-ownership" else [])
                                  for s in FINAL])  # final-ownership: about 30 s under load (.ci/run)
def test_final_sharing_and_filtering_proved_with_spec_lemmas(capsys: pytest.CaptureFixture[str], spec: str) -> None:
    props = [a for p in SHARING_AND_FILTERING for a in ("--property", p)]
    code, doc = prove_json(capsys, str(SPECS / f"{spec}.yaml"), *props)
    rows = doc["prove"]
    assert isinstance(rows, list)
    assert {r["property"]: r["status"] for r in rows} == dict.fromkeys(SHARING_AND_FILTERING, "PROVED")
    assert code == 0
    for r in rows:
        assert r["k"] == 1 and r["cti"] is None and r["trace"] is None
        # the lemmas come from the spec's prove: block and were proved jointly
        assert "lemma-guest-is-shadow" in r["lemmas"] and "lemma-shadow-within-bounds" in r["lemmas"]
        assert "auto:lock-ownership" in r["assumed"]


def test_spec_lemmas_hold_in_the_explicit_search() -> None:
    """A lemma is assumed by prove only with its own proof; the explicit search agrees that each holds."""
    loaded = load_spec(str(SPECS / "final-hotplug.yaml"), default_registry())
    program = build_program(loaded.design, loaded.scenario)
    res = check_program(program, Options())
    by = {p.name: p.status for p in res.properties}
    for name in loaded.prove["lemmas"]:
        assert by[name] == "HOLDS", name


def bfs_length(spec: str, prop: str) -> int:
    loaded = load_spec(str(SPECS / f"{spec}.yaml"), default_registry())
    res = check_program(build_program(loaded.design, loaded.scenario), Options(reduction="none"))  # shortest traces
    p = {x.name: x for x in res.properties}[prop]
    assert p.status == EXPLICIT_VIOLATED and p.trace is not None
    return p.trace.length


@pytest.mark.parametrize(("spec", "prop", "depth"), [("v16-hotplug", "no-two-guests", 9),
                                                     ("v16-hook-ownership", "no-host-guest-sharing", 2)])
def test_broken_design_violated_at_bfs_depth(capsys: pytest.CaptureFixture[str], spec: str, prop: str,
                                             depth: int) -> None:
    code, doc = prove_json(capsys, str(SPECS / f"{spec}.yaml"), "--property", prop, "--bmc", "10")
    assert code == 1
    (row,) = doc["prove"]
    assert row["status"] == "VIOLATED" and row["bmc_depth"] == depth
    trace = row["trace"]
    assert trace is not None and trace["length"] == depth == bfs_length(spec, prop)  # replayed, shortest
    # the text report shows the replayed trace as a swimlane
    assert main(["prove", str(SPECS / f"{spec}.yaml"), "--property", prop, "--bmc", "10"]) == 1
    text = capsys.readouterr().out
    assert f"== {prop}: violated: a trace of {depth} steps (BMC, shortest) ==" in text


def test_broken_design_cti_without_lemmas(capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = prove_json(capsys, str(SPECS / "v16-hotplug.yaml"), "--property", "no-two-guests")
    assert code == 3
    (row,) = doc["prove"]
    assert row["status"] == "CTI" and row["cti"]["invariant"] == "no-two-guests"


def test_lemma_typo_in_spec_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (SPECS / "final-lockdep.yaml").read_text()
    assert "lemma-queue-data," in text
    spec = tmp_path / "typo.yaml"
    spec.write_text(text.replace("lemma-queue-data,", "lemma-queue-dta,"))
    assert main(["prove", str(spec)]) == 2
    err = capsys.readouterr().err
    line = next(n for n, x in enumerate(spec.read_text().splitlines(), 1) if "lemma-queue-dta" in x)
    assert f"{spec}:{line}:" in err
    assert "prove.lemmas[10]: unknown lemma 'lemma-queue-dta' (did you mean 'lemma-queue-data'?)" in err
    assert main(["prove", str(SPECS / "final-lockdep.yaml"), "--lemma", "no-two-guest"]) == 2
    assert "--lemma: unknown lemma 'no-two-guest' (did you mean 'no-two-guests'?)" in capsys.readouterr().err


def test_masks_json_and_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = prove_json(capsys, "--masks", "--mask-width", "16")
    assert code == 0
    assert list(doc) == ["version", "masks"] and doc["version"] == 1
    masks = doc["masks"]
    assert isinstance(masks, list)
    assert {m["name"]: m["status"] for m in masks} == {
        "L0": "PROVED", "P1": "PROVED", "P1.broken": "VIOLATED", "P1b": "PROVED", "P1b.broken": "VIOLATED",
        "P2[2 mdevs]": "PROVED", "P2[3 mdevs]": "PROVED", "P2.broken": "VIOLATED", "P3": "PROVED",
        "P3.broken": "VIOLATED", "P3b": "PROVED"}
    assert all(m["ok"] and m["width"] == 16 for m in masks)
    assert main(["prove", "--masks", "--mask-width", "16"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("AP mask rules at 16-bit APID/APQI/control-domain masks")
    assert "P1.broken      VIOLATED  VIOLATED" in text and "counterexample: APQN" in text


def test_masks_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prove"]) == 2
    assert "Missing argument 'SPEC' (or give --masks)" in capsys.readouterr().err
    assert main(["prove", "--masks", str(SPECS / "final-lockdep.yaml")]) == 2
    assert "--masks proves the mask rules and takes no SPEC" in capsys.readouterr().err
