"""`apcheck compare`: the verdict matrix, its JSON, exit codes, and the headline v16/v17 differences."""

from __future__ import annotations

import json
import os

import pytest

from checker.cli.cli import main
from checker.cli.golden import ROOT


def spec(name: str) -> str:
    return os.path.join(ROOT, name)


def test_compare_text_matrix_and_edges(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["compare", spec("examples/lockcycle3.yaml"), spec("examples/phil_N3.yaml")])
    out = capsys.readouterr().out
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].split() == ["property", "lock-program", "(lockcycle3)", "lock-program", "(phil_N3)"]
    assert lines[2].split() == ["deadlock", "VIOLATED", "(3)", "VIOLATED", "(3)"]
    assert "  lock-program (lockcycle3): vcpu_mutex -> matrix_lock" in lines
    assert "  lock-program (phil_N3): fork[2] -> fork[0]" in lines


def test_compare_needs_two_specs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", spec("examples/phil_N3.yaml")]) == 2
    assert "compare needs at least two specs" in capsys.readouterr().err


def test_compare_bounded_search_is_inconclusive(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["compare", spec("examples/phil_N5.yaml"), spec("examples/phil_N4.yaml"), "--max-states", "50"])
    assert rc == 3
    assert "BOUNDED (max-states)" in capsys.readouterr().out


def test_compare_v16_v17_json(capsys: pytest.CaptureFixture[str]) -> None:
    # unreduced: the differing traces below are the shortest (BFS over the full graph)
    rc = main(["compare", spec("specs/v16.yaml"), spec("specs/v17.yaml"), "--format", "json", "--reduction", "none"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert list(data) == ["version", "designs", "rows", "edges_only_in", "differences"]
    assert data["version"] == 1
    assert [d["name"] for d in data["designs"]] == ["v16-hook", "v17"]
    rows = {r["property"]: r["verdicts"] for r in data["rows"]}
    assert rows["hook-safe"] == {"v16-hook": "VIOLATED", "v17": "HOLDS"}
    assert rows["memory-safety"] == {"v16-hook": "VIOLATED", "v17": "VIOLATED"}
    assert rows["two-vms-in-pqap"] == {"v16-hook": "WITNESSED", "v17": "NOT_WITNESSED"}
    assert rows["one-hook-registrant"] == {"v16-hook": None, "v17": "HOLDS"}
    assert ["vcpu->mutex", "pqap_hook_lock"] in data["edges_only_in"]["v17"]
    assert ["vcpu->mutex", "kvm->arch.crypto.pqap_hook_rwsem"] in data["edges_only_in"]["v16-hook"]
    diffs = {(d["property"], d["design"]) for d in data["differences"]}
    assert ("hook-safe", "v16-hook") in diffs
    hook = next(d for d in data["differences"] if d["property"] == "hook-safe")
    assert hook["trace"]["length"] == 24  # + the group notifier's SET_KVM replay check (issue 8 #1)


def test_compare_prove_uses_each_specs_lemmas(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["compare", spec("specs/final-lockdep.yaml"), spec("specs/v16-hook-lockdep.yaml"), "--prove"])
    out = capsys.readouterr().out
    assert rc == 0
    table = out[out.index("Z3 (apcheck prove"):].splitlines()
    row = next(line.split() for line in table if line.startswith("crycb-within-bounds"))
    assert row == ["crycb-within-bounds", "PROVED", "-"]
