"""A design shipped as a plugin package (tests/data/apcheck_plugin_example) is found through its
``apcheck.designs`` entry point metadata and runs like a built-in one."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from checker.cli.cli import main
from checker.spec.registry import default_registry

EXAMPLE = Path(__file__).parent / "data" / "apcheck_plugin_example"
SPEC = Path(__file__).parent.parent / "specs" / "history" / "c1-stale-hook-before.yaml"


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What `pip install tests/data/apcheck_plugin_example` leaves behind: the package importable and a
    dist-info with its entry points (read from the example's pyproject.toml)."""
    dist = tmp_path / "apcheck_eperm_fix-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: apcheck-eperm-fix\nVersion: 0.1\n", encoding="utf-8")
    (dist / "entry_points.txt").write_text("[apcheck.designs]\neperm-fix = apcheck_eperm_fix:design\n",
                                           encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.delitem(sys.modules, "apcheck_eperm_fix", raising=False)


def test_entry_point_declared_in_the_example() -> None:
    text = (EXAMPLE / "pyproject.toml").read_text(encoding="utf-8")
    assert '[project.entry-points."apcheck.designs"]\neperm-fix = "apcheck_eperm_fix:design"' in text


def test_plugin_design_is_registered(installed: None) -> None:
    reg = default_registry()
    assert "eperm-fix" in reg.names(), reg.warnings
    assert reg.origin("eperm-fix") == "plugin eperm-fix (apcheck_eperm_fix:design)"
    d = reg.get("eperm-fix")
    assert d.overrides == ("vfio_ap_mdev_set_kvm:error",)  # type: ignore[attr-defined]
    assert d.derived_from == "6.8"  # type: ignore[attr-defined]


def test_plugin_design_checks_a_spec(installed: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The C1 scenario: VIOLATED on 6.8, HOLDS with the plugin's one-hunk fix."""
    spec = tmp_path / "c1.yaml"
    spec.write_text(SPEC.read_text(encoding="utf-8").replace('design: "6.8"', "design: eperm-fix"), encoding="utf-8")
    assert main(["check", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "design eperm-fix  result HOLDS" in out
