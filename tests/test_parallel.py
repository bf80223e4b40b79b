"""The partitioned BFS (``--workers N``) gives exactly what one worker gives.

Every comparison is on the whole JSON report minus timings: counts, verdicts,
details, every trace step, the lock-order edges and cycles. The fan-out
threshold is lowered to 1 so these small specs really run on two worker
processes from the first level; ``stats`` must say so.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import pytest
from helpers_parallel import comparable, run

import checker.search.parallel as parallel
from checker.cli.cli import main
from checker.cli.golden import ROOT, load_manifest
from checker.report.results import BOUNDED, WITNESSED, CheckResult
from checker.search.parallel_part import Partition
from checker.search.parallel_procs import WorkerError

# one of each kind: deadlock + reachable cycle, lock programs, invariant and memory-safety
# violations, NOT_WITNESSED, clean HOLDS, a fingerprint store (> 128 bits)
QUICK = [
    "examples/lockcycle3.yaml", "examples/phil_N7.yaml", "specs/v15-lockdep.yaml", "specs/v15-hotplug.yaml",
    "specs/v16-hook-lockdep.yaml", "specs/v16-hook-ownership.yaml", "specs/v17-lifecycle.yaml",
    "specs/final-apie.yaml", "specs/final-mixed.yaml",
]
# every spec and lock program with recorded counts (phil_N11..N14 are benchmark sizes, not recorded)
# every golden spec but the 4.1 M-state masks spec (a minute here; the fan-out is the same code on the rest)
EVERY = sorted(k for k in load_manifest()["specs"] if k != "specs/parametric-mainline-masks.yaml")


@pytest.fixture
def fan_out_now(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "FAN_OUT_FRONTIER", 1)


def check_same(spec: str, workers: int, **overrides: Any) -> CheckResult:
    one = run(spec, workers=1, **overrides)
    many = run(spec, workers=workers, **overrides)
    assert (one.stats.workers, one.stats.backend) == (1, "in-process")
    assert (many.stats.workers, many.stats.backend) == (workers, "processes")
    assert comparable(many) == comparable(one)
    return many


@pytest.mark.parametrize("spec", QUICK)
def test_two_workers_match_one(spec: str, fan_out_now: None) -> None:
    check_same(spec, 2)


@pytest.mark.slow
@pytest.mark.parametrize("spec", EVERY)
def test_every_spec_two_workers_match_one(spec: str, fan_out_now: None) -> None:
    check_same(spec, 2)


def test_three_workers_pick_the_same_traces(fan_out_now: None) -> None:
    r = check_same("specs/v16-hook-ownership.yaml", 3)
    assert any(p.trace is not None for p in r.properties)


def test_golden_counts_hold_partitioned(fan_out_now: None) -> None:
    want = load_manifest()["specs"]["examples/phil_N8.yaml"]
    r = run("examples/phil_N8.yaml", workers=2, reduction="none")  # the manifest's top level: unreduced
    assert (r.stats.states, r.stats.transitions, r.stats.deadlock_states, r.stats.max_depth) == (
        want["states"], want["transitions"], want["deadlock_states"], want["max_depth"])
    assert r.stats.complete and r.stats.workers == 2


def test_max_depth_is_exact(fan_out_now: None) -> None:
    r = check_same("specs/final-mixed.yaml", 2, max_depth=9)
    assert (r.result, r.stats.limit, r.stats.max_depth) == (BOUNDED, "max-depth", 9)


def test_max_states_stops_every_worker_bounded(fan_out_now: None) -> None:
    r = run("specs/final-mixed.yaml", workers=2, max_states=500)
    assert (r.result, r.stats.limit, r.stats.complete, r.stats.backend) == (BOUNDED, "max-states", False, "processes")
    assert 500 <= r.stats.states < 14272
    assert {p.status for p in r.properties} <= {BOUNDED, WITNESSED}


def test_timeout_stops_every_worker_bounded(fan_out_now: None) -> None:
    r = run("specs/final-mixed.yaml", workers=2, timeout=1e-6)
    assert (r.result, r.stats.limit, r.stats.complete) == (BOUNDED, "timeout", False)


def test_memory_limit_stops_every_worker_bounded(fan_out_now: None) -> None:
    r = run("specs/final-mixed.yaml", workers=2, max_memory_mb=1)
    assert (r.result, r.stats.limit, r.stats.complete, r.stats.backend) == (BOUNDED, "memory", False, "processes")


def test_small_search_never_starts_workers() -> None:
    """Below the fan-out threshold the partitioned search runs in this process, in BFS order."""
    r = run("specs/v15-lockdep.yaml", workers=2)
    assert (r.stats.workers, r.stats.backend) == (1, "in-process")
    assert comparable(r) == comparable(run("specs/v15-lockdep.yaml", workers=1))


def test_in_process_prefix_keeps_the_max_states_count() -> None:
    """The in-process prefix checks max-states state by state, as the single-process BFS does."""
    one = run("specs/final-mixed.yaml", workers=1, max_states=300, reduction="none")
    two = run("specs/final-mixed.yaml", workers=2, max_states=300, reduction="none")
    assert two.stats.backend == "in-process"
    assert comparable(two) == comparable(one)


def test_failing_worker_is_reported(fan_out_now: None, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Partition, *args: Any) -> Any:
        raise ValueError("boom in a worker")

    monkeypatch.setattr(Partition, "expand", broken)
    with pytest.raises(WorkerError, match="boom in a worker"):
        run("specs/v15-lockdep.yaml", workers=2)


def test_cli_workers_and_json_stats(capsys: pytest.CaptureFixture[str], fan_out_now: None) -> None:
    rc = main(["check", os.path.join(ROOT, "specs/v15-lockdep.yaml"), "--workers", "2", "--format", "json",
               "--quiet"])
    assert rc == 1
    out = capsys.readouterr().out
    assert '"workers": 2,\n    "backend": "processes"' in out


def test_cli_rejects_negative_workers(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["check", os.path.join(ROOT, "specs/v15-lockdep.yaml"), "--workers", "-1"])
    assert rc == 2
    assert "Invalid value for '--workers': -1 is not in the range x>=0." in capsys.readouterr().err


def test_ray_flag_without_ray_is_a_usage_error(capsys: pytest.CaptureFixture[str], fan_out_now: None,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without apcheck[ray] gives
    rc = main(["check", os.path.join(ROOT, "specs/v15-lockdep.yaml"), "--ray"])
    assert rc == 2
    assert capsys.readouterr().err.strip() == "error: --ray: needs the ray package: pip install 'apcheck[ray]'"


def test_spec_check_workers(tmp_path: Any, capsys: pytest.CaptureFixture[str], fan_out_now: None) -> None:
    text = open(os.path.join(ROOT, "specs/v15-lockdep.yaml"), encoding="utf-8").read()
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(text + "check:\n  workers: 2\n", encoding="utf-8")
    bad.write_text(text + "check:\n  workers: -1\n", encoding="utf-8")
    assert main(["check", str(good), "--format", "json", "--quiet"]) == 1
    assert '"workers": 2,\n    "backend": "processes"' in capsys.readouterr().out
    assert main(["check", str(good), "--workers", "1", "--format", "json", "--quiet"]) == 1  # CLI wins
    assert '"workers": 1,\n    "backend": "in-process"' in capsys.readouterr().out
    assert main(["check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml:" in err and "error: check.workers: expected a non-negative int (0: one per core), got -1" in err


@pytest.mark.parametrize(("min_cost", "backend"), [(1.0, "in-process"), (0.0, "processes")])
def test_default_workers_fan_out_only_for_costly_models(min_cost: float, backend: str, fan_out_now: None,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """With one worker per core (--workers 0) a model too cheap per transition stays in one process."""
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(parallel, "FAN_OUT_MIN_COST", min_cost)
    r = run("examples/phil_N6.yaml", workers=0)
    assert r.stats.backend == backend
    assert comparable(r) == comparable(run("examples/phil_N6.yaml", workers=1))


def test_workers_with_dfs_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["check", os.path.join(ROOT, "specs/v15-lockdep.yaml"), "--strategy", "dfs", "--workers", "2"])
    assert rc == 2
    assert capsys.readouterr().err.strip() == (
        "error: --workers: the partitioned search is breadth-first; --strategy dfs runs in one process "
        "(use --workers 1)")


class HalfAndMerge:
    """A made-up reducer, a function of the state alone as the Reducer interface requires: explore
    the first half of each successor list, and merge states differing only in the lowest bit."""

    def select(self, state: int, succs: list[tuple[int, int]]) -> list[tuple[int, int]]:
        return succs[: max(1, len(succs) // 2)]

    def canonical(self, state: int) -> int:
        return state & ~1


@pytest.mark.parametrize("spec", ["examples/phil_N7.yaml", "specs/final-hooks.yaml"])
def test_reduced_search_is_the_same_partitioned(spec: str) -> None:
    """Reductions act per state, so two workers reduce exactly as one process does (exact and fingerprint stores)."""
    from checker.search.explore import path_to
    from checker.search.parallel_procs import process_factory
    from checker.search.progmodel import ProgramModel
    from checker.search.run import build_program
    from checker.spec.options import Options
    from checker.spec.registry import default_registry
    from checker.spec.spec import load_spec

    loaded = load_spec(os.path.join(ROOT, spec), default_registry())
    program = build_program(loaded.design, loaded.scenario)

    def search(fan_out: int) -> tuple[Any, ...]:
        model = ProgramModel(program)
        s, workers, _ = parallel.partitioned_bfs(model, Options(quiet=True), process_factory(2),
                                                 "processes", fan_out, reducer=HalfAndMerge())
        found = {p: (f.state, f.action, path_to(s, f.index)) for p, f in s.findings.items()}
        return workers, (s.states, s.transitions, s.deadlock_states, s.max_depth, s.complete, s.limit, found,
                         s.deadlock_info, bytes(model.comp.fired), sorted(model.comp.dynamic_edges))

    one, two = search(1 << 30), search(1)
    assert (one[0], two[0]) == (1, 2)
    assert two[1] == one[1]
    assert one[1][4] and one[1][0] < load_manifest()["specs"][spec]["states"]  # complete, and it did reduce
