"""``apcheck history``: each fix of specs/history/manifest.yml is VIOLATED before it and HOLDS after it."""

from __future__ import annotations

from pathlib import Path

import pytest

from checker.cli.cli import main
from checker.cli.history_cli import run

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = str(ROOT / "specs" / "history" / "manifest.yml")

# fix id -> (design before, trace length before, design after)
EXPECTED = {
    "f21916ec4826": ("5.10", 17, "5.11"),
    "0cc00c8d4050": ("5.11", 7, "5.12"),
    "1e753732bda6": ("5.12", 17, "5.15-pre"),
    "86956e70761b": ("5.15-pre", 18, "5.15"),
    "v19-15": ("v18", 4, "6.2"),
    "v16-08": ("v15", 8, "v16"),
    "70aeefe574cb": ("v15", 10, "v16"),
    "f848cba767e5": ("6.2", 19, "6.8"),
    "f009cfa46655": ("6.2", 14, "6.8"),
    "C1": ("6.8", 16, "mainline"),
    "C2": ("6.8", 7, "mainline"),
}


def test_history_table() -> None:
    rows, rest = run(MANIFEST)
    got = {r.fix["id"]: (r.before.design, r.before.trace, r.after.design) for r in rows}
    assert got == EXPECTED
    assert all(r.before.status == "VIOLATED" and r.after.status == "HOLDS" and r.ok for r in rows)
    assert all(r.after.trace is None for r in rows)
    assert len(rest) == 10 and all(r["reason"] for r in rest)


def test_history_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["history", MANIFEST]) == 0
    out = capsys.readouterr().out
    assert ("C1            bc833a7b1e7f  hook-safe                  6.8: VIOLATED, trace 16       "
            "mainline: HOLDS  ok") in out
    assert "Not expressible in the model:" in out


def test_history_bad_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "h.yaml"
    bad.write_text("fixes:\n  - id: x\n    title: t\n", encoding="utf-8")
    assert main(["history", str(bad)]) == 2
    assert "fixes.0: missing or not a string: commit, property, before, after" in capsys.readouterr().err


def test_history_unexpected_row_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A "fix" whose before design already holds the property is reported UNEXPECTED, exit 1."""
    m = tmp_path / "h.yaml"
    spec = ROOT / "specs" / "history" / "c1-stale-hook-after.yaml"
    m.write_text(f"fixes:\n  - {{id: x, title: t, commit: c, property: hook-safe, before: {spec}, after: {spec}}}\n",
                 encoding="utf-8")
    assert main(["history", str(m)]) == 1
    assert "UNEXPECTED" in capsys.readouterr().out
