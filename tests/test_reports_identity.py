"""Which spec a report is about: the path in JSON ``spec``, names unique per design (issue 10, point 10)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from checker.cli.cli import main
from checker.spec.registry import default_registry
from checker.spec.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.yaml")) + sorted((ROOT / "examples").glob("*.yaml"))


def test_scenario_names_are_unique_per_design() -> None:
    seen: dict[tuple[str, str], str] = {}
    registry = default_registry()
    for path in SPECS:
        loaded = load_spec(str(path), registry)
        key = (loaded.scenario.name, loaded.design.name)
        assert key not in seen, f"{path.name} and {seen[key]} are both {key}"
        seen[key] = path.name
    assert len(seen) == len(SPECS)


def test_json_spec_is_the_path_and_name_the_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(ROOT / "examples/lockcycle3.yaml")
    assert main(["check", path, "--format", "json", "--quiet"]) == 1
    d = json.loads(capsys.readouterr().out)
    assert (d["spec"], d["name"], d["design"]) == (path, "lockcycle3", "lock-program")


def test_text_header_names_path_and_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(ROOT / "examples/lockcycle3.yaml")
    main(["check", path, "--quiet"])
    assert capsys.readouterr().out.splitlines()[0] == f"spec {path} (lockcycle3)  design lock-program  result VIOLATED"
