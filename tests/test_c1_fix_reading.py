"""The model's reading of the C1 fix (docs/designs/mainline.md) against two failing opens of one KVM.

specs/mainline-c1-two-openers.yaml: the -EPERM path puts back the hook it replaced only if the hook still
names its mdev, so the second failing opener restores the first one's pointer, which outlives its mdev."""

from __future__ import annotations

from pathlib import Path

from checker.report.results import Trace
from checker.search.run import check_program
from checker.spec.options import Options
from checker.spec.registry import default_registry
from checker.spec.spec import load_spec

SPEC = Path(__file__).resolve().parent.parent / "specs" / "mainline-c1-two-openers.yaml"


def test_second_failing_opener_restores_the_first_ones_hook() -> None:
    loaded = load_spec(str(SPEC), default_registry())
    program = loaded.design.build(loaded.scenario)
    res = check_program(program, Options(quiet=True, reduction="none"))
    bad = {p.name: p for p in res.properties if p.status != "HOLDS"}
    assert sorted(bad) == ["hook-safe", "memory-safety"]
    trace = bad["hook-safe"].trace
    assert isinstance(trace, Trace) and len(trace.actions) == 28
    steps = [(program.threads[program.actions[a].thread].name, program.actions[a].text) for a in trace.actions]
    restores = [(i, who) for i, (who, text) in enumerate(steps) if "pqap_hook = old" in text]
    assert [who for _i, who in restores] == ["qemuA", "qemuD"]  # both openers fail -EPERM and reach the restore
    freed = next(i for i, (who, text) in enumerate(steps) if "kfree(matrix_mdev)" in text)
    assert steps[freed][0] == "qemuA" and restores[0][0] < freed < restores[1][0]  # mdev0 goes before mdev2 restores
    assert steps[-1] == ("vcpu1", "mutex_lock(matrix_dev->mdevs_lock)")  # the vCPU follows the restored hook
