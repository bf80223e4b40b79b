"""Every spec and example in specs/golden.json gives exactly its recorded counts and verdicts.

Ground truth for the lock-program examples is SPIN/Rumur's (shared/benchmarks);
vfio_ap spec entries were recorded with `python -m checker.cli.golden update` and
reviewed against the kernel facts (see README.md). Entries marked slow run in
the benchmarks, not here.
"""

from __future__ import annotations

import os

import pytest
from helpers_models import ground_truth

from checker.cli.golden import ROOT, load_manifest, run_spec, summarize

MANIFEST = load_manifest()
FAST = sorted(k for k, v in MANIFEST["specs"].items() if not v.get("slow"))

# examples/ground_truth.json: SPIN/Rumur's counts for the lock-program examples the manifest records
GROUND_TRUTH = {k: v for k, v in ground_truth().items() if f"examples/{k}.yaml" in MANIFEST["specs"]}


@pytest.mark.parametrize("spec", FAST)
def test_spec_matches_golden(spec: str) -> None:
    want = {k: v for k, v in MANIFEST["specs"][spec].items() if k not in ("seconds", "slow", "reduced")}
    assert summarize(run_spec(os.path.join(ROOT, spec), reduction="none")) == want


@pytest.mark.parametrize("spec", FAST)
def test_reduced_search_matches_golden(spec: str) -> None:
    """The default reductions' counts are recorded apart from the unreduced ones (issue 7)."""
    assert summarize(run_spec(os.path.join(ROOT, spec))) == MANIFEST["specs"][spec]["reduced"]


@pytest.mark.parametrize("name", sorted(GROUND_TRUTH))
def test_manifest_agrees_with_spin_and_rumur(name: str) -> None:
    entry = MANIFEST["specs"][f"examples/{name}.yaml"]
    states, transitions, deadlocks, shortest = GROUND_TRUTH[name]
    assert (entry["states"], entry["transitions"], entry["deadlock_states"]) == (states, transitions, deadlocks)
    assert entry["properties"]["deadlock"] == ["VIOLATED", shortest]


def test_lockcycle3_names_the_three_threads_and_the_cycle() -> None:
    result = run_spec(os.path.join(ROOT, "examples", "lockcycle3.yaml"))
    dl = next(p for p in result.properties if p.name == "deadlock")
    assert dl.trace is not None
    assert [s.thread for s in dl.trace.steps] == ["T1_vcpu_run", "T2_assign", "T3_pv"]
    assert [s.action for s in dl.trace.steps] == [
        "mutex_lock(vcpu_mutex)", "mutex_lock(matrix_lock)", "mutex_lock(kvm_lock)"]
    assert dl.trace.waits == [
        "T1_vcpu_run waits for matrix_lock held by T2_assign",
        "T2_assign waits for kvm_lock held by T3_pv",
        "T3_pv waits for vcpu_mutex held by T1_vcpu_run",
    ]
    assert [c.locks for c in result.cycles] == [["vcpu_mutex", "matrix_lock", "kvm_lock"]]
    assert result.cycles[0].reachable
    lo = next(p for p in result.properties if p.name == "lock-order")
    assert lo.detail == "cycle vcpu_mutex -> matrix_lock -> kvm_lock -> vcpu_mutex [reachable deadlock]"
