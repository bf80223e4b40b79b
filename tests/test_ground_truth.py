"""One ground-truth file (examples/ground_truth.json) and the lock-program models without ../shared
(issue 10, point 12)."""

from __future__ import annotations

import json

import helpers_models
import pytest
from helpers_models import EXAMPLES, find_shared_benchmarks, ground_truth, load_bench

SHARED = find_shared_benchmarks()


def test_ground_truth_file_has_every_model_and_example() -> None:
    truth = ground_truth()
    assert truth["phil_N3"] == (26, 51, 1, 3) and truth["phil_N14"] == (4_782_968, 44_641_030, 1, 14)
    assert {p.stem for p in (EXAMPLES / "models").glob("*.json")} == set(truth)


@pytest.mark.skipif(SHARED is None, reason="compares with shared/benchmarks when it is beside the repository")
def test_models_match_shared_benchmarks() -> None:
    """The copies in examples/models are shared/benchmarks' (test_engine_search checks the counts)."""
    assert SHARED is not None
    for name in ground_truth():
        ours = json.loads((EXAMPLES / "models" / f"{name}.json").read_text(encoding="utf-8"))
        assert ours == json.loads((SHARED / "models" / f"{name}.json").read_text(encoding="utf-8")), name


def test_models_load_from_examples_when_shared_is_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(helpers_models, "find_shared_benchmarks", lambda: None)
    assert helpers_models.bench_models() == EXAMPLES / "models"
    program = load_bench("lockcycle3")
    assert [t.name for t in program.threads] == ["T1_vcpu_run", "T2_assign", "T3_pv"]
