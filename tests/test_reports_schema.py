"""JSON Schemas shipped in the package: every report and every spec validates (issue 10, point 11)."""

from __future__ import annotations

import copy
import json
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from checker.cli.cli import main
from checker.cli.golden import run_spec
from checker.report.report_json import result_to_dict
from checker.spec.spec_schema import spec_schema
from checker.spec.yaml_reader import CoreLoader

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.yaml")) + sorted((ROOT / "examples").glob("*.yaml"))
_COUNTS = json.loads((ROOT / "specs/golden.json").read_text(encoding="utf-8"))["specs"]
QUICK = [p for p in SPECS if _COUNTS.get(str(p.relative_to(ROOT)), {}).get("states", 1 << 62) <= 20_000]


def shipped(which: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(files("checker").joinpath("schemas", f"{which}.schema.json").read_text())
    return data


REPORT = jsonschema.Draft202012Validator(shipped("report"))
SPEC = jsonschema.Draft202012Validator(shipped("spec"))


def errors(validator: jsonschema.Draft202012Validator, doc: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def test_schemas_are_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(shipped("report"))
    jsonschema.Draft202012Validator.check_schema(shipped("spec"))


def test_shipped_spec_schema_is_current() -> None:
    assert shipped("spec") == spec_schema(), "regenerate: python -m checker.spec.spec_schema > " \
                                             "checker/schemas/spec.schema.json"


def _reports_validate(paths: list[Path]) -> None:
    bad = {}
    for path in paths:
        doc = json.loads(json.dumps(result_to_dict(run_spec(str(path)))))
        if errs := errors(REPORT, doc):
            bad[path.name] = errs[:3]
    assert bad == {}


def test_every_quick_report_validates() -> None:
    """The report of every spec and example up to 20,000 states, as ``check --format json`` writes it."""
    _reports_validate(QUICK)


@pytest.mark.slow
def test_every_report_validates() -> None:
    """... and of the big philosophers too (phil_N14 alone takes about 30 s)."""
    _reports_validate([p for p in SPECS if p not in QUICK])


def test_report_schema_allows_additions_and_rejects_breakage() -> None:
    doc = json.loads(json.dumps(result_to_dict(run_spec(str(ROOT / "examples/lockcycle3.yaml")))))
    grown = copy.deepcopy(doc)
    grown["stats"]["workers"] = 4  # parallel search, reductions, ... add statistics
    grown["properties"][0]["trace"]["spec"] = "examples/lockcycle3.yaml"  # traces that say what they replay on
    grown["properties"][0]["trace"]["steps"][0]["id"] = "phil_0:take_left"
    assert errors(REPORT, grown) == []
    broken = copy.deepcopy(doc)
    del broken["properties"][0]["trace"]["steps"][0]["thread"]
    broken["stats"]["states"] = -1
    broken["version"] = 1
    got = list(REPORT.iter_errors(broken))
    assert [(list(e.absolute_path), e.message) for e in got[:2]] == [
        (["version"], "2 was expected"), (["stats", "states"], "-1 is less than the minimum of 0")]
    trace_error = got[2]  # trace is "null or a trace": the reason is in the error's context
    assert list(trace_error.absolute_path) == ["properties", 0, "trace"] and len(got) == 3
    assert [(list(c.absolute_path), c.message) for c in trace_error.context if c.validator == "required"] == [
        (["properties", 0, "trace", "steps", 0], "'thread' is a required property")]


@pytest.mark.parametrize("path", SPECS, ids=[p.name for p in SPECS])
def test_every_spec_validates(path: Path) -> None:
    assert errors(SPEC, yaml.load(path.read_text(encoding="utf-8"), Loader=CoreLoader)) == []


def test_spec_schema_catches_what_the_loader_catches() -> None:
    doc = yaml.load((ROOT / "specs/v15-lockdep.yaml").read_text(encoding="utf-8"), Loader=CoreLoader)
    doc["desing"] = "v15"
    doc["constants"]["vmz"] = 1
    doc["threads"][1]["run"] = [{"assign_adapter": {"apid": "4"}}, "handle_pqap"]
    got = errors(SPEC, doc)
    assert "constants: Additional properties are not allowed ('vmz' was unexpected)" in got
    assert ": Additional properties are not allowed ('desing' was unexpected)" in got
    assert any(e.startswith("threads/1/run/0: ") for e in got) and any(e.startswith("threads/1/run/1: ") for e in got)


def test_cli_prints_the_schemas(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "report"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "apcheck check report, version 2"
    assert main(["schema", "spec"]) == 0
    assert json.loads(capsys.readouterr().out) == shipped("spec")
